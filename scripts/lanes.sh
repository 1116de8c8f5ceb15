#!/usr/bin/env bash
# The CI tier of the tests in lanes, three at a time (scripts/test.sh runs this after set-up,
# ruff and mypy). Each lane is a sequence of pytest runs (each lists its 15 slowest tests) with a
# log of its own; at the end every lane's log is printed, then one line per lane (result,
# minutes), then the totals of all pytest runs; the exit status is non-zero if any lane failed.
# The lanes share nothing: every server, namespace, chroot and database a test makes is its own
# (free ports, random names).
#   SFC_LANES="main py3.9"    only these lanes, in this order (default: lab py3.13-process
#                             py3.9-process process main py3.13 py3.9 process-servers e2e: the
#                             longest first, so that the short ones fill the end)
#   SFC_LANES_AT_ONCE=3       how many lanes run at a time (the next starts when one ends). Most
#                             tests wait on real processes: a lane keeps about half a core busy,
#                             so three fill a 2-core machine without starving a timing-bound test
#   SFC_LANE_TIMEOUT=2400     seconds after which the lanes still running are interrupted
#   SFC_LANE_LOGS=DIR         where the logs go (default: a new directory under /tmp)
#   SFC_LANES_DRY_RUN=1       each pytest run is printed to its lane's log (virtualenv, then the
#                             arguments, shell-quoted), not run
set -uo pipefail
cd "$(dirname "$0")/.."

lanes="${SFC_LANES:-lab py3.13-process py3.9-process process main py3.13 py3.9 process-servers e2e}"
timeout_s="${SFC_LANE_TIMEOUT:-2400}"
at_once="${SFC_LANES_AT_ONCE:-3}"
logs="${SFC_LANE_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/sfc-lanes.XXXXXX")}"
mkdir -p "$logs"
case "$timeout_s" in
  '' | *[!0-9]*) echo "lanes.sh: SFC_LANE_TIMEOUT must be a number of seconds, not '$timeout_s'" >&2; exit 2 ;;
esac
case "$at_once" in
  '' | 0 | *[!0-9]*) echo "lanes.sh: SFC_LANES_AT_ONCE must be a number of lanes, not '$at_once'" >&2; exit 2 ;;
esac

# pytest on one virtualenv; none once the lanes were interrupted. SIGINT is pytest's Ctrl-C
# (clean-up, then exit) even where this script was started with SIGINT ignored (in the background).
pytest_in() {
  local venv="$1"; shift
  [ -e "$logs/interrupted" ] && return 130
  if [ "${SFC_LANES_DRY_RUN:-0}" = 1 ]; then
    printf 'dry run: %q' "$venv"; printf ' %q' "$@"; echo
    return 0
  fi
  echo "== $venv ($("$venv/bin/python" -c 'import platform; print(platform.python_version())')): pytest $*"
  "$venv/bin/python" -c 'import signal, sys, pytest
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.exit(pytest.console_main())' -q -p no:cacheprovider --durations=15 "$@"
}

# The CI tier: every test not marked `manual`. The lab and the end-to-end runs (as root, real
# Airflow) each have a lane of their own (a new lab's directory goes into LABS, which the 3.11
# lanes leave out, and gets a lane); the real-process tier is two lanes: process (on SQLite, and
# the tests not parametrized by a metastore) and process-servers (its runs on MariaDB and
# ZooKeeper, by the parameter's name: the two selections are each other's complement); every
# other directory under tests/, one added later too, runs on 3.11 in the main lane.
CI=(-m "not manual")
LABS=(tests/lab tests/e2e)
PROCESS=(tests/process)
SERVERS="mariadb or zookeeper"
REST=(tests "${LABS[@]/#/--ignore=}" "${PROCESS[@]/#/--ignore=}" "${CI[@]}")
# On 3.9 and 3.13: what depends most on the Python and the packages pip picks for it: the unit
# tests, the CLI, the metastore contract on every backend, and the real-process tier on the
# embedded SQLite metastore (its MariaDB and ZooKeeper runs differ from it only in the backend,
# which the contract covers on every Python; they run on 3.11 in process-servers, as do the SSH
# tests against a real sshd in the main lane).
MATRIX=(tests/unit tests/cli tests/contract "${CI[@]}")
# The metastore contract proper (the backends' common behaviour), for Airflow 2's virtualenv below.
CONTRACT=(tests/contract/test_metastore_{lease,placement,records,self_mode,servers,sql_upgrade,nodes}.py)
MATRIX_PROCESS=("${PROCESS[@]}" "${CI[@]}" -k "not ($SERVERS)")
lane_main() {
  pytest_in .venv "${REST[@]}"
}
lane_process() {
  pytest_in .venv "${PROCESS[@]}" "${CI[@]}" -k "not ($SERVERS)"
}
lane_process-servers() {
  pytest_in .venv "${PROCESS[@]}" "${CI[@]}" -k "$SERVERS"
}
lane_lab() {
  pytest_in .venv tests/lab "${CI[@]}"
}
lane_e2e() {
  pytest_in .venv tests/e2e "${CI[@]}"
}
lane_py3.9() {
  pytest_in .venv-py3.9 "${MATRIX[@]}"
}
lane_py3.9-process() {
  pytest_in .venv-py3.9 "${MATRIX_PROCESS[@]}"
}
lane_py3.13() {
  local rc=0
  pytest_in .venv-py3.13 "${MATRIX[@]}" || rc=1
  # The metastore contract inside Airflow 2's virtualenv, on its SQLAlchemy 1.4 and psycopg2: the
  # controller is installed there on Airflow 2 masters. (ZooKeeper uses no SQLAlchemy.)
  if [ -x .venv-airflow2/bin/python ]; then
    pytest_in .venv-airflow2 "${CONTRACT[@]}" -k "not zookeeper" || rc=1
  fi
  return "$rc"
}
lane_py3.13-process() {
  pytest_in .venv-py3.13 "${MATRIX_PROCESS[@]}"
}

declare -A pid_of=()
for name in $lanes; do
  if ! declare -F "lane_$name" >/dev/null; then
    echo "lanes.sh: no lane '$name' (there are: main process process-servers py3.9 py3.9-process py3.13 py3.13-process lab e2e)" >&2
    exit 2
  fi
done
# Each lane in a process group of its own (set -m), so that an interrupt reaches all of it; at
# most $at_once at a time, in the order given (the longest first), the next when one ends.
start_lane() {
  local name="$1"
  set -m
  (
    start=$(date +%s)
    "lane_$name" >"$logs/$name.log" 2>&1
    rc=$?
    times >"$logs/$name.times"  # its second line: the CPU time of the lane's processes
    echo "$rc $(($(date +%s) - start)) $(awk 'NR == 2 { print $1 " user, " $2 " system" }' "$logs/$name.times")" \
      >"$logs/$name.result"
  ) &
  pid_of[$name]=$!
  set +m
  echo "lane $name started (pid ${pid_of[$name]}) at $(date -u +%T), log $logs/$name.log"
}
# Ctrl-C, SIGTERM or the time bound: SIGINT to every lane's process group (pytest then cleans up
# as after a Ctrl-C), SIGKILL 120 s later to whatever is left; lanes not started yet never start.
stop_at=$(($(date +%s) + timeout_s)) kill_at=""
interrupt() {
  [ -n "$kill_at" ] && return
  kill_at=$(($(date +%s) + 120))
  touch "$logs/interrupted"
  for name in "${!pid_of[@]}"; do
    [ -e "$logs/$name.result" ] || kill -INT -- "-${pid_of[$name]}" 2>/dev/null
  done
}
trap interrupt INT TERM
# A lane runs until it has written its result (its last act). Not `kill -0 PID`: the tests start
# and end thousands of processes, and a finished lane's pid is soon another process's.
running() {
  local name count=0
  for name in "${!pid_of[@]}"; do [ -e "$logs/$name.result" ] || count=$((count + 1)); done
  echo "$count"
}
queue=($lanes)
while [ "${#queue[@]}" -gt 0 ] || [ "$(running)" -gt 0 ]; do
  while [ -z "$kill_at" ] && [ "${#queue[@]}" -gt 0 ] && [ "$(running)" -lt "$at_once" ]; do
    start_lane "${queue[0]}"
    queue=("${queue[@]:1}")
  done
  [ -n "$kill_at" ] && queue=()
  now=$(date +%s)
  if [ -z "$kill_at" ] && [ "$now" -ge "$stop_at" ]; then
    echo "lanes.sh: lanes still running after ${timeout_s} s: interrupting them" >&2
    interrupt
  elif [ -n "$kill_at" ] && [ "$now" -ge "$kill_at" ]; then
    for name in "${!pid_of[@]}"; do
      [ -e "$logs/$name.result" ] || kill -KILL -- "-${pid_of[$name]}" 2>/dev/null
    done
    break
  fi
  sleep 2 &
  wait $!
done
wait

failed=0
for name in $lanes; do
  echo; echo "======== lane $name: log"
  cat "$logs/$name.log" 2>/dev/null || echo "(not started)"
done
echo; echo "======== lanes (logs in $logs)"
for name in $lanes; do
  read -r rc seconds cpu 2>/dev/null <"$logs/$name.result" || { rc=interrupted; seconds=0 cpu=""; }
  [ "$rc" = 0 ] || failed=1
  printf 'lane %-15s %-16s %5.1f min  (CPU %s)\n' "$name" "$([ "$rc" = 0 ] && echo passed || echo "FAILED ($rc)")" \
    "$(awk -v s="$seconds" 'BEGIN { print s / 60 }')" "$cpu"
done
# The totals of every pytest run in every lane, from pytest's own closing lines.
cat "$logs"/*.log | grep -E '^(=+ )?[0-9]+ (passed|failed|error|skipped|deselected).* in [0-9.]+s' | awk '
  { for (i = 2; i <= NF; i++) { w = $i; gsub(/[,=]/, "", w); if (w ~ /^(passed|failed|errors?|skipped)$/) n[w] += $(i - 1) } }
  END { printf "lanes: %d passed, %d failed, %d skipped\n", n["passed"], n["failed"] + n["error"] + n["errors"], n["skipped"] }'
exit "$failed"
