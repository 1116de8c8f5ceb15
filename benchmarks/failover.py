"""Failover-time and overhead benchmark with real controller processes (run by hand, not in CI).

    .venv/bin/python benchmarks/failover.py [--trials 10] [--poll 1] [--ttl 5] [--metastore sqlite|mariadb|zookeeper]
        [--measures restart,takeover,handover,switchover,standby-restart] [--no-overhead]
        [--node-control ssh|self]

Prints a table of median and max over the trials:
  restart   scheduler SIGKILL -> a new scheduler process
  switchover  a switchover request written -> the new scheduler on the other node (only when asked)
  standby-restart  SIGKILL of a scheduler on the node that is not the active's (only when asked;
            with --node-control self its own controller hears it, the active decides)
  takeover  active controller SIGKILL -> the standby holds the lease
  handover  active controller SIGTERM -> the standby holds the lease
  two       seconds with two schedulers (must be 0)
and the CPU time and peak RSS of one controller over --cycles cycles.

    .venv/bin/python benchmarks/failover.py --lab [--trials 10] [--nodes 3,10,30]

runs benchmarks/lab.py instead: host crash and partition on the multi-host lab (as root), and
the active controller's cycle time with 3, 10 and 30 nodes over SSH.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scheduler_failover_controller.metastore.base import Metastore  # noqa: E402
from scheduler_failover_controller.metastore.sql import SQLMetastore  # noqa: E402
from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore  # noqa: E402
from tests.process.harness import ZK_PREFIX, Cluster  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402


def open_store(url: str, ttl: float) -> Metastore:
    """An observer's own client of the store the cluster uses."""
    if url.startswith(ZK_PREFIX):
        return ZooKeeperMetastore(url[len(ZK_PREFIX) :], "/scheduler_failover_controller", ttl, 1.0)
    return SQLMetastore(url, 2.0)


def holder(store: Metastore) -> str | None:
    lease = store.read_state().lease
    return lease.host if lease.valid else None


def reported_running(store: Metastore, node: str) -> bool:
    """Self mode: ``node``'s own report says its scheduler runs, answering the current placement."""
    version = store.read_state().placement.version
    return any(r.node == node and r.state == "running" and r.answers >= version for r in store.reports())


# Longest wait for any step: set from --poll and --ttl (a restart takes up to a poll, a takeover
# up to a lease), so that a slow poll such as the 2016 default of 60 s is measured, not timed out.
WAIT = 60.0


def clock(predicate: Callable[[], object], timeout: float | None = None) -> float:
    return wait_for(predicate, timeout or WAIT, "the benchmark condition", interval=0.02)


@contextlib.contextmanager
def metastore_url(kind: str, tmp: Path) -> Iterator[Callable[[], str]]:
    if kind == "sqlite":
        counter = iter(range(10**6))
        yield lambda: f"sqlite:///{tmp / f'metastore-{next(counter)}.db'}"
        return
    if kind == "zookeeper":
        from kazoo.client import KazooClient

        from tests.support.zk import start_ensemble

        with start_ensemble(3) as ensemble:
            admin = KazooClient(hosts=ensemble.hosts, timeout=10)
            admin.start(timeout=30)
            counter = iter(range(10**6))

            def chroot() -> str:
                path = f"/bench{next(counter)}"
                admin.ensure_path(path)
                return ZK_PREFIX + ensemble.hosts + path

            try:
                yield chroot
            finally:
                admin.stop()
                admin.close()
        return
    from tests.conftest import start_mariadb

    with start_mariadb() as db:
        yield lambda: db.url(db.create_database())


MEASURES = ("restart", "takeover", "handover", "switchover", "standby-restart")


def trial(
    url: str, tmp: Path, poll: float, ttl: float, measures: tuple[str, ...] = MEASURES[:3], node_control: str = "ssh"
) -> dict[str, float]:
    cluster = Cluster(tmp, url, 2, node_control=node_control, poll=poll, ttl=ttl)
    store = open_store(url, ttl)
    try:
        cluster.observer.start()
        cluster.start("n1")
        clock(lambda: len(cluster.observer.pids()) == 1)
        cluster.start("n2")
        clock(lambda: len(store.controllers()) == 2)
        time.sleep(poll)
        result: dict[str, float] = {}
        if "restart" in measures:
            # 1. scheduler SIGKILL -> new scheduler process
            (pid,) = cluster.observer.pids()
            os.kill(pid, signal.SIGKILL)
            began = time.monotonic()
            clock(lambda: len(cluster.observer.pids()) == 1 and cluster.observer.pids() != (pid,))
            result["restart"] = time.monotonic() - began
            time.sleep(poll)
        if "switchover" in measures:
            # 2. switchover request (as `sfc switchover` writes it) -> the new scheduler on the target
            seen = cluster.observer.one()
            target = "n2" if seen is None or seen.node == "n1" else "n1"
            store.request_switchover(target, "controlled", f"bench-{time.monotonic_ns()}")
            began = time.monotonic()
            clock(lambda: [s.node for s in cluster.observer.current()] == [target])
            result["switchover"] = time.monotonic() - began
            time.sleep(poll)
        if "standby-restart" in measures:
            # 3. the scheduler on the node that is not the active's (a switchover puts it there), SIGKILLed
            target = "n2" if holder(store) == "n1" else "n1"
            for _ in range(3):  # a request refused (e.g. a report not fresh yet) is asked again
                if [s.node for s in cluster.observer.current()] == [target]:
                    break
                store.request_switchover(target, "controlled", f"bench-{time.monotonic_ns()}")
                with contextlib.suppress(AssertionError):
                    clock(lambda: [s.node for s in cluster.observer.current()] == [target], 2 * poll + ttl + 10)
            clock(lambda: [s.node for s in cluster.observer.current()] == [target], 1)
            if node_control == "self":  # settled: its own controller reports it running for the placement
                clock(lambda: reported_running(store, target))
            time.sleep(poll)
            (pid,) = cluster.observer.pids()
            os.kill(pid, signal.SIGKILL)
            began = time.monotonic()
            clock(lambda: len(cluster.observer.pids()) == 1 and cluster.observer.pids() != (pid,))
            result["standby-restart"] = time.monotonic() - began
            time.sleep(poll)
        if "takeover" in measures or "handover" in measures:
            # 4. active controller SIGKILL -> standby holds the lease
            cluster.signal("n1", signal.SIGKILL)
            began = time.monotonic()
            clock(lambda: holder(store) == "n2")
            result["takeover"] = time.monotonic() - began
            # bring n1 back as a standby, then 5. SIGTERM n2 -> n1 takes over
            cluster.procs["n1"].wait()
            cluster.start("n1")
            clock(lambda: len(store.controllers()) == 2 and len(cluster.observer.pids()) == 1)
            time.sleep(poll)
            cluster.signal("n2", signal.SIGTERM)
            began = time.monotonic()
            clock(lambda: holder(store) == "n1")
            result["handover"] = time.monotonic() - began
            clock(lambda: len(cluster.observer.pids()) == 1)
            time.sleep(poll)
        cluster.observer.stop()
        result["two"] = cluster.observer.seconds_two_or_more
        return {k: v for k, v in result.items() if k in measures or k == "two"}
    finally:
        store.close()
        cluster.close()


def overhead(url: str, tmp: Path, poll: float, ttl: float, cycles: int) -> tuple[float, float]:
    """CPU seconds and peak RSS (MB) of one active controller over ``cycles`` cycles."""
    cluster = Cluster(tmp, url, 1, poll=poll, ttl=ttl)
    try:
        proc = cluster.start("n1")
        clock(lambda: "healthy" in cluster.log("n1"))
        ps = psutil.Process(proc.pid)
        cpu0 = sum(ps.cpu_times()[:2])
        # At most ten minutes of it: at a slow poll the CPU of fewer cycles is scaled to ``cycles``.
        ran = min(cycles, max(1, int(600 / poll)))
        time.sleep(ran * poll)
        cpu = (sum(ps.cpu_times()[:2]) - cpu0) * cycles / ran
        peak_kb = 0
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak_kb = int(line.split()[1])
        return cpu, peak_kb / 1024
    finally:
        cluster.close()


def main() -> None:
    if "--lab" in sys.argv[1:]:  # the multi-host lab's failover times: benchmarks/lab.py
        from benchmarks.lab import main as lab_main

        lab_main([arg for arg in sys.argv[1:] if arg != "--lab"])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--metastore", choices=["sqlite", "mariadb", "zookeeper"], default="sqlite")
    parser.add_argument(
        "--measures",
        default=",".join(MEASURES[:3]),
        help=f"comma-separated, of {', '.join(MEASURES)} (default: the first three)",
    )
    parser.add_argument("--no-overhead", action="store_true", help="skip the CPU and RSS measure")
    parser.add_argument(
        "--node-control", choices=["ssh", "self"], default="ssh", help="self needs --metastore mariadb|zookeeper"
    )
    args = parser.parse_args()
    measures = tuple(m.strip() for m in args.measures.split(",") if m.strip())
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        parser.error(f"--measures: unknown {', '.join(unknown)}")
    global WAIT
    WAIT = max(60.0, 2 * args.poll + 2 * args.ttl + 30)
    with tempfile.TemporaryDirectory(prefix="sfc-bench-") as name, metastore_url(args.metastore, Path(name)) as url:
        tmp = Path(name)
        rows: dict[str, list[float]] = {}
        for i in range(args.trials):
            for key, value in trial(url(), tmp / f"t{i}", args.poll, args.ttl, measures, args.node_control).items():
                rows.setdefault(key, []).append(value)
            print(f"trial {i + 1}/{args.trials} done", file=sys.stderr, flush=True)
        cpu, rss = (
            (0.0, 0.0) if args.no_overhead else overhead(url(), tmp / "overhead", args.poll, args.ttl, args.cycles)
        )
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"settings: metastore={args.metastore} node_control={args.node_control} "
        f"poll_frequency={args.poll:g}s lease_ttl={args.ttl:g}s"
    )
    print(f"trials: {args.trials} (stand-in scheduler, controllers as real processes on one host)")
    print()
    print(f"| {'measure':<40} | {'median':>8} | {'max':>8} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 10}|")
    names = {
        "restart": "scheduler SIGKILL -> new scheduler (s)",
        "switchover": "switchover request -> new scheduler (s)",
        "standby-restart": "SIGKILL on a standby's node -> new (s)",
        "takeover": "active SIGKILL -> standby active (s)",
        "handover": "active SIGTERM -> standby active (s)",
        "two": "time with two schedulers (s)",
    }
    for key, label in names.items():
        values = rows.get(key)
        if values:
            print(f"| {label:<40} | {statistics.median(values):8.2f} | {max(values):8.2f} |")
    if not args.no_overhead:
        print(f"| {f'controller CPU over {args.cycles} cycles (s)':<40} | {cpu:8.2f} | {'':>8} |")
        print(f"| {'controller peak RSS (MB)':<40} | {rss:8.1f} | {'':>8} |")


if __name__ == "__main__":
    main()
