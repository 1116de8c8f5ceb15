#!/usr/bin/env bash
# Installs everything the tests and the main job need on a fresh Debian machine: the Debian
# packages of the servers the tests start (MariaDB, PostgreSQL, ZooKeeper, sshd) and promtool, the test
# virtualenv (.venv), one more on the oldest and one on the newest supported Python (.venv-py3.9,
# .venv-py3.13), celery for the lab's real celery beat (.venv-celery), and one virtualenv per Airflow
# major version with this project installed into it.
# Idempotent; safe to re-run.
#   SFC_SETUP_AIRFLOW=1 (default) both Airflow virtualenvs, 2 or 3 only that major's, 0 neither.
#   SFC_SETUP_TESTS=0 skips what only the tests need: the servers' Debian packages and the test
#   virtualenvs (scripts/run.sh, the demo, needs only python3-venv and the Airflow 3 virtualenv).
set -euo pipefail
cd "$(dirname "$0")/.."

airflow_venvs=()
case "${SFC_SETUP_AIRFLOW:-1}" in
  0) ;;
  1) airflow_venvs=("airflow2:.venv-airflow2" "airflow3:.venv-airflow") ;;
  2) airflow_venvs=("airflow2:.venv-airflow2") ;;
  3) airflow_venvs=("airflow3:.venv-airflow") ;;
  *) echo "setup.sh: SFC_SETUP_AIRFLOW must be 0, 1, 2 or 3, not '${SFC_SETUP_AIRFLOW}'" >&2; exit 2 ;;
esac
case "${SFC_SETUP_TESTS:-1}" in
  0 | 1) ;;
  *) echo "setup.sh: SFC_SETUP_TESTS must be 0 or 1, not '${SFC_SETUP_TESTS}'" >&2; exit 2 ;;
esac
tests="${SFC_SETUP_TESTS:-1}"

need_apt=()
if [ "$tests" = 1 ]; then
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
  command -v faketime >/dev/null 2>&1 || need_apt+=(faketime)
  command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
  [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
  command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
  command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
  command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
  [ -f /usr/share/java/zookeeper.jar ] || need_apt+=(zookeeper libzookeeper-java)
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
  command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)  # promtool checks deploy/monitoring/'s rules
fi
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${need_apt[*]}"
  $sudo apt-get update -qq
  # The package's own service is not wanted: the tests start their own server.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ "$tests" = 1 ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[test]'
fi

# The oldest and the newest Python the project supports, each a test virtualenv of its own
# (.venv-py3.9, .venv-py3.13) for scripts/test.sh's matrix lanes. The interpreter comes from pyenv
# (~/.pyenv/versions/3.9.*), else from the system (python3.9 on PATH, e.g. Debian's); none found
# is an error, not a skip.
find_python() {
  local minor="$1" candidate
  for candidate in "$HOME"/.pyenv/versions/"$minor".*/bin/python"$minor" "$(command -v "python$minor" || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import ensurepip, venv' >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}
if [ "$tests" = 1 ]; then
  for minor in 3.9 3.13; do
    venv=".venv-py$minor"
    if [ ! -x "$venv/bin/python" ]; then
      if ! python="$(find_python "$minor")"; then
        echo "setup.sh: no Python $minor with venv found (~/.pyenv/versions/$minor.*, python$minor on PATH); install one, e.g. pyenv install $minor" >&2
        exit 1
      fi
      "$python" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install -q -e '.[test]'
  done
fi

# celery for the lab's real celery beat (tests/lab/beat.py), in a small virtualenv of its own so that
# nothing of it joins the project's dependencies; its filesystem:// transport needs no broker server.
if [ "$tests" = 1 ]; then
  [ -x .venv-celery/bin/python ] || python3 -m venv .venv-celery
  .venv-celery/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv-celery/bin/python -m pip install -q 'celery>=5.3,<6'
fi

# One virtualenv per Airflow major version, each with this project installed into it as the
# README tells users to: the newest Airflow 2 that pip resolves (SQLAlchemy 1.4, psycopg2) and the
# newest Airflow 3 (SQLAlchemy 2.x, psycopg 3). Airflow pins many packages, so neither shares the
# test virtualenv. pytest goes into each so that the metastore tests also run on its SQLAlchemy.
for spec in ${airflow_venvs[@]+"${airflow_venvs[@]}"}; do
  extra="${spec%%:*}" venv="${spec#*:}"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install -q -e ".[$extra]" pytest
done
