"""A leash deadline that cannot be written, with real controllers: the placement is renewed only as far
as the leash was, so it runs out soon after the leash stops the scheduler, and the scheduler moves.

The write really fails: the deadline file's path is taken by a directory, which the controller's
atomic rename cannot replace (as root, a mode or an owner would not stop it). The rest of the
state directory stays writable, as with a lowered open-file limit on a busy controller only the
deadline write came to fail.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from scheduler_failover_controller.config import load_config
from scheduler_failover_controller.leash.deadline import deadline_path
from scheduler_failover_controller.metastore import open_metastore
from tests.process.harness import Cluster
from tests.support.waiting import wait_for, wait_until

pytestmark = pytest.mark.process

TTL = 4.0
POLL = 0.5


def block(path: Path) -> None:
    """Make ``path`` a directory (a writer may put a file back in between: try again)."""
    for _ in range(50):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        (path / "in-the-way").touch()
        return
    raise AssertionError(f"could not put a directory at {path}")


def test_a_leash_that_cannot_be_renewed_lets_its_placement_run_out_and_the_scheduler_move(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster: Cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 2, poll=POLL, ttl=TTL)
    cluster.observer.start()
    cluster.start("n1")
    wait_for(lambda: len(cluster.observer.current()) == 1, 20, "the first scheduler")
    cluster.start("n2")
    wait_for(lambda: len(cluster.status().get("controllers", [])) == 2, 20, "both controllers registered")
    [first] = cluster.observer.current()
    assert first.node == "n1"
    config = load_config(str(cluster.config), env={"AIRFLOW__SCHEDULER_FAILOVER__CURRENT_HOST": "n1"})
    store = open_metastore(config)
    try:
        block(deadline_path(tmp_path / "c0" / "state", "n1"))
        gone = wait_until(lambda: not cluster.observer.current(), 3 * TTL, "the scheduler to be stopped")
        placement = store.read_state().placement
        after = time.monotonic()
    finally:
        store.close()
    # What was left of n1's placement when its scheduler was stopped: one renewal interval past
    # the leash's deadline (the renewal whose leash write failed) at most, plus the margin, plus
    # how long before that deadline the scheduler is stopped: by the leash, the stop timeout; by
    # the node fencing itself first, one renewal and two metastore calls (its lookahead).
    left = placement.remaining if placement.node == "n1" and placement.valid else 0.0
    early = max(config.scheduler_stop_timeout, config.renew_interval + 2 * config.metastore_timeout)
    bound = config.renew_interval + config.safety_margin + early + 0.3
    assert left + (after - gone) <= bound < TTL - config.renew_interval, (left, after - gone, placement)
    # The scheduler comes back on n2: n1 cannot hold a leash, so it is never started there again.
    wait_for(lambda: [s.node for s in cluster.observer.current()] == ["n2"], 30, "the scheduler on n2")
    cluster.observer.stop()
    again_on_n1 = [
        seen for at, seen, _strays in cluster.observer.history if at > gone and any(s.node == "n1" for s in seen)
    ]
    assert not again_on_n1, again_on_n1[:3]
    assert cluster.observer.max_seen <= 1, cluster.observer.history
    log = cluster.log("n1")
    assert "cannot renew the leash" in log and "not renewing this node's placement" in log, log[-3000:]
