#!/usr/bin/env bash
# The README's test command, and CI's (.ci/run): installs what the tests need (scripts/setup.sh),
# then runs ruff, mypy for 3.11 and for the oldest and the newest supported Python, and the CI
# tier of the tests (README, "Tests and their tiers": every test not marked `manual`) in nine
# lanes (scripts/lanes.sh): py3.9 and py3.13 (unit, cli, contract) and py3.9-process and
# py3.13-process, lab and e2e (as root), process and process-servers (the real-process tier) and
# main (the rest) on 3.11. Each lane has a log of its
# own; all are printed at the end, and the run fails if any lane failed.
#   bash scripts/test.sh -k contract    one pytest run with these arguments on .venv (3.11)
#                                       over every test directory, instead of the lanes
# Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
# Types as 3.11, the oldest and the newest supported Python see them, each with the packages pip
# installs there (mypy checking for 3.9 cannot parse the newest packages, which need 3.10). The
# three at once (each its own cache directory under .mypy_cache), their output in this order.
types_out="$(mktemp -d "${TMPDIR:-/tmp}/sfc-types.XXXXXX")"
.venv/bin/mypy scheduler_failover_controller tests benchmarks >"$types_out/3.11" 2>&1 &
py311=$!
.venv-py3.9/bin/mypy --python-version 3.9 scheduler_failover_controller tests benchmarks >"$types_out/3.9" 2>&1 &
py39=$!
.venv-py3.13/bin/mypy --python-version 3.13 scheduler_failover_controller tests benchmarks >"$types_out/3.13" 2>&1 &
py313=$!
types_failed=0
for version in 3.11 3.9 3.13; do
  pid_var="py${version//./}"
  echo "== mypy (Python $version)"
  wait "${!pid_var}" || types_failed=1
  cat "$types_out/$version"
done
rm -rf "$types_out"
[ "$types_failed" = 0 ] || exit 1

# The lab's chaos soak runs 3 minutes here, on PostgreSQL (`make soak`: an hour per metastore).
export SFC_SOAK_SECONDS="${SFC_SOAK_SECONDS:-180}"
if [ "$#" -gt 0 ]; then
  echo "== pytest $*"
  exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
fi

exec bash scripts/lanes.sh
