"""Several services from one fleet with real processes: the scheduler and two more stand-ins (beat,
and trig colocated with the scheduler), each with a process match of its own, under two real
controllers (n1, n2) on one machine.

An observer per service samples the process table every ~50 ms the whole time: never two of any
service. Asserted: a kill of each is restarted; beat, whose start fails on its node, moves alone;
a switchover of beat written through its store view is carried out; a switchover of the scheduler
takes trig along (stop before start), and beat stays where it is.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scheduler_failover_controller.cli.group import open_store
from scheduler_failover_controller.config import load_config
from scheduler_failover_controller.config.services import SCHEDULER
from tests.process.harness import FAKE, ZK_PREFIX, Cluster
from tests.support.observer import Observer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.process

SERVICES = {"beat": "", "trig": "colocate_with = scheduler\n"}


# SQLite about 20 s, ZooKeeper about 45 s (under load): CI runs the SQLite one; `make services` both.
@pytest.fixture(params=["sqlite", pytest.param("zookeeper", marks=pytest.mark.manual)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(url, node_control): the embedded SQLite file with every node local, or ZooKeeper in self mode."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metastore.db'}", "ssh"
    return ZK_PREFIX + str(request.getfixturevalue("zk_hosts")), "self"


class Fleet:
    """The cluster, one observer per service, and a flag file that makes a service's start fail on a node."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.flags = cluster.tmp / "fail"
        self.flags.mkdir()
        self.events = cluster.tmp / "events.jsonl"
        recorder = Path(__file__).resolve().parents[1] / "support" / "record_env.py"
        lines = [
            f"services = {', '.join(SERVICES)}\n",
            "max_restart_attempts = 2\n",
            f"event_command = {sys.executable} {recorder} {self.events}\n",
        ]
        self.observers = {SCHEDULER: cluster.observer}
        for name, extra in SERVICES.items():
            token = f"{cluster.token}-{name}"
            flag = f"{self.flags}/{name}-{{node}}"
            command = f"exec {sys.executable} {FAKE} --cluster {token} --node {{node}}"
            lines.append(
                f"\n[scheduler_failover_service_{name}]\n"
                f"process_match = fake_scheduler.py --cluster {token} --node {{node}}\n"
                f"start_command = test -e {flag} && exit 1; {command}\n"
                "start_timeout = 5\n" + extra
            )
            self.observers[name] = Observer(f"fake_scheduler.py --cluster {token}")
        with cluster.config.open("a") as config:
            config.write("".join(lines))

    def where(self, service: str) -> list[str]:
        return [s.node for s in self.observers[service].current()]

    def pid(self, service: str) -> int:
        (seen,) = self.observers[service].current()
        return seen.pid

    def fail_start(self, service: str, node: str, fail: bool = True) -> None:
        flag = self.flags / f"{service}-{node}"
        flag.touch() if fail else flag.unlink()

    def request_switchover(self, service: str, node: str) -> None:
        """Through the service's store view, as the CLI of this release would write it."""
        env = self.cluster.env("n1")
        config = load_config(str(self.cluster.config), env=env, hostname=lambda: "n1")
        store = open_store(config)
        try:
            store.for_service(service).request_switchover(node, "controlled")
        finally:
            store.close()

    def seen_events(self) -> set[tuple[str, str]]:
        """(SFC_SERVICE, SFC_EVENT) of every event the event command was run for so far."""
        lines = self.events.read_text().splitlines() if self.events.exists() else []
        return {(e["SFC_SERVICE"], e["SFC_EVENT"]) for e in map(json.loads, lines)}

    def twice(self) -> dict[str, int]:
        return {name: o.max_seen for name, o in self.observers.items() if o.max_seen > 1}


@pytest.fixture
def fleet(backend: tuple[str, str], make_cluster: Callable[..., Cluster]) -> Iterator[Fleet]:
    url, mode = backend
    cluster: Cluster = make_cluster(url, 2, node_control=mode, poll=1.0, ttl=6.0)
    fleet = Fleet(cluster)
    for observer in fleet.observers.values():
        observer.start()
    try:
        yield fleet
    finally:
        for name, observer in fleet.observers.items():
            if name != SCHEDULER:  # the cluster stops its own
                observer.stop()
        from scheduler_failover_controller.matching import find_schedulers

        for name, observer in fleet.observers.items():  # what the controllers left: by the unique match
            for proc in find_schedulers(observer.match) if name != SCHEDULER else []:
                proc.kill()


def all_on(fleet: Fleet, where: dict[str, str], what: str, timeout: float = 20) -> None:
    wait_for(lambda: all(fleet.where(s) == [n] for s, n in where.items()), timeout, what)


def restarted(fleet: Fleet, service: str, old: int) -> Callable[[], bool]:
    return lambda: fleet.where(service) == ["n1"] and fleet.pid(service) != old


def test_services_restart_move_alone_switch_over_and_follow(fleet: Fleet) -> None:
    cluster = fleet.cluster
    cluster.start("n1")
    all_on(fleet, {SCHEDULER: "n1", "beat": "n1", "trig": "n1"}, "every service on n1")
    cluster.start("n2")
    # A kill of each is restarted in place.
    for service in (SCHEDULER, "beat", "trig"):
        old = fleet.pid(service)
        os.kill(old, signal.SIGKILL)
        wait_for(restarted(fleet, service, old), 20, f"{service} restarted")
    # beat's start fails on n1: killed, it moves to n2 alone.
    fleet.fail_start("beat", "n1")
    os.kill(fleet.pid("beat"), signal.SIGKILL)
    all_on(fleet, {"beat": "n2", SCHEDULER: "n1", "trig": "n1"}, "beat moved alone to n2", 30)
    # A switchover of beat alone, written through its store view.
    fleet.fail_start("beat", "n1", fail=False)
    fleet.request_switchover("beat", "n1")
    all_on(fleet, {"beat": "n1", SCHEDULER: "n1", "trig": "n1"}, "beat switched over to n1")
    # The scheduler's switchover: trig follows it, beat stays.
    fleet.request_switchover(SCHEDULER, "n2")
    all_on(fleet, {SCHEDULER: "n2", "trig": "n2", "beat": "n1"}, "trig followed the scheduler to n2")
    assert fleet.twice() == {}, {n: o.describe() for n, o in fleet.observers.items()}
    # The event command is told which service each event is of.
    wanted = {("beat", "move"), ("trig", "switchover_done"), (SCHEDULER, "switchover_done")}
    wait_for(lambda: wanted <= fleet.seen_events(), 10, f"the events {wanted} run by event_command")
    for node in ("n1", "n2"):
        assert "please report" not in cluster.log(node).lower()
