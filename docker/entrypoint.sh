#!/bin/sh
# The image's entrypoint. One role per container, all configured by environment variables:
#   controller     (default) scheduler_failover_controller start: it runs `airflow scheduler` under
#                  its leash in this container when the placement names this master
#   dag-processor, api-server, triggerer, celery ...: the Airflow daemon of that name
#   migrate        airflow db migrate, then exit
#   sfc ARGS       the controller's CLI (status, history, switchover ...)
#   alive          exit 0 if this container's controller process runs (not stopped, not a zombie):
#                  the liveness probe (Kubernetes' exec probe, Compose's healthcheck)
#   any other command runs as given
# current_host defaults to the container's hostname (Compose: `hostname:`, Kubernetes: the pod name).
set -eu
: "${AIRFLOW__SCHEDULER_FAILOVER__CURRENT_HOST:=$(hostname)}"
export AIRFLOW__SCHEDULER_FAILOVER__CURRENT_HOST
role="${1:-controller}"
[ "$#" -gt 0 ] && shift
case "$role" in
  controller) exec scheduler_failover_controller start "$@" ;;
  migrate) exec airflow db migrate "$@" ;;
  sfc) exec scheduler_failover_controller "$@" ;;
  alive)
    for pid in $(pgrep -u "$(id -u)" -f 'bin/scheduler_failover_controller start'); do
      state="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)"
      case "$state" in R | S | D) exit 0 ;; esac
    done
    echo "sfc-entrypoint: no running controller in this container" >&2
    exit 1
    ;;
  dag-processor | api-server | triggerer | webserver | celery) exec airflow "$role" "$@" ;;
  *) exec "$role" "$@" ;;
esac
