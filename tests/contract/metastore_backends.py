"""The backends the metastore contract runs against (tests/contract/test_metastore_*.py): embedded
SQLite, a real MariaDB, a real PostgreSQL (through psycopg2 and psycopg 3), a real 3-server ZooKeeper
ensemble, and the unit tests' in-memory FakeStore, so that the fake every unit test relies on keeps
the same contract. Each test gets its own database or chroot; the fixtures are in conftest.py."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from scheduler_failover_controller.metastore import sql_engine
from scheduler_failover_controller.metastore import sql_tables as sqlmod
from scheduler_failover_controller.metastore.base import (
    Metastore,
)
from scheduler_failover_controller.metastore.sql import SQLMetastore
from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore
from tests.support.zk import expire_session
from tests.unit.fakes import FakeStore

TIMEOUT = 2.0
LEASE = 5.0  # the leadership lease (ZooKeeper: the session timeout)
ROOT = "/sfc"


def open_spec(spec: tuple[str, str], timeout: float = TIMEOUT) -> Metastore:
    """A new, independent client of the store named by ``spec`` (picklable, for child processes)."""
    kind, where = spec
    store: Metastore = (
        ZooKeeperMetastore(where, ROOT, LEASE, timeout) if kind == "zookeeper" else SQLMetastore(where, timeout)
    )
    store.setup()
    return store


class RealTimeFakeStore(FakeStore):
    """The in-memory FakeStore with a server clock that runs in real time, as a server's does."""

    def __init__(self) -> None:
        self._offset = 0.0
        super().__init__()

    @property
    def server_now(self) -> float:
        return self._offset + time.monotonic()  # monotonic: the tests move the wall clock

    @server_now.setter
    def server_now(self, value: float) -> None:
        self._offset = value - time.monotonic()


@dataclass
class Backend:
    name: str
    spec: tuple[str, str]
    fake: FakeStore | None = None  # the in-memory store: every client of the test is this one object

    def open(self) -> Metastore:
        if self.fake is not None:
            self.fake.setup()
            return self.fake
        return open_spec(self.spec)

    def needs_server(self, why: str) -> None:
        """Skip the test for the in-memory store, which has no server: ``why`` says what it needs."""
        if self.fake is not None:
            pytest.skip(f"FakeStore: {why}")

    def lapse(self, store: Metastore) -> None:
        """End ``store``'s leadership the way a crash would, without a release.

        SQL: the server's clock passes the lease's expiry (moved into the past in the row).
        ZooKeeper: the server expires the session (a second connection with the same session id
        closes it), as it would after a partition longer than the session timeout.
        """
        if isinstance(store, FakeStore):
            store.lease_expires_at = store.server_now - 1
            return
        if isinstance(store, ZooKeeperMetastore):
            sid, password = store.client.client_id
            expire_session(self.spec[1], (sid, password), LEASE)
            # Wait until the client has noticed and is back with a new session.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (store.client.client_id or (sid,))[0] == sid:
                time.sleep(0.05)
            while time.monotonic() < deadline and not store.usable():
                time.sleep(0.05)
            return
        assert isinstance(store, SQLMetastore)
        from sqlalchemy import update

        with store.engine.begin() as conn:
            conn.execute(update(sqlmod.lease_table).values(expires_at=store.now - 1))

    def set_schema(self, store: Metastore, version: int) -> None:
        if isinstance(store, FakeStore):
            store.schema_version = str(version)
            return
        if isinstance(store, ZooKeeperMetastore):
            store.client.set(store._p("schema"), str(version).encode())
            return
        assert isinstance(store, SQLMetastore)
        from sqlalchemy import update

        with store.engine.begin() as conn:
            conn.execute(
                update(sqlmod.meta_table).where(sqlmod.meta_table.c.name == "schema_version").values(value=str(version))
            )


def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "fake":
        return Backend("fake", ("fake", ""), RealTimeFakeStore())
    if request.param == "sqlite":
        return Backend("sqlite", ("sql", f"sqlite:///{tmp_path / 'metastore.db'}"))
    if request.param == "mariadb":
        return Backend(request.param, ("sql", request.getfixturevalue("mariadb_url")))
    if request.param.startswith("postgresql"):  # psycopg2 (the fixture's URL) or psycopg 3
        url = request.getfixturevalue("postgres_url")
        if request.param == "postgresql+psycopg":
            if not sql_engine._SQLALCHEMY_2:
                pytest.skip("SQLAlchemy 1.4 (Airflow 2's) has no psycopg 3 dialect; psycopg2 is tested instead")
            url = url.replace("+psycopg2://", "+psycopg://")
        return Backend(request.param, ("sql", url))
    return Backend("zookeeper", ("zookeeper", request.getfixturevalue("zk_hosts")))
