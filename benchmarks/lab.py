"""Failover times on the multi-host lab (run by hand as root, not in CI).

    .venv/bin/python benchmarks/lab.py [--metastore mariadb|postgresql|zookeeper] [--trials 10] [--nodes 3,10,30]
        [--settings lab|old-defaults|defaults] [--node-control ssh|self]
    .venv/bin/python benchmarks/failover.py --lab [...]        (the same)

Simulated master hosts in their own network/PID/UTS/mount namespaces with sshd, and the
metastore on 198.18.0.2: MariaDB, PostgreSQL or a 3-server ZooKeeper ensemble (tests/lab/harness.py),
poll_frequency 0.5 s and lease_ttl 3 s as in CI (--settings lab); --settings defaults runs the
registry's defaults (poll_frequency 10 s, lease_ttl 8 s), old-defaults those before them (poll
10 s, lease_ttl 40 s), everything else derived. Prints the median and max over the trials of:
  host crash   SIGKILL of the active host's PID 1 (everything on it) -> a new scheduler elsewhere
  partition    the active host's link down -> a new scheduler elsewhere (after it fenced its own)
  two          seconds with two schedulers (must be 0)
and the active controller's cycle time (its metrics endpoint, sfc_last_cycle_seconds) with N
nodes, the others reached over SSH (no controllers of their own), at --cycle-poll/--cycle-ttl.
With --fence: fence, then start against waiting for the lease instead (benchmarks/lab_fence.py).
Every lab host shares this machine's cores: remote probes (a Python process per probe on the
node) cost the active's machine too, so cycle times are pessimistic.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.lab.harness import Lab  # noqa: E402
from tests.lab.network import Network  # noqa: E402
from tests.lab.sites import LabMetastore, MariaDBSite, network_with_mariadb, postgresql_on, zookeeper_on  # noqa: E402
from tests.lab.tools import PYTHON  # noqa: E402
from tests.support.observer import Seen  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

METRICS_PORT = 9464
SETTINGS = {
    "lab": {"poll_frequency": "0.5", "lease_ttl": "3"},
    "old-defaults": {"poll_frequency": "10", "lease_ttl": "40"},
    "defaults": {},  # filled from the key registry in main()
}
WAIT = 60.0  # the longest recovery waited for: raised with the lease (main())


def recovery(lab: Lab, fault: Callable[[Lab], None]) -> tuple[float, float]:
    """Seconds from ``fault`` until one scheduler runs on another host, and seconds with two."""
    lab.boot()
    old = lab.observer.one()
    assert old is not None and old.node == "h1"
    since = time.monotonic()
    fault(lab)

    def ok(real: tuple[Seen, ...]) -> bool:
        return len(real) == 1 and real[0].node != "h1"

    wait_for(lambda: ok(lab.observer.current()), WAIT, "a scheduler on another host")
    at = lab.observer.first_after(since, ok)
    assert at is not None
    time.sleep(1.0)
    lab.observer.stop()
    assert lab.observer.max_seen <= 1, f"two schedulers at once: {lab.observer.describe()}"
    return at - since, lab.observer.seconds_two_or_more


def cycle_times(net: Network, site: LabMetastore, nodes: int, samples: int, poll: float, ttl: float) -> list[float]:
    """The active controller's cycle durations with ``nodes`` nodes, all but itself over SSH."""
    config = {"poll_frequency": f"{poll:g}", "lease_ttl": f"{ttl:g}", "metrics_port": str(METRICS_PORT)}
    lab = Lab(net, site, size=nodes, config=config)
    try:
        lab.boot(controllers=["h1"])
        h1 = lab.host("h1")
        script = (
            "import urllib.request\n"
            f"body = urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics', timeout=5).read().decode()\n"
            "print([l for l in body.splitlines() if l.startswith('sfc_last_cycle_seconds ')][0].split()[1])\n"
        )
        found: list[float] = []
        for _ in range(samples):
            time.sleep(max(poll, found[-1] if found else poll))
            out = subprocess.run(
                ["ip", "netns", "exec", h1.ns, PYTHON, "-c", script],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            found.append(float(out.stdout.strip()))
        assert lab.observer.max_seen <= 1
        return found
    finally:
        lab.close()


def main(argv: list[str] | None = None) -> None:
    if "--fence" in (sys.argv[1:] if argv is None else argv):  # fence, then start: benchmarks/lab_fence.py
        from benchmarks.lab_fence import main as fence_main

        fence_main(sys.argv[1:] if argv is None else argv)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metastore", choices=("mariadb", "postgresql", "zookeeper"), default="mariadb")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--nodes", default="3,10,30", help="cluster sizes for the cycle time")
    parser.add_argument("--samples", type=int, default=20, help="cycle-time samples per size")
    parser.add_argument("--cycle-poll", type=float, default=1.0)
    parser.add_argument("--cycle-ttl", type=float, default=8.0)
    parser.add_argument("--settings", choices=tuple(SETTINGS), default="lab", help="timing of the failover rows")
    parser.add_argument("--node-control", choices=("ssh", "self"), default="ssh")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("the lab needs root (network, PID and UTS namespaces)")
    from scheduler_failover_controller.config import KEYS

    timing = SETTINGS[args.settings] or {key: KEYS[key].default or "" for key in ("poll_frequency", "lease_ttl")}
    global WAIT
    WAIT = max(60.0, 2 * float(timing["lease_ttl"]) + 2 * float(timing["poll_frequency"]) + 20)
    config = {**timing, "node_control": args.node_control}
    rows: dict[str, list[float]] = {"crash": [], "partition": [], "two": []}
    cycles: dict[int, list[float]] = {}
    failures = {"crash": 0, "partition": 0}
    with contextlib.ExitStack() as stack:
        net, db = stack.enter_context(network_with_mariadb())
        site: LabMetastore = MariaDBSite(db, net)
        if args.metastore == "zookeeper":
            site = stack.enter_context(zookeeper_on(net))
        elif args.metastore == "postgresql":
            site = stack.enter_context(postgresql_on(net))
        for i in range(args.trials):
            for name, fault in (
                ("crash", lambda lab: lab.host("h1").crash()),
                ("partition", lambda lab: lab.partition("h1")),
            ):
                lab = Lab(net, site, config=config)
                try:
                    took, two = recovery(lab, fault)
                    rows[name].append(took)
                    rows["two"].append(two)
                except AssertionError as exc:  # no recovery within WAIT (or two schedulers): keep the logs
                    failures[name] += 1
                    print(f"{name} trial {i + 1} failed ({exc}); logs kept in {lab.dir}", file=sys.stderr)
                    lab.close(keep=True)
                finally:
                    lab.close()
            print(f"trial {i + 1}/{args.trials} done", file=sys.stderr, flush=True)
        for size in (int(n) for n in args.nodes.split(",") if n.strip()):
            cycles[size] = cycle_times(net, site, size, args.samples, args.cycle_poll, args.cycle_ttl)
            print(f"cycle time with {size} nodes done", file=sys.stderr, flush=True)
    machine = f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores"
    print(f"machine: {machine}, Python {platform.python_version()}")
    store = {"mariadb": "MariaDB", "postgresql": "PostgreSQL", "zookeeper": "ZooKeeper (3 servers)"}[args.metastore]
    print(
        f"settings: lab hosts in namespaces, {store}, node_control={args.node_control}, "
        f"poll_frequency={timing['poll_frequency']}s lease_ttl={timing['lease_ttl']}s ({args.settings}; failover rows)"
    )
    print(f"load: {os.getloadavg()[0]:.1f} (1-minute average at the end)")
    print(f"trials: {args.trials}")
    print()
    print(f"| {'measure':<44} | {'median':>8} | {'max':>8} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 10}|")
    names = {
        "crash": "active host crash -> new scheduler (s)",
        "partition": "active host partitioned -> new scheduler (s)",
        "two": "time with two schedulers (s)",
    }
    for key, label in names.items():
        values = rows[key]
        if values:
            print(f"| {label:<44} | {statistics.median(values):8.2f} | {max(values):8.2f} |")
        if failures.get(key):
            print(f"| {f'  {key}: failed trials (no recovery in {WAIT:g} s)':<44} | {failures[key]:>8} | {'':>8} |")
    for size, values in cycles.items():
        label = f"cycle time, {size} nodes (s) [poll {args.cycle_poll:g}]"
        print(f"| {label:<44} | {statistics.median(values):8.2f} | {max(values):8.2f} |")


if __name__ == "__main__":
    main()
