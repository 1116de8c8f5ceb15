#!/usr/bin/env bash
# The main job: a working single-host Airflow 3 whose scheduler the controller keeps alive.
# On a fresh Debian machine it first installs what it needs (scripts/setup.sh: python3-venv and
# the Airflow 3 virtualenv .venv-airflow with this project), then prepares an Airflow home
# ($AIRFLOW_HOME, default .airflow-home/: SQLite, the LocalExecutor, examples/dags with the
# every-minute DAG sfc_heartbeat, unpaused), and runs
#   - the controller (`sfc start`, in the foreground: its log is this terminal), which starts and
#     keeps one `airflow scheduler` alive under its leash: kill it and it is restarted;
#   - beside it `airflow dag-processor` (Airflow 3 parses DAGs only there) and `airflow api-server`
#     on 127.0.0.1 (the UI, and the Execution API that LocalExecutor tasks report to), started and
#     stopped by this script, their logs in $AIRFLOW_HOME/logs/.
# Ctrl-C (SIGINT, SIGTERM, SIGHUP) stops the controller gracefully (it stops its scheduler and
# releases its lease), then the dag-processor and the api-server; nothing is left running.
# If one of the three exits by itself, the others are stopped too and the exit code is 1.
# (Started with `&` from another script, bash ignores SIGINT and cannot trap it: send SIGTERM.)
#
# Environment: AIRFLOW_HOME; SFC_DEMO_API_PORT (8080) and SFC_DEMO_HEALTH_PORT (8974, the
# scheduler's health check), both on 127.0.0.1; SFC_RUN_SETUP=0 skips scripts/setup.sh;
# SFC_AIRFLOW_VENV another Airflow 3 virtualenv with this project installed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
venv="${SFC_AIRFLOW_VENV:-$repo/.venv-airflow}"
api_port="${SFC_DEMO_API_PORT:-8080}"
health_port="${SFC_DEMO_HEALTH_PORT:-8974}"

if [ "${SFC_RUN_SETUP:-1}" != 0 ]; then
  echo "== setup (scripts/setup.sh: the Airflow 3 virtualenv $venv)"
  SFC_SETUP_TESTS=0 SFC_SETUP_AIRFLOW=3 bash scripts/setup.sh
fi
if [ ! -x "$venv/bin/airflow" ] || [ ! -x "$venv/bin/sfc" ]; then
  echo "run.sh: $venv has no airflow and sfc (run scripts/setup.sh, or set SFC_AIRFLOW_VENV)" >&2
  exit 1
fi

export PATH="$venv/bin:$PATH"
mkdir -p "${AIRFLOW_HOME:-$repo/.airflow-home}"
AIRFLOW_HOME="$(cd "${AIRFLOW_HOME:-$repo/.airflow-home}" && pwd)"
export AIRFLOW_HOME
unset SCHEDULER_FAILOVER_CONTROLLER_CONFIG
logs="$AIRFLOW_HOME/logs"
mkdir -p "$logs"

for spec in "api-server:$api_port:SFC_DEMO_API_PORT" "scheduler health check:$health_port:SFC_DEMO_HEALTH_PORT"; do
  IFS=: read -r what port var <<<"$spec"
  if ! "$venv/bin/python" -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null; then
    echo "run.sh: 127.0.0.1:$port ($what) is in use or not a port; set $var to a free one" >&2
    exit 1
  fi
done

echo "== Airflow home $AIRFLOW_HOME"
# Airflow writes its default airflow.cfg (with a random fernet key and JWT secret) on first use.
airflow db migrate >"$logs/db-migrate.log" 2>&1 || { tail -20 "$logs/db-migrate.log" >&2; exit 1; }
# The documented [scheduler_failover] section, added once; then the keys this demo needs.
grep -q '^\[scheduler_failover\]' "$AIRFLOW_HOME/airflow.cfg" || sfc init
"$venv/bin/python" scripts/demo_config.py "$AIRFLOW_HOME/airflow.cfg" "$repo" "$venv" "$api_port" "$health_port"

pids=() names=()
stopping=0
# Stops what this script started, in order: the controller first (it stops the scheduler, whose
# running tasks may still report to the api-server), then the others. Each runs in a session of
# its own (setsid), so the terminal's Ctrl-C reaches only this script, and a whole process group
# is signalled and waited for.
stop_all() {
  [ "$stopping" = 0 ] || return 0
  stopping=1
  trap '' INT TERM HUP
  local i pid name waited
  for i in "${!pids[@]}"; do
    pid="${pids[$i]}" name="${names[$i]}"
    kill -0 -- "-$pid" 2>/dev/null || continue
    echo "== $(date +%T) stopping $name (pid $pid)"
    if [ "$name" = controller ]; then kill -TERM "$pid" 2>/dev/null || true; else kill -TERM -- "-$pid" 2>/dev/null || true; fi
    waited=0
    while kill -0 -- "-$pid" 2>/dev/null && [ "$waited" -lt 600 ]; do sleep 0.1; waited=$((waited + 1)); done
    if kill -0 -- "-$pid" 2>/dev/null; then
      echo "run.sh: $name did not stop within 60s; killing it" >&2
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  echo "== $(date +%T) stopped"
}
trap 'stop_all; exit 0' INT TERM HUP
trap 'stop_all' EXIT

launch() {  # NAME COMMAND...: in a session of its own; its output to $logs/NAME.log unless controller
  local name="$1"; shift
  if [ "$name" = controller ]; then
    setsid "$@" </dev/null &
  else
    setsid "$@" >>"$logs/$name.log" 2>&1 </dev/null &
  fi
  pids+=("$!") names+=("$name")
}
# The order of stop_all.
launch controller sfc start
launch dag-processor airflow dag-processor
launch api-server airflow api-server

cat <<EOF
== running (Ctrl-C stops everything)
  Airflow UI and API:   http://127.0.0.1:$api_port/ (loopback only, no login)
  the DAG's runs:       AIRFLOW_HOME=$AIRFLOW_HOME $venv/bin/airflow dags list-runs sfc_heartbeat
  the controller:       AIRFLOW_HOME=$AIRFLOW_HOME $venv/bin/sfc status
  kill the scheduler:   kill -9 PID, PID as \`sfc is_scheduler_running\` shows it (it is restarted; runs go on)
  logs:                 $logs/{dag-processor,api-server}.log, $AIRFLOW_HOME/scheduler_failover/scheduler.log
  the first run of sfc_heartbeat succeeds within about a minute, then one every minute
EOF

# Until Ctrl-C, or until one of them exits by itself.
while :; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      code=0; wait "${pids[$i]}" || code=$?
      echo "run.sh: ${names[$i]} exited by itself (code $code); stopping the others" >&2
      stop_all
      exit 1
    fi
  done
  sleep 1
done
