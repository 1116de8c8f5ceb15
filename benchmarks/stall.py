"""The longest metastore stall the scheduler rides through (run by hand, as root, not in CI).

    .venv/bin/python benchmarks/stall.py [--metastore mariadb,postgresql,zookeeper]
        [--faults freeze,restart,election] [--lengths 1,2,3,4,5,6,7,8] [--trials 5]
        [--poll 10] [--ttl 8] [--node-control self|ssh] [--seed 1]

Two controllers as real processes on this host (tests/process/harness.py) share a real server,
started as the other benchmarks start it. Timing is the registry's defaults unless --poll/--ttl
say otherwise; metastore_timeout and scheduler_stop_timeout are always derived. Once one
scheduler has run alone for a lease, the metastore stalls at a random phase of the
renewal interval, for each length in turn:

  freeze    every server process SIGSTOPped for the length, then SIGCONT (MariaDB, PostgreSQL;
            ZooKeeper: the whole ensemble)
  restart   the server stopped and started again after the length (PostgreSQL; ZooKeeper: the
            whole ensemble)
  election  ZooKeeper only: its leader stopped, so the others elect a new one (the length is
            how long the old leader stays away)

The scheduler rode a stall through when the same one process ran all the time from the stall's
start until lease_ttl + 2 s after its end. Prints, per metastore and fault, the trials ridden
through at each length and the longest length every trial rode through; lengths stop once every
trial of one length stopped the scheduler.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scheduler_failover_controller.config import KEYS  # noqa: E402
from scheduler_failover_controller.config.model import renew_interval  # noqa: E402
from tests.process.harness import ZK_PREFIX, Cluster  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

if TYPE_CHECKING:
    from tests.support.zk import Ensemble

FAULTS = {
    "mariadb": ("freeze",),
    "postgresql": ("freeze", "restart"),
    "zookeeper": ("freeze", "restart", "election"),
}


class Server:
    """One metastore server for the benchmark: a URL per cluster, and the stalls it can take."""

    def __init__(self, url: Callable[[], str], stall: dict[str, tuple[Callable[[], None], Callable[[], None]]]):
        self.url = url
        self.stall = stall  # fault -> (begin, end)


@contextlib.contextmanager
def server(kind: str) -> Iterator[Server]:
    """A real server of ``kind``, removed again on exit (also when a trial fails)."""
    if kind == "mariadb":
        from tests.conftest import start_mariadb

        with start_mariadb() as db:
            yield Server(lambda: db.url(db.create_database()), {"freeze": (db.freeze, db.thaw)})
        return
    if kind == "postgresql":
        from tests.support.pg import start_postgres

        with start_postgres() as pg:

            def restart() -> None:
                pg.start()

            yield Server(
                lambda: pg.url(pg.create_database()),
                {"freeze": (pg.freeze, pg.thaw), "restart": (pg.stop, restart)},
            )
        return
    from kazoo.client import KazooClient

    from tests.support.zk import start_ensemble

    with start_ensemble(3) as ensemble:
        every = range(len(ensemble.servers))
        leader: list[int] = []

        def freeze() -> None:
            for i in every:
                ensemble.freeze(i)

        def thaw() -> None:
            for i in every:
                ensemble.thaw(i)
            ensemble.wait_quorum()

        def stop_all() -> None:
            for i in every:
                ensemble.stop(i)

        def start_all() -> None:
            for i in every:
                ensemble.start(i)
            ensemble.wait_quorum()

        def stop_leader() -> None:
            found = [i for i in every if b"Mode: leader" in srvr(ensemble, i)]
            leader[:] = found[:1]
            for i in leader:
                ensemble.stop(i)

        def start_leader() -> None:
            for i in leader:
                ensemble.start(i)
            ensemble.wait_quorum()

        admin = KazooClient(hosts=ensemble.hosts, timeout=10)
        admin.start(timeout=30)
        counter = iter(range(10**6))

        def chroot() -> str:
            path = f"/stall{next(counter)}"
            admin.ensure_path(path)
            return ZK_PREFIX + ensemble.hosts + path

        try:
            yield Server(
                chroot,
                {"freeze": (freeze, thaw), "restart": (stop_all, start_all), "election": (stop_leader, start_leader)},
            )
        finally:
            admin.stop()
            admin.close()


def srvr(ensemble: Ensemble, i: int) -> bytes:
    """ZooKeeper's ``srvr`` answer of server ``i`` (empty when it does not answer)."""
    member = ensemble.servers[i]
    try:
        with socket.create_connection((member.bind_address, member.client_port), timeout=1) as sock:
            sock.sendall(b"srvr")
            return sock.recv(4096)
    except OSError:
        return b""


def steady(cluster: Cluster, renew: float, wait: float) -> int:
    """The pid of the one scheduler once it has run alone for a lease (a start's first renewals are past)."""
    seen: list[int] = []
    since = [time.monotonic()]

    def settled() -> bool:
        pids = cluster.observer.pids()
        if len(pids) != 1 or pids[0] not in seen[-1:]:
            seen[:] = list(pids[:1])
            since[0] = time.monotonic()
            return False
        return time.monotonic() - since[0] >= max(renew + 1, cluster.ttl)

    wait_for(settled, wait, "one scheduler running steadily", interval=0.1)
    return seen[0]


def rides_through(
    cluster: Cluster, pid: int, begin: Callable[[], None], end: Callable[[], None], length: float
) -> tuple[bool, float]:
    """Stall for ``length`` s: whether ``pid`` alone ran all the time until lease_ttl + 2 s after,
    and how long the stall was (a restart also lasts as long as the server takes to serve again)."""
    alone = True

    def look() -> None:
        nonlocal alone
        alone = alone and cluster.observer.pids() == (pid,)

    began = time.monotonic()
    begin()
    try:
        until = time.monotonic() + length
        while time.monotonic() < until:
            look()
            time.sleep(0.05)
    finally:
        end()
    stalled = time.monotonic() - began
    until = time.monotonic() + cluster.ttl + 2
    while time.monotonic() < until and alone:
        look()
        time.sleep(0.05)
    return alone, stalled


Trial = tuple[bool, float]  # ridden through, the stall's real length


def run(kind: str, fault: str, args: argparse.Namespace, tmp: Path, rng: random.Random) -> dict[float, list[Trial]]:
    """Every length of ``fault`` on ``kind``, ``args.trials`` each; stops after a length that all stopped."""
    renew = renew_interval(args.poll, args.ttl)
    wait = 3 * args.ttl + 2 * args.poll + 60
    results: dict[float, list[Trial]] = {}
    with server(kind) as srv:
        cluster = Cluster(
            tmp / f"{kind}-{fault}", srv.url(), 2, node_control=args.node_control, poll=args.poll, ttl=args.ttl
        )
        try:
            cluster.observer.start()
            cluster.start("n1")
            cluster.start("n2")
            begin, end = srv.stall[fault]
            for length in args.lengths:
                rode = results.setdefault(length, [])
                for _ in range(args.trials):
                    pid = steady(cluster, renew, wait)
                    time.sleep(rng.uniform(0, renew))  # a random phase of the renewals
                    rode.append(rides_through(cluster, pid, begin, end, length))
                    ok, stalled = rode[-1]
                    print(
                        f"{kind} {fault} {length:g}s ({stalled:.1f}s): {'rode through' if ok else 'stopped'}",
                        flush=True,
                    )
                if not any(ok for ok, _ in rode):
                    break
            assert cluster.observer.seconds_two_or_more == 0, "two schedulers at once"
        finally:
            cluster.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metastore", default="mariadb,postgresql,zookeeper")
    parser.add_argument("--faults", default="freeze,restart,election")
    parser.add_argument("--lengths", default="1,2,3,4,5,6,7,8")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--poll", type=float, default=float(KEYS["poll_frequency"].default or 10))
    parser.add_argument("--ttl", type=float, default=float(KEYS["lease_ttl"].default or 8))
    parser.add_argument("--node-control", choices=["self", "ssh"], default="self")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", metavar="DIR", help="keep the controllers' logs and configs in DIR")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.metastore.split(",") if k.strip()]
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    bad = [k for k in kinds if k not in FAULTS] + [f for f in faults if f not in FAULTS["zookeeper"]]
    if bad:
        parser.error(f"unknown: {', '.join(bad)}")
    try:
        args.lengths = [float(x) for x in args.lengths.split(",") if x.strip()]
    except ValueError:
        parser.error("--lengths: seconds, comma separated")
    if os.geteuid() != 0:
        parser.error("run as root (the servers and the scheduler's user)")
    rng = random.Random(args.seed)
    table: list[tuple[str, str, dict[float, list[Trial]]]] = []
    with contextlib.ExitStack() as stack:
        name = args.keep or stack.enter_context(tempfile.TemporaryDirectory(prefix="sfc-stall-"))
        for kind in kinds:
            for fault in faults:
                if fault in FAULTS[kind]:
                    table.append((kind, fault, run(kind, fault, args, Path(name), rng)))
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(
        f"settings: poll_frequency={args.poll:g}s lease_ttl={args.ttl:g}s "
        f"(renewal {renew_interval(args.poll, args.ttl):g}s), node_control={args.node_control}, "
        f"{args.trials} trials per length"
    )
    print()
    print("| metastore | stall | ridden through / trials, by length (s) | all up to | longest ridden | shortest not |")
    print("|---|---|---|---|---|---|")
    for kind, fault, results in table:
        cells = ", ".join(f"{length:g}: {sum(ok for ok, _ in rode)}/{len(rode)}" for length, rode in results.items())
        upto = 0.0  # the longest length up to which every trial of every length rode through
        for length in sorted(results):
            if not all(ok for ok, _ in results[length]):
                break
            upto = length
        trials = [trial for rode in results.values() for trial in rode]
        ridden = max((s for ok, s in trials if ok), default=0.0)
        stopped = min((s for ok, s in trials if not ok), default=float("nan"))
        print(f"| {kind} | {fault} | {cells} | {upto:g} s | {ridden:.1f} s | {stopped:.1f} s |")


if __name__ == "__main__":
    main()
