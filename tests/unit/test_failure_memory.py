"""Failed starts kept in the metastore (fakes, injected clock): counted with the server's clock, inherited
by a new active, forgotten ``failure_timeout`` after the last one (never with 0), and shown by status."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler_failover_controller.status import read_status

from .controller_support import TTL, tick
from .fakes import Cluster, make_config


def failing_n1(cluster: Cluster, **settings: Any) -> None:
    """n1's controller places the scheduler on n1, whose start fails; then it dies (its lease lapses)."""
    cluster.runners["n1"].start_error = "start shell exited with 1"
    c1 = cluster.controller("n1", **settings)
    assert "but its start failed" in c1.run_cycle()
    assert cluster.store.node_failures["n1"][0] == 1
    cluster.runners["n1"].start_error = None
    cluster.store.lease_expires_at = cluster.store.server_now - 1  # n1's controller is gone
    cluster.store.placement_expires_at = cluster.store.server_now - 1


def test_a_new_active_inherits_the_failed_starts_and_their_backoff(cluster: Cluster) -> None:
    failing_n1(cluster, move_backoff=30)
    c2 = cluster.controller("n2", move_backoff=30)
    sentence = c2.run_cycle()
    # Not n1, although it was placed there last and is first in the list: it is backing off.
    assert sentence.startswith("active (epoch 2): placed and started the scheduler on n2"), sentence
    assert c2.incidents.backoff["n1"].strikes == 1
    assert c2.incidents.until("n1") > cluster.clock.monotonic() + 25


def test_failed_starts_are_forgotten_failure_timeout_after_the_last_one(cluster: Cluster) -> None:
    failing_n1(cluster, move_backoff=5, failure_timeout=20)
    c2 = cluster.controller("n2", move_backoff=5, failure_timeout=20)
    c2.run_cycle()
    assert c2.incidents.memory.strikes("n1") == 1
    tick(cluster, c2, seconds=10)
    assert c2.incidents.memory.strikes("n1") == 1 and "n1" in cluster.store.node_failures  # backoff over, kept
    tick(cluster, c2, seconds=11)
    assert c2.incidents.memory.strikes("n1") == 0 and cluster.store.node_failures == {}


def test_failure_timeout_0_never_forgets(cluster: Cluster) -> None:
    failing_n1(cluster, move_backoff=5, failure_timeout=0)
    c2 = cluster.controller("n2", move_backoff=5, failure_timeout=0)
    c2.run_cycle()
    for _ in range(5):
        tick(cluster, c2, seconds=3600)
    assert c2.incidents.memory.strikes("n1") == 1 and cluster.store.node_failures["n1"][0] == 1
    assert c2.incidents.until("n1") < cluster.clock.monotonic()  # but its backoff is long over


def test_a_stable_scheduler_no_longer_wipes_the_failures(cluster: Cluster) -> None:
    failing_n1(cluster, move_backoff=5, failure_timeout=100)
    c2 = cluster.controller("n2", move_backoff=5, failure_timeout=100)
    c2.run_cycle()
    for _ in range(10):
        tick(cluster, c2)
    assert c2.incidents.memory.strikes("n1") == 1


@pytest.mark.parametrize(("timeout", "forgotten"), [(600, 590.0), (0, None)])
def test_status_shows_failed_starts(cluster: Cluster, timeout: int, forgotten: float | None) -> None:
    cluster.store.record_failure("n2")
    cluster.store.record_failure("n2")
    cluster.store.advance(10)
    config = make_config("n1", move_backoff=15, failure_timeout=timeout, lease_ttl=TTL)
    shown = read_status(cluster.store, config).to_json()["failed_starts"]
    assert shown == [{"host": "n2", "count": 2, "last_age_s": 10.0, "avoided_for_s": 20.0, "forgotten_in_s": forgotten}]
    cluster.store.advance(600)
    left = read_status(cluster.store, config).to_json()["failed_starts"]
    assert left == ([] if timeout else [{**shown[0], "last_age_s": 610.0, "avoided_for_s": 0.0}])
