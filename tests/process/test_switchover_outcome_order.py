"""A switchover's outcome is in the history before its request is cleared, by real controllers.

A CLI of a release without request ids (still on some masters during a rolling upgrade) reads
the history once, as soon as it finds the request gone: an outcome written after the clear is
lost to it. A trigger in the real SQLite metastore counts, at the instant the request row is
cleared, the outcomes already recorded, whatever the two writes' timing.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.process.harness import Cluster
from tests.process.test_failover import assert_never_two, started
from tests.support.waiting import wait_for

pytestmark = pytest.mark.process

OUTCOMES = "('switchover_done', 'switchover_refused', 'switchover_failed')"
TRIGGER = f"""
CREATE TABLE order_probe (outcomes INTEGER NOT NULL);
CREATE TRIGGER order_probe_clear AFTER UPDATE OF value ON sfc_meta
WHEN NEW.name = 'switchover' AND NEW.value = '' AND OLD.value != ''
BEGIN
  INSERT INTO order_probe SELECT count(*) FROM sfc_events WHERE kind IN {OUTCOMES};
END;
"""


def _running_on(cluster: Cluster, node: str) -> bool:
    return [s.node for s in cluster.observer.current()] == [node]


def test_the_outcome_is_recorded_before_the_request_is_cleared(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    db = tmp_path / "metastore.db"
    cluster = started(make_cluster, f"sqlite:///{db}", 2)
    with sqlite3.connect(db, timeout=10) as conn:
        conn.executescript(TRIGGER)
    for target in ("n2", "n1"):  # a move, then one back
        done = cluster.cli("switchover", "--to", target, "--wait", "30")
        assert done.returncode == 0, done.stdout + done.stderr
        wait_for(functools.partial(_running_on, cluster, target), 20, f"the scheduler on {target}")
    with sqlite3.connect(db, timeout=10) as conn:
        seen = [row[0] for row in conn.execute("SELECT outcomes FROM order_probe ORDER BY rowid")]
    # At each clear, that switchover's own outcome was already there: 1 at the first, 2 at the second.
    assert seen == [1, 2], f"outcomes recorded when each request was cleared: {seen}"
    assert_never_two(cluster)
