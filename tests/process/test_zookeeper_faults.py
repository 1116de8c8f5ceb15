"""ZooKeeper faults with real controller processes, a real 3-server ensemble and the observer.

Each scenario asserts that the observer (sampling every ~50 ms) never saw two schedulers.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler_failover_controller.config import load_config
from scheduler_failover_controller.controller import Controller
from scheduler_failover_controller.metastore import open_metastore
from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore
from scheduler_failover_controller.nodes import make_runners
from tests.process.harness import ZK_PREFIX, Cluster, wait_for
from tests.process.test_failover import assert_never_two, started
from tests.support.zk import Ensemble

pytestmark = pytest.mark.process


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Any]:
    clusters: list[Cluster] = []

    def make(url: str, size: int) -> Cluster:
        clusters.append(Cluster(tmp_path / f"c{len(clusters)}", url, size))
        return clusters[-1]

    yield make
    for cluster in clusters:
        cluster.close()


def epoch_and_leader(cluster: Cluster) -> tuple[int, str | None]:
    status = cluster.status()
    return int(status.get("epoch", 0)), status.get("active_controller")  # type: ignore[call-overload]


def test_leader_stopped_longer_than_its_session_acts_on_nothing_after_resuming(
    make_cluster: Any, zk_hosts: str
) -> None:
    cluster = started(make_cluster, ZK_PREFIX + zk_hosts, 2)
    epoch, _ = epoch_and_leader(cluster)
    cluster.signal("n1", signal.SIGSTOP)
    wait_for(lambda: epoch_and_leader(cluster) == (epoch + 1, "n2"), 20, "n2 to lead with a new epoch")
    time.sleep(cluster.ttl)  # well past the frozen controller's session
    mark = len(cluster.log("n1"))
    cluster.signal("n1", signal.SIGCONT)
    wait_for(lambda: "standby" in cluster.log("n1")[mark:], 15, "n1 to notice it is a standby")
    time.sleep(2)
    resumed = cluster.log("n1")[mark:]
    assert "started the scheduler" not in resumed and "restarted it in place" not in resumed
    assert f"active (epoch {epoch})" not in resumed.split("standby", 1)[1]
    assert epoch_and_leader(cluster) == (epoch + 1, "n2")
    assert len(cluster.observer.current()) == 1
    cluster.observer.stop()
    assert_never_two(cluster)


def test_one_ensemble_server_down_changes_no_leader(make_cluster: Any, zk_hosts: str, zk_ensemble: Ensemble) -> None:
    cluster = started(make_cluster, ZK_PREFIX + zk_hosts, 2)
    time.sleep(1)
    before = epoch_and_leader(cluster)
    pids = cluster.observer.current()
    for i in range(3):  # each server in turn: whichever one the leader is connected to goes down
        zk_ensemble.stop(i)
        time.sleep(cluster.ttl)
        assert epoch_and_leader(cluster) == before
        zk_ensemble.start(i)
        zk_ensemble.wait_quorum()
    assert cluster.observer.current() == pids, "the scheduler was restarted"
    cluster.observer.stop()
    assert_never_two(cluster)


def test_quorum_lost_nobody_acts_until_it_returns(make_cluster: Any, zk_hosts: str, zk_ensemble: Ensemble) -> None:
    cluster = started(make_cluster, ZK_PREFIX + zk_hosts, 3)
    zk_ensemble.stop(0)
    zk_ensemble.stop(1)
    try:
        # Without a quorum nobody can prove a placement: the scheduler's node fences itself and
        # no controller may start another one.
        wait_for(lambda: cluster.observer.current() == (), cluster.ttl * 3, "the scheduler node to fence itself")
        time.sleep(cluster.ttl)
        assert cluster.observer.current() == ()
    finally:
        zk_ensemble.start(0)
        zk_ensemble.start(1)
    zk_ensemble.wait_quorum()
    wait_for(lambda: len(cluster.observer.current()) == 1, 30, "recovery after the quorum returns")
    time.sleep(2)
    assert len(cluster.observer.current()) == 1
    logs = "".join(cluster.log(n) for n in cluster.nodes)
    assert "self-fenced" in logs or "no valid placement" in logs
    cluster.observer.stop()
    assert_never_two(cluster)


def test_controllers_racing_at_start_up(make_cluster: Any, zk_hosts: str) -> None:
    cluster: Cluster = make_cluster(ZK_PREFIX + zk_hosts, 3)
    cluster.observer.start()
    for node in cluster.nodes:
        cluster.start(node)
    wait_for(lambda: len(cluster.observer.current()) == 1, 30, "one scheduler")
    time.sleep(3)
    status = cluster.status()
    roles = sorted(c["role"] for c in status["controllers"])  # type: ignore[attr-defined,index]
    assert roles == ["active", "standby", "standby"], status
    cluster.observer.stop()
    assert_never_two(cluster)


class Loop:
    """A controller in this process (so the test can reach its ZooKeeper session), cycling."""

    def __init__(self, cluster: Cluster, node: str) -> None:
        env = cluster.env(node)
        self.config = load_config(str(cluster.config), env=env)
        self.store = open_metastore(self.config)
        self.store.setup()
        self.controller = Controller(self.config, self.store, make_runners(self.config))
        self.sentences: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sentences.append(self.controller.run_cycle())
            self.stop.wait(self.config.poll_frequency)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=20)
        self.controller.shutdown()
        self.store.close()


def test_session_expiry_of_the_leader(make_cluster: Any, zk_hosts: str) -> None:
    """The server expires the active controller's session: the standby takes over with a new
    epoch, the old leader contends again as a standby, and no second scheduler appears."""
    from kazoo.client import KazooClient

    cluster: Cluster = make_cluster(ZK_PREFIX + zk_hosts, 2)
    cluster.observer.start()
    leader = Loop(cluster, "n1")
    leader.thread.start()
    try:
        wait_for(lambda: len(cluster.observer.current()) == 1, 20, "the first scheduler")
        cluster.start("n2")
        wait_for(lambda: len(cluster.status().get("controllers", [])) == 2, 20, "both controllers")  # type: ignore[arg-type]
        epoch, _ = epoch_and_leader(cluster)
        store = leader.store
        assert isinstance(store, ZooKeeperMetastore)
        sid, password = store.client.client_id
        mark = len(leader.sentences)
        clone = KazooClient(hosts=zk_hosts, client_id=(sid, password), timeout=cluster.ttl)
        clone.start(timeout=10)
        clone.stop()  # closing the same session from elsewhere expires it on the server
        clone.close()
        wait_for(lambda: epoch_and_leader(cluster) == (epoch + 1, "n2"), 20, "n2 to lead with a new epoch")
        wait_for(lambda: any(s.startswith("standby") for s in leader.sentences[-3:]), 20, "n1 to be a standby")
        time.sleep(2)
        assert len(cluster.observer.current()) == 1
        after = leader.sentences[mark:]
        assert not any(f"active (epoch {epoch})" in s and "start" in s for s in after), after
    finally:
        leader.close()
    cluster.observer.stop()
    assert_never_two(cluster)
