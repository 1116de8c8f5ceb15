"""Fault to the next successful task run, with REAL Airflow schedulers on the multi-host lab (by hand, as root).

    .venv/bin/python benchmarks/airflow.py [--airflow 3,2] [--faults kill,partition,crash] [--trials 5]
                                           [--interval 5] [--metastore postgresql|mariadb]
                                           [--node-control self|ssh] [--job-fencing] [--task-seconds 0]
                                           [--orphan-defaults]

One lab per Airflow (tests/lab/airflow_harness.py): 3 hosts, each with its controller (poll 1 s,
lease 10 s; ``node_control = self`` unless ``--node-control ssh``), an Airflow home on one metadata
database on 198.18.0.2 (PostgreSQL by default; MariaDB for Airflow 2 only: Airflow 3 needs an async
MySQL driver the virtualenv lacks), the LocalExecutor, ``use_row_level_locking = False``, Airflow
3's api-server and dag-processor on every host, and the ledger DAG every ``--interval`` seconds.
Each trial injects one fault on the node running the scheduler, then measures the seconds from the
fault to the ledger entry of the first task run of a DAG run that did not exist at the fault (the
task succeeds right after writing it):

  kill       SIGKILL of the scheduler's root process (restarted in place)
  crash      SIGKILL of the scheduler host's PID 1 (everything on it; a new scheduler elsewhere)
  partition  the scheduler host's link down (it fences itself; a new scheduler elsewhere)

and, where a task was in flight at the fault, the seconds to its retry (the new scheduler adopts
or resets it once the old SchedulerJob is no longer running: ``--job-fencing`` ends it before the
start), then undoes the fault (a crashed host reboots with its services and controller, a partitioned one
heals) and waits for a run after that before the next trial. Every trial also checks the lab's
invariants (never two scheduler roots, no task try twice, the old scheduler's processes gone).
The figures include up to one schedule interval of waiting for the next run to be due, and
Airflow's own start-up on the same cores as everything else (pessimistic on a small machine).
Prints median and max per fault and Airflow.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.lab.airflow_harness import AirflowLab, airflow_lab, flavors  # noqa: E402
from tests.lab.sites import LabMetastore, MariaDBSite, network_with_mariadb, postgresql_on  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

BOUND = 180.0


def trial(alab: AirflowLab, kind: str) -> tuple[float, float | None]:
    """(seconds to the first task of a new run, seconds to the first retry of a task in flight at the
    fault: None when no task was in flight or none was retried before the lab was steady again)."""
    fault = alab.inject(kind)
    took = alab.recover(fault, BOUND)
    alab.heal(fault)
    assert alab.lab is not None
    alab.wait_run_after(time.time(), 120)  # steady again before the next trial
    assert alab.lab.observer.max_seen <= 1, f"two schedulers: {alab.lab.observer.doubled[:3]}"
    assert not alab.executed_twice(), alab.executed_twice()
    pending = [r for r in fault.runs if alab.run_state(r) == "running"]
    with contextlib.suppress(AssertionError):  # a run left running longer is reported as not retried
        wait_for(lambda: all(alab.run_state(r) != "running" for r in pending), 60, "runs of the fault", interval=0.5)
    retried = [e.time for e in alab.entries() if e.run_id in fault.runs and e.try_number > 1 and e.time > fault.at]
    if not retried and any(alab.run_state(r) == "running" for r in pending):
        return took, math.inf  # a task in flight, not run again within the wait
    return took, (min(retried) - fault.at if retried else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--airflow", default="3,2", help="Airflow major versions, e.g. 3,2")
    parser.add_argument("--faults", default="kill,partition,crash")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--interval", type=float, default=5.0, help="the ledger DAG's schedule, seconds")
    parser.add_argument("--metastore", choices=("postgresql", "mariadb"), default="postgresql")
    parser.add_argument("--node-control", choices=("self", "ssh"), default="self")
    parser.add_argument("--job-fencing", action="store_true", help="airflow_job_fencing on in every controller")
    parser.add_argument("--task-seconds", type=float, default=0.0, help="each task runs this long (tasks in flight)")
    parser.add_argument(
        "--orphan-defaults", action="store_true", help="Airflow defaults: threshold 30 s, looks every 300 s"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("the lab needs root (network, PID and UTS namespaces)")
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    bad = [f for f in faults if f not in ("kill", "crash", "partition")]
    if bad:
        sys.exit(f"--faults: unknown fault {bad[0]!r} (kill, crash, partition)")
    if args.trials < 1:
        sys.exit("--trials must be at least 1")
    wanted = [f"airflow{m.strip()}" for m in args.airflow.split(",") if m.strip()]
    known = flavors()
    for name in wanted:
        if name not in known or not known[name].available():
            sys.exit(f"--airflow: no virtualenv for {name} (scripts/setup.sh builds .venv-airflow and .venv-airflow2)")
    if args.metastore == "mariadb" and "airflow3" in wanted:
        sys.exit("--metastore mariadb: Airflow 3 needs an async MySQL driver (aiomysql) its virtualenv lacks")
    rows: dict[tuple[str, str], list[float]] = {}
    orphans: dict[tuple[str, str], list[float]] = {}
    failures: dict[tuple[str, str], int] = {}
    with contextlib.ExitStack() as stack:
        net, db = stack.enter_context(network_with_mariadb())
        site: LabMetastore = MariaDBSite(db, net)
        if args.metastore == "postgresql":
            site = stack.enter_context(postgresql_on(net))
        for name in wanted:
            broken = False
            with airflow_lab(
                net,
                site,
                known[name],
                size=3,
                interval=args.interval,
                node_control=args.node_control,
                job_fencing=args.job_fencing,
                task_seconds=args.task_seconds,
                orphan_defaults=args.orphan_defaults,
            ) as alab:
                alab.boot("h1")
                alab.wait_run_after(0.0, 240)
                for kind in faults:
                    for i in range(args.trials):
                        key = (name, kind)
                        try:
                            took, orphan = trial(alab, kind)
                        except AssertionError as exc:
                            failures[key] = failures.get(key, 0) + 1
                            print(f"{name} {kind} trial {i + 1} failed: {exc}", file=sys.stderr, flush=True)
                            print(alab.report(), file=sys.stderr)
                            assert alab.lab is not None
                            print(alab.lab.report(), file=sys.stderr)
                            broken = True
                            break
                        rows.setdefault(key, []).append(took)
                        if orphan is not None:
                            orphans.setdefault(key, []).append(orphan)
                        retry = "none in flight" if orphan is None else f"{orphan:.2f}s"
                        retry = "not within the 60s wait" if orphan == math.inf else retry
                        print(
                            f"{name} {kind} trial {i + 1}/{args.trials}: {took:.2f}s (orphaned task retried: {retry})",
                            file=sys.stderr,
                            flush=True,
                        )
                    if broken:
                        break
    print(
        f"# {platform.node()}: {os.cpu_count()} CPUs; ledger DAG every {args.interval:g}s; {args.metastore}; "
        f"node_control {args.node_control}; airflow_job_fencing {'on' if args.job_fencing else 'off'}; "
        f"tasks {args.task_seconds:g}s; Airflow's orphan settings: {'its defaults' if args.orphan_defaults else '10s'}"
    )
    print(
        f"{'airflow':<10} {'fault':<10} {'trials':>6} {'median s':>9} {'max s':>7} {'failed':>6}"
        f" {'retried':>7} {'median s':>9} {'max s':>7}"
    )
    for (name, kind), values in sorted(rows.items()):
        retried = orphans.get((name, kind), [])
        figures = f"{statistics.median(retried):>9.2f} {max(retried):>7.2f}" if retried else f"{'-':>9} {'-':>7}"
        figures = figures.replace("inf", ">60")  # not retried within the wait
        print(
            f"{name:<10} {kind:<10} {len(values):>6} {statistics.median(values):>9.2f} {max(values):>7.2f}"
            f" {failures.get((name, kind), 0):>6} {len(retried):>7} {figures}"
        )
    for key, count in sorted(failures.items()):
        if key not in rows:
            print(f"{key[0]:<10} {key[1]:<10} {0:>6} {'-':>9} {'-':>7} {count:>6}")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
