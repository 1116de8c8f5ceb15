"""SQL metastores a first release created, on SQLite, MariaDB and PostgreSQL (psycopg2 and psycopg 3):
their tables gain the new columns, and a SQLite file another writer holds is switched to WAL once
it is let go.

The backends and the ``be``, ``sql_be``, ``store`` and ``other`` fixtures: tests/contract/conftest.py and
metastore_backends.py.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from scheduler_failover_controller.metastore import sql_tables as sqlmod
from scheduler_failover_controller.metastore.base import (
    ControllerInfo,
    Observation,
)
from scheduler_failover_controller.metastore.sql import SQLMetastore
from tests.contract.metastore_backends import LEASE, TIMEOUT, Backend


def test_tables_of_the_first_release_gain_the_new_columns(sql_be: Backend) -> None:
    """A metastore created by the first release (no ``paused``/``leashed`` columns) is brought up to date.

    Its rows keep working (they read as not paused, not leashed), and two controllers migrating at
    the same moment both succeed.
    """
    be = sql_be  # (ZooKeeper keeps JSON values: nothing to migrate)
    from sqlalchemy import Column, MetaData, Table, create_engine
    from sqlalchemy.schema import CreateTable

    added = {(c.table.name, c.name) for c in sqlmod.ADDED_COLUMNS}
    assert added == {
        ("sfc_controllers", "paused"),
        ("sfc_controllers", "leashed"),
        ("sfc_observations", "leashed"),
        ("sfc_observations", "foreign_procs"),
        ("sfc_events", "request_id"),
        ("sfc_events", "service"),
    }

    def as_first_released(table: Any) -> Table:
        return Table(
            table.name,
            MetaData(),
            *(
                Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
                for c in table.columns
                if (table.name, c.name) not in added
            ),
        )

    engine = create_engine(be.spec[1])
    old_controllers = as_first_released(sqlmod.controllers_table)
    old_observations = as_first_released(sqlmod.observations_table)
    with engine.begin() as conn:
        conn.execute(CreateTable(old_controllers))
        conn.execute(CreateTable(old_observations))
        conn.execute(
            old_controllers.insert().values(
                host="n0", holder="x", pid=1, version="0.1", role="standby", last_seen=0, started_at=0
            )
        )
        conn.execute(
            old_observations.insert().values(
                node="n0", state="running", pids="[7]", detail="", observed_at=0, by_host="n0", epoch=1
            )
        )
    engine.dispose()
    first, second = SQLMetastore(be.spec[1], TIMEOUT), SQLMetastore(be.spec[1], TIMEOUT)
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda s: s.setup(), (first, second)))
        assert {c.host: (c.paused, c.leashed) for c in first.controllers()} == {"n0": (False, False)}
        assert [(o.node, o.pids, o.leashed, o.foreign) for o in first.observations()] == [("n0", (7,), False, ())]
        second.heartbeat(ControllerInfo("n1", "h1", 11, "0.2", "standby", 0, 0, paused=True, leashed=True))
        assert {c.host: (c.paused, c.leashed) for c in first.controllers()} == {
            "n0": (False, False),
            "n1": (True, True),
        }
        lease = second.acquire_or_renew("h1", "n1", LEASE)
        assert lease is not None
        assert second.record_observations("h1", lease.epoch, [Observation("n1", "running", (9,), "", leashed=True)])
        assert [(o.node, o.leashed) for o in first.observations()] == [("n1", True)]
    finally:
        first.close()
        second.close()


def test_a_sqlite_file_held_by_another_writer_is_switched_to_wal_once_it_is_let_go(tmp_path: Path) -> None:
    """Leaving a rollback journal needs the file to itself, and while another connection is inside
    a write SQLite says "database is locked" at once, without waiting (two controllers opening a
    first-release file at one moment failed setup so). Setup waits within its deadline instead."""
    import sqlite3
    import threading

    path = tmp_path / "metastore.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE other (a)")  # a rollback-journal file (SQLite's default)
    writer.execute("BEGIN")
    writer.execute("SELECT * FROM other").fetchall()
    writer.execute("INSERT INTO other VALUES (1)")  # a writer mid-transaction (as another store's setup)
    let_go = threading.Timer(0.5, lambda: writer.execute("COMMIT"))
    let_go.start()
    store = SQLMetastore(f"sqlite:///{path}", TIMEOUT)
    try:
        started = time.monotonic()
        store.setup()
        assert time.monotonic() - started >= 0.4  # it did wait for the writer
        with contextlib.closing(sqlite3.connect(path)) as fresh:
            assert fresh.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert store.acquire_or_renew("h1", "n1", LEASE) is not None
    finally:
        let_go.join()
        store.close()
        writer.close()
