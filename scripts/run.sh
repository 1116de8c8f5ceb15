#!/usr/bin/env bash
# The main job on a fresh Debian machine: installs the controller and Apache Airflow into a
# virtualenv, prepares an Airflow home with its SQLite database, adds a [scheduler_failover]
# section to its airflow.cfg, then runs the controller in the foreground on the embedded SQLite
# metastore, keeping exactly one real `airflow scheduler` alive on this host.
# Ctrl-C (or SIGTERM) stops the controller gracefully: it stops the scheduler it guards and
# releases its lease.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[airflow]'

export PATH="$PWD/.venv/bin:$PATH"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$PWD/.airflow-home}"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
mkdir -p "$AIRFLOW_HOME"
airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || { tail -20 "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
unset SCHEDULER_FAILOVER_CONTROLLER_CONFIG
# Adds the documented section to $AIRFLOW_HOME/airflow.cfg once; later runs keep the user's edits.
grep -q '^\[scheduler_failover\]' "$AIRFLOW_HOME/airflow.cfg" 2>/dev/null || sfc init
sfc status || true
echo "AIRFLOW_HOME=$AIRFLOW_HOME; controller starting (Ctrl-C to stop)"
exec sfc start
