#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine, then runs lint, types and the
# whole test suite: unit, metastore contract (SQLite, real MariaDB, PostgreSQL and a 3-server
# ZooKeeper ensemble, all started by the tests), SSH against a real sshd, real controller processes, the multi-host lab, CLI.
# Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
command -v faketime >/dev/null 2>&1 || need_apt+=(faketime)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
[ -f /usr/share/java/zookeeper.jar ] || need_apt+=(zookeeper libzookeeper-java)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${need_apt[*]}"
  $sudo apt-get update -qq
  # The package's own service is not wanted: the tests start their own server.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

# A second virtualenv with a real Apache Airflow for the end-to-end test (tests/e2e): Airflow pins
# many packages, so it does not share the test virtualenv.
[ -x .venv-airflow/bin/python ] || python3 -m venv .venv-airflow
.venv-airflow/bin/python -m pip install -q --upgrade pip >/dev/null
.venv-airflow/bin/python -m pip install -q -e '.[airflow]'

echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy scheduler_failover_controller tests benchmarks
echo "== pytest"; .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
