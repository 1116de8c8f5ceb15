"""Cycle time with 1, 3 and 10 services from one daemon (run by hand, not in CI).

    .venv/bin/python benchmarks/services.py [--metastore sqlite|zookeeper] [--counts 1,3,10]
        [--cycles 20] [--runs 3]

One node (this host) runs the scheduler and COUNT - 1 more services, each a stand-in
(tests/support/fake_scheduler.py) with a process match of its own, under one daemon's controllers
(``daemon_services.build_controllers``) on a real metastore: an SQLite file, or a 3-server
ZooKeeper ensemble started for the run. Once every service runs, each controller's cycle is timed
``--cycles`` times in a row (one after the other, as a poll's worth of work); printed per count:
the median cycle of one service, of the scheduler's, and of a whole round (every service once),
each the median over ``--runs`` runs of the runs' medians.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scheduler_failover_controller.cli.group import open_store  # noqa: E402
from scheduler_failover_controller.config import load_config  # noqa: E402
from scheduler_failover_controller.controller.cycle import Controller  # noqa: E402
from scheduler_failover_controller.daemon_services import build_controllers  # noqa: E402
from scheduler_failover_controller.matching import find_schedulers  # noqa: E402
from scheduler_failover_controller.nodes import make_runners  # noqa: E402

FAKE = ROOT / "tests" / "support" / "fake_scheduler.py"


def config_text(tmp: Path, url: str, token: str, count: int) -> str:
    names = [f"s{i}" for i in range(1, count)]
    store = (
        f"metadata_service_type = zookeeper\nmetadata_service_zookeeper_nodes = {url}\n"
        f"metadata_service_zookeeper_root = /sfc_bench_{token}\n"
        if not url.startswith("sqlite")
        else f"metadata_service_sql_conn = {url}\n"
    )
    text = (
        "[scheduler_failover]\nscheduler_nodes_in_cluster = n1\nlocal_nodes = n1\nnode_control = ssh\n"
        + store
        + f"state_dir = {tmp / 'state'}\npoll_frequency = 5\nlease_ttl = 30\nlogging_level = WARNING\n"
        f"scheduler_process_match = fake_scheduler.py --cluster {token} --node {{node}}\n"
        f"airflow_scheduler_start_command = exec {sys.executable} {FAKE} --cluster {token} --node {{node}} --no-child\n"
        + (f"services = {', '.join(names)}\n" if names else "")
    )
    for name in names:
        text += (
            f"\n[scheduler_failover_service_{name}]\n"
            f"process_match = fake_scheduler.py --cluster {token}-{name} --node {{node}}\n"
            f"start_command = exec {sys.executable} {FAKE} --cluster {token}-{name} --node {{node}} --no-child\n"
        )
    return text


def one_run(url: str, count: int, cycles: int) -> tuple[float, float, float]:
    """(median cycle of any service, of the scheduler's, of a whole round), in seconds."""
    token = uuid.uuid4().hex[:10]
    with tempfile.TemporaryDirectory(prefix="sfc-bench-services-") as name:
        tmp = Path(name)
        path = tmp / "sfc.cfg"
        path.write_text(config_text(tmp, url, token, count))
        env = {"AIRFLOW_HOME": str(tmp)}
        config = load_config(str(path), env=env, hostname=lambda: "n1")
        for service in ("scheduler", *config.service_names):
            config.for_service(service).state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = open_store(config)
        controllers: list[Controller] = []
        try:
            store.setup()
            controllers = build_controllers(config, store, make_runners)
            for _ in range(10):  # bounded: every service placed and started
                sentences = [c.run_cycle() for c in controllers]
                if all("healthy" in s for s in sentences):
                    break
            else:
                raise SystemExit(f"services not healthy: {sentences}")
            each: list[float] = []
            first: list[float] = []
            rounds: list[float] = []
            for _ in range(cycles):
                began = time.perf_counter()
                for i, controller in enumerate(controllers):
                    t0 = time.perf_counter()
                    controller.run_cycle()
                    took = time.perf_counter() - t0
                    each.append(took)
                    if i == 0:
                        first.append(took)
                rounds.append(time.perf_counter() - began)
            return statistics.median(each), statistics.median(first), statistics.median(rounds)
        finally:
            for controller in reversed(controllers):
                with contextlib.suppress(Exception):
                    controller.shutdown()
            store.close()
            for root in find_schedulers(f"fake_scheduler.py --cluster {token}"):
                with contextlib.suppress(Exception):
                    root.kill()
            for i in range(1, count):
                for root in find_schedulers(f"fake_scheduler.py --cluster {token}-s{i}"):
                    with contextlib.suppress(Exception):
                        root.kill()


@contextlib.contextmanager
def metastore(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="sfc-bench-db-") as name:
            yield f"sqlite:///{name}/metastore.db"
        return
    from tests.support.zk import start_ensemble

    with start_ensemble(3) as ensemble:
        yield ensemble.hosts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metastore", choices=("sqlite", "zookeeper"), default="sqlite")
    parser.add_argument("--counts", default="1,3,10")
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    print(f"cycle time by number of services, {args.metastore}, {args.runs} runs x {args.cycles} cycles")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| services | one service's cycle (ms) | the scheduler's cycle (ms) | a round, every service once (ms) |")
    print("|---|---|---|---|")
    with metastore(args.metastore) as url:
        for count in counts:
            runs = [one_run(url, count, args.cycles) for _ in range(args.runs)]
            each, first, whole = (statistics.median(r[i] for r in runs) * 1000 for i in range(3))
            print(f"| {count} | {each:.1f} | {first:.1f} | {whole:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
