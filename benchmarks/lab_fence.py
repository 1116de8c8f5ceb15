"""Fence, then start against waiting for the lease, on the multi-host lab (run by hand as root).

    .venv/bin/python benchmarks/lab.py --fence [--trials 5] [--node-control self,ssh]

The scheduler runs on h2, a standby host (h1 is active). h2 is cut off (its bridge port goes
down): its controller reaches nothing, and its leash keeps the scheduler up until the placement's
deadline. Measured, from the cut to one scheduler on another host: with ``fence_command`` (the
lab's power switch kills h2's PID 1 on request: tests/lab/power.py), and without (the placement
must expire by the server's clock first). Settings: lease_ttl 10 s, poll_frequency 0.5 s,
metastore_timeout 1 s, ssh_timeout 5 s (self mode) or 2 s (ssh mode: each look at a silent node
costs one), MariaDB; every trial a new lab. Prints medians and maxima.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.lab.harness import Lab  # noqa: E402
from tests.lab.network import Network  # noqa: E402
from tests.lab.power import PowerSwitch  # noqa: E402
from tests.lab.scenarios import recovered, scheduler_moved_to_h2  # noqa: E402
from tests.lab.sites import LabMetastore, MariaDBSite, network_with_mariadb  # noqa: E402

LEASE = 10.0
SETTINGS = {"poll_frequency": "0.5", "lease_ttl": f"{LEASE:g}", "metastore_timeout": "1"}
# ssh_timeout bounds the fence, and in ssh mode each look at a silent node (two before a fence)
SSH_TIMEOUT = {"self": "5", "ssh": "2"}


def trial(net: Network, site: LabMetastore, node_control: str, fence: bool) -> tuple[float, float]:
    """Seconds from cutting h2 off to a scheduler elsewhere, and seconds with two schedulers."""
    extra = {"fence_command": "/bin/false"} if fence else {}
    config = {"node_control": node_control, **SETTINGS, "ssh_timeout": SSH_TIMEOUT[node_control], **extra}
    lab = Lab(net, site, config=config)
    power = PowerSwitch(lab) if fence else None
    try:
        if power is not None:
            power.install()
        old = scheduler_moved_to_h2(lab)
        since = time.monotonic()
        lab.partition("h2")
        took = recovered(lab, since, old, timeout=6 * LEASE, elsewhere=True)
        time.sleep(1.0)  # a second more under observation: a late second scheduler would show
        lab.observer.stop()
        assert lab.observer.max_seen <= 1, f"two schedulers at once: {lab.observer.describe()}"
        if power is not None:
            assert [name for name, _at in power.fenced] == ["h2"], power.fenced
        return took, lab.observer.seconds_two_or_more
    except AssertionError:
        print(f"trial failed; logs kept in {lab.dir}", file=sys.stderr)
        lab.close(keep=True)
        raise
    finally:
        if power is not None:
            power.close()
        lab.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fence", action="store_true", help="(this benchmark)")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--node-control", default="self,ssh", help="modes to measure, comma separated")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("the lab needs root (network, PID and UTS namespaces)")
    modes = [m.strip() for m in args.node_control.split(",") if m.strip()]
    rows: dict[tuple[str, bool], list[float]] = {(m, f): [] for m in modes for f in (True, False)}
    two: list[float] = []
    failed: dict[tuple[str, bool], int] = {key: 0 for key in rows}
    with contextlib.ExitStack() as stack:
        net, db = stack.enter_context(network_with_mariadb())
        site: LabMetastore = MariaDBSite(db, net)
        for i in range(args.trials):
            for key in rows:
                try:
                    took, doubled = trial(net, site, *key)
                except AssertionError as exc:
                    failed[key] += 1
                    print(f"{key}: trial {i + 1} failed: {exc}", file=sys.stderr)
                    continue
                rows[key].append(took)
                two.append(doubled)
            print(f"trial {i + 1}/{args.trials} done", file=sys.stderr, flush=True)
    machine = f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores"
    print(f"machine: {machine}, Python {platform.python_version()}")
    settings = ", ".join(f"{k}={v}" for k, v in SETTINGS.items())
    settings += ", ssh_timeout=" + "/".join(f"{SSH_TIMEOUT[m]} ({m})" for m in modes)
    print(f"settings: lab hosts in namespaces, MariaDB, {settings}; trials: {args.trials}")
    print()
    print(f"| {'scheduler host cut off -> new scheduler (s)':<52} | {'median':>8} | {'max':>8} | {'failed':>6} |")
    print(f"|{'-' * 54}|{'-' * 10}|{'-' * 10}|{'-' * 8}|")
    for (mode, fence), values in rows.items():
        label = f"{mode} mode, " + ("fence_command powers it off" if fence else "waiting for the lease")
        median = f"{statistics.median(values):8.2f}" if values else f"{'-':>8}"
        top = f"{max(values):8.2f}" if values else f"{'-':>8}"
        print(f"| {label:<52} | {median} | {top} | {failed[(mode, fence)]:>6} |")
    print(f"| {'time with two schedulers, every trial (s)':<52} | {max(two, default=0.0):8.2f} | {'':>8} | {'':>6} |")


if __name__ == "__main__":
    main(sys.argv[1:])
