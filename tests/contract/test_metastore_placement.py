"""The metastore contract's placement (which node runs the scheduler): written only under the
current epoch, renewed by its node and never revived, run against every backend (embedded SQLite,
a real MariaDB, a real PostgreSQL through psycopg2 and psycopg 3, a real 3-server ZooKeeper
ensemble, and the unit tests' in-memory FakeStore).

The backends and the ``be``, ``sql_be``, ``store`` and ``other`` fixtures: tests/contract/conftest.py and
metastore_backends.py.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from scheduler_failover_controller.exceptions import MetastoreError
from scheduler_failover_controller.metastore.base import (
    Metastore,
)
from tests.contract.metastore_backends import LEASE, Backend

# --- placement ------------------------------------------------------------------------------


def test_placement_is_written_only_under_the_current_epoch(store: Metastore, other: Any, be: Backend) -> None:
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None
    start = store.read_state().placement
    placed = store.set_placement("n1", "a", lease.epoch, start.version, 10)
    assert placed is not None and placed.node == "n1" and placed.epoch == lease.epoch
    assert placed.version == start.version + 1 and 9 < placed.remaining <= 10
    # Stale version: refused.
    assert store.set_placement("n2", "a", lease.epoch, start.version, 10) is None
    # Another controller takes over after a lapse; the old epoch can no longer write.
    b = other()
    be.lapse(store)
    new = b.acquire_or_renew("b", "host-b", LEASE)
    assert new is not None and new.epoch == lease.epoch + 1
    for attempt in (
        lambda: store.set_placement("n2", "a", lease.epoch, placed.version, 10),
        lambda: store.renew_placement("n1", 10, "a", lease.epoch),
        lambda: store.record_observations("a", lease.epoch, []),
    ):
        with contextlib.suppress(MetastoreError):  # ZooKeeper: a lost session cannot even send it
            assert not attempt()
    assert b.set_placement("n2", "b", new.epoch, placed.version, 10) is not None
    assert b.read_state().placement.node == "n2"


def test_a_wrong_epoch_or_holder_is_refused(store: Metastore) -> None:
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None
    version = store.read_state().placement.version
    assert store.set_placement("n1", "a", lease.epoch - 1, version, 10) is None
    assert store.set_placement("n1", "b", lease.epoch, version, 10) is None


def test_placement_renewal_by_node_and_no_revival(store: Metastore) -> None:
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None
    placed = store.set_placement("n1", "a", lease.epoch, store.read_state().placement.version, 0.8)
    assert placed is not None
    time.sleep(0.3)
    renewed = store.renew_placement("n1", 0.8)
    assert renewed is not None and renewed.expires_at > placed.expires_at and renewed.version == placed.version
    assert store.renew_placement("n2", 5) is None  # not n2's
    time.sleep(1.1)
    assert store.read_state().placement.valid is False
    assert store.renew_placement("n1", 5) is None  # expired placements are never revived


def test_release_placement_only_by_its_node(store: Metastore) -> None:
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None
    store.set_placement("n1", "a", lease.epoch, store.read_state().placement.version, 30)
    assert store.release_placement("n2") is False
    assert store.release_placement("n1") is True
    placement = store.read_state().placement
    assert placement.node is None and not placement.valid
