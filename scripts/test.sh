#!/usr/bin/env bash
# The README's test command, and CI's (.ci/run): installs what the tests need (scripts/setup.sh),
# then runs ruff, mypy for the oldest and the newest supported Python, and the CI tier of the
# tests (README, "Tests and their tiers": every test not marked `manual`) in four lanes, two at a
# time (scripts/lanes.sh): lab (the lab and the end-to-end runs, as root), main (3.11), py3.9 and
# py3.13. Each lane has a log of its own; all are printed at the end, and the run fails if any
# lane failed.
#   bash scripts/test.sh -k contract    one pytest run with these arguments on .venv (3.11)
#                                       over every test directory, instead of the lanes
# Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
# Types as the oldest and the newest supported Python see them, each with the packages pip
# installs there (mypy checking for 3.9 cannot parse the newest packages, which need 3.10).
echo "== mypy (Python 3.11)"; .venv/bin/mypy scheduler_failover_controller tests benchmarks
echo "== mypy (Python 3.9)"; .venv-py3.9/bin/mypy --python-version 3.9 scheduler_failover_controller tests benchmarks
echo "== mypy (Python 3.13)"; .venv-py3.13/bin/mypy --python-version 3.13 scheduler_failover_controller tests benchmarks

# The lab's chaos soak runs 3 minutes here, on PostgreSQL (`make soak`: an hour per metastore).
export SFC_SOAK_SECONDS="${SFC_SOAK_SECONDS:-180}"
if [ "$#" -gt 0 ]; then
  echo "== pytest $*"
  exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
fi

exec bash scripts/lanes.sh
