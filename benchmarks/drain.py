"""Drain and failback times with real controller processes (run by hand, not in CI).

    .venv/bin/python benchmarks/drain.py [--trials 5] [--poll 1] [--ttl 5] [--failback-delay 5]

Two controllers on SQLite with stand-in schedulers, failback on. Each trial drains n1 (the
preferred node, running the scheduler), then undrains it. Prints the median and max of:
  drain     `sfc drain n1` started -> the scheduler runs on n2 (the CLI's --wait included)
  failback  n1 healthy again (undrained) -> the scheduler runs on n1 (failback_delay included)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.process.harness import Cluster  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402


def on(cluster: Cluster) -> list[str]:
    return [seen.node for seen in cluster.observer.current()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--failback-delay", type=float, default=5.0)
    args = parser.parse_args()
    drains: list[float] = []
    failbacks: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sfc-drain-bench-") as tmp:
        cluster = Cluster(Path(tmp), f"sqlite:///{tmp}/metastore.db", 2, poll=args.poll, ttl=args.ttl)
        try:
            cluster.config.write_text(
                cluster.config.read_text() + f"failback = true\nfailback_delay = {args.failback_delay}\n"
            )
            cluster.observer.start()
            for node in cluster.nodes:
                cluster.start(node)
            wait_for(lambda: on(cluster) == ["n1"], 60, "the scheduler on n1")
            for trial in range(args.trials):
                began = time.monotonic()
                out = cluster.cli("drain", "n1", "--wait", "60")
                if out.returncode != 0:
                    raise SystemExit(f"trial {trial}: drain failed: {out.stderr.strip()}")
                wait_for(lambda: on(cluster) == ["n2"], 60, "the scheduler on n2")
                drains.append(time.monotonic() - began)
                began = time.monotonic()
                if cluster.cli("undrain", "n1").returncode != 0:
                    raise SystemExit(f"trial {trial}: undrain failed")
                wait_for(lambda: on(cluster) == ["n1"], 120, "the failback to n1")
                failbacks.append(time.monotonic() - began)
                print(f"trial {trial + 1}: drain {drains[-1]:.2f}s, failback {failbacks[-1]:.2f}s", flush=True)
            if cluster.observer.max_seen > 1:
                raise SystemExit(f"two schedulers at once: {cluster.observer.history}")
        finally:
            cluster.close()
    load = os.getloadavg()[0]
    print(f"poll {args.poll:g}s, lease {args.ttl:g}s, failback_delay {args.failback_delay:g}s, load {load:.1f}")
    print(f"| {'measure':<44} | {'median':>8} | {'max':>8} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 10}|")
    for label, values in (
        ("drain -> running on the other node", drains),
        ("undrain -> failback to the preferred node", failbacks),
    ):
        print(f"| {label:<44} | {statistics.median(values):8.2f} | {max(values):8.2f} |")


if __name__ == "__main__":
    main()
