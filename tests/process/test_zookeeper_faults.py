"""ZooKeeper faults with real controller processes, a real 3-server ensemble and the observer.

Each scenario asserts that the observer (sampling every ~50 ms) never saw two schedulers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from scheduler_failover_controller.config import load_config
from scheduler_failover_controller.controller.cycle import Controller
from scheduler_failover_controller.metastore import open_metastore
from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore
from scheduler_failover_controller.nodes import make_runners
from tests.process.harness import ZK_PREFIX, Cluster
from tests.process.test_failover import assert_never_two, started
from tests.support.waiting import holds_for, wait_for
from tests.support.zk import Ensemble, expire_session

pytestmark = pytest.mark.process


def epoch_and_leader(cluster: Cluster) -> tuple[int, str | None]:
    status = cluster.status()
    return int(status.get("epoch", 0)), status.get("active_controller")


def test_one_ensemble_server_down_changes_no_leader(
    make_cluster: Callable[..., Cluster], zk_hosts: str, zk_ensemble: Ensemble
) -> None:
    # A lease long enough to ride out a ZooKeeper leader election (a second or two here): then
    # losing one server must change nothing at all, not even restart the scheduler.
    cluster = started(make_cluster, ZK_PREFIX + zk_hosts, 2, poll=0.5, ttl=8.0)
    time.sleep(1)
    before = epoch_and_leader(cluster)
    pids = cluster.observer.current()
    for i in range(3):  # each server in turn: whichever one the leader is connected to goes down
        zk_ensemble.stop(i)
        time.sleep(4)
        assert epoch_and_leader(cluster) == before
        zk_ensemble.start(i)
        zk_ensemble.wait_quorum()
    assert cluster.observer.current() == pids, "the scheduler was restarted"
    assert_never_two(cluster)


def test_quorum_lost_nobody_acts_until_it_returns(
    make_cluster: Callable[..., Cluster], zk_hosts: str, zk_ensemble: Ensemble
) -> None:
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
    holds_for(lambda: len(cluster.observer.current()) == 1, 2, "one scheduler after the quorum returns")
    logs = "".join(cluster.log(n) for n in cluster.nodes)
    # Fenced by its controller's cycle, or (when that cycle came late, e.g. under load) by the
    # leash at the placement's deadline, whose lines the scheduler's log holds.
    leash = "".join(path.read_text(errors="replace") for path in cluster.tmp.rglob("*.log"))
    assert "self-fenced" in logs or "no valid placement" in logs or "and not renewed: " in leash, logs[-3000:]
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


def test_session_expiry_of_the_leader(make_cluster: Callable[..., Cluster], zk_hosts: str) -> None:
    """The server expires the active controller's session: the next term has a new epoch (the
    standby's, or the old leader's on a new session), nothing acts on the old one, and no second
    scheduler appears."""
    cluster: Cluster = make_cluster(ZK_PREFIX + zk_hosts, 2)
    cluster.observer.start()
    leader = Loop(cluster, "n1")
    leader.thread.start()
    try:
        wait_for(lambda: len(cluster.observer.current()) == 1, 20, "the first scheduler")
        # The first cycle's start is over only once it has said so (the scheduler shows first).
        wait_for(lambda: any("started the scheduler" in s for s in leader.sentences), 20, "the first start's sentence")
        cluster.start("n2")
        wait_for(lambda: len(cluster.status().get("controllers", [])) == 2, 20, "both controllers")
        epoch, _ = epoch_and_leader(cluster)
        store = leader.store
        assert isinstance(store, ZooKeeperMetastore)
        sid, password = store.client.client_id
        mark = len(leader.sentences)
        expire_session(zk_hosts, (sid, password), cluster.ttl)
        # Whoever wins the next term (n2, or n1 again with a new session), it is a new epoch.
        wait_for(lambda: epoch_and_leader(cluster)[0] > epoch, 20, "a new term")
        _, winner = epoch_and_leader(cluster)
        if winner == "n2":
            wait_for(lambda: any(s.startswith("standby") for s in leader.sentences[-3:]), 20, "n1 to be a standby")
        holds_for(lambda: len(cluster.observer.current()) == 1, 2, "one scheduler in the new term")
        after = leader.sentences[mark:]
        # A start the old term still tried is refused ("not starting: lost the leadership lease").
        acted = [s for s in after if f"active (epoch {epoch})" in s and "start" in s and "not starting" not in s]
        assert not acted, after
    finally:
        leader.close()
    assert_never_two(cluster)
