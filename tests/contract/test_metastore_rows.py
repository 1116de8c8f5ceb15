"""Records no valid write produces, planted straight into every backend (SQLite, MariaDB, PostgreSQL
through psycopg2 and psycopg 3, a 3-server ZooKeeper ensemble): each field's garbage is a one-line
CorruptRecord naming the table (znode) and field for the call that reads it, the store reads fine
again once the record is fixed, and clear (clear_metadata) leaves a store that reads fine.

What each backend can hold is in tests/support/garbage.py: MariaDB and PostgreSQL only numbers in
number columns (an epoch below 0, an expiry years ahead; PostgreSQL also NaN and infinities).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from scheduler_failover_controller.exceptions import CorruptRecord
from scheduler_failover_controller.metastore.base import Metastore
from scheduler_failover_controller.metastore.sql import SQLMetastore
from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore
from tests.contract.metastore_backends import Backend, make_backend
from tests.support.garbage import (
    HOLDER,
    HOST,
    SQL_FIELDS,
    ZK_FIELDS,
    one_line,
    plant_sql,
    plant_zk,
    populate,
    populate_zk,
    read,
    sql_backend,
    zk_path,
)


@pytest.fixture(params=["sqlite", "mariadb", "postgresql", "postgresql+psycopg", "zookeeper"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Metastore]:
    be: Backend = make_backend(request, tmp_path)
    s = be.open()
    if isinstance(s, ZooKeeperMetastore):
        populate_zk(s)
    else:
        populate(s)
    yield s
    s.close()


def _plantings(
    store: Metastore, first_only: bool = False
) -> Iterator[tuple[str, str, object, Callable[[str], bool], Callable[[], None]]]:
    """(call, field label, garbage, names-it check, restore) for every field and its garbage, planted one by one."""
    if isinstance(store, ZooKeeperMetastore):
        for z in ZK_FIELDS:
            for garbage in z.garbage[:1] if first_only else z.garbage:
                path = zk_path(store, z)
                restore = plant_zk(store, z, garbage)
                yield z.call, z.label, garbage, partial(z.named_in, path=path), restore
        return
    assert isinstance(store, SQLMetastore)
    for f in SQL_FIELDS:
        values = f.garbage(sql_backend(store))
        for garbage in values[:1] if first_only else values:
            restore = plant_sql(store, f, garbage)
            yield f.call, f.label, garbage, f.named_in, restore


def test_garbage_in_every_field_is_one_line_naming_it_until_fixed(store: Metastore) -> None:
    checked = 0
    for call, label, garbage, names_it, restore in _plantings(store):
        try:
            with pytest.raises(CorruptRecord) as info:
                read(store, call)
            if label.startswith(("sfc_lease.", "leader")):  # a contender neither takes it nor is told "held"
                with pytest.raises(CorruptRecord):
                    store.acquire_or_renew("n2:2:other", "n2", 5)
        finally:
            restore()
        message = str(info.value)
        assert one_line(message), (label, garbage, message)
        assert names_it(message), (label, garbage, message)
        read(store, call)  # fixed: reads fine again
        checked += 1
    assert checked >= 40
    # And the store still keeps its contract: the holder renews, the placement is where it was.
    lease = store.acquire_or_renew(HOLDER, HOST, 30)
    assert lease is not None and store.read_state().placement.node == HOST


def test_clear_leaves_a_store_that_reads_fine(store: Metastore) -> None:
    """clear_metadata over any one record no write produces (but the schema version): all reads work after it."""
    for call, label, _garbage, _names_it, _restore in _plantings(store, first_only=True):
        if call == "setup":
            _restore()
            continue
        store.clear()
        for reader in ("read_state", "controllers", "observations", "events"):
            read(store, reader)
        assert store.acquire_or_renew(HOLDER, HOST, 30) is not None, label
        if isinstance(store, ZooKeeperMetastore):
            populate_zk(store)
        else:
            populate(store)
