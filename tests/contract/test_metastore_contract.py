"""The metastore contract, run against every real backend: embedded SQLite, a real MariaDB, a real
PostgreSQL (through psycopg2 and psycopg 3) and a real 3-server ZooKeeper ensemble (each test in its
own database or chroot), and against the unit tests' in-memory FakeStore, so that the fake every
unit test relies on keeps the same contract. Frozen and cut-off servers: test_metastore_faults.py."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from scheduler_failover_controller.exceptions import MetastoreError
from scheduler_failover_controller.metastore import sql as sqlstore
from scheduler_failover_controller.metastore import sql_engine
from scheduler_failover_controller.metastore import sql_tables as sqlmod
from scheduler_failover_controller.metastore.base import (
    FOREIGN_LIMIT,
    TEXT_LIMIT,
    USER_LIMIT,
    ControllerInfo,
    Metastore,
    Observation,
)
from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.metastore.reports import NodeReport
from scheduler_failover_controller.metastore.sql import SQLMetastore
from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore
from tests.conftest import missing
from tests.support.zk import expire_session
from tests.unit import fakes
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


def _backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
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


@pytest.fixture(params=["fake", "sqlite", "mariadb", "postgresql", "postgresql+psycopg", "zookeeper"])
def be(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return _backend(request, tmp_path)


@pytest.fixture(params=["sqlite", "mariadb", "postgresql", "postgresql+psycopg"])
def sql_be(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The SQL backends alone, for what only they have (tables, columns)."""
    return _backend(request, tmp_path)


@pytest.fixture
def store(be: Backend) -> Iterator[Metastore]:
    s = be.open()
    yield s
    s.close()


@pytest.fixture
def other(be: Backend) -> Iterator[Any]:
    """Opens more independent clients of the same store; closes them after the test."""
    opened: list[Metastore] = []

    def make() -> Metastore:
        opened.append(be.open())
        return opened[-1]

    yield make
    for s in opened:
        s.close()


# --- leadership lease -----------------------------------------------------------------------


def test_first_acquire_wins_and_others_are_refused(store: Metastore, other: Any) -> None:
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None and lease.holder == "a" and lease.epoch == 1
    assert LEASE - 1 < lease.remaining <= LEASE
    b = other()
    assert b.acquire_or_renew("b", "host-b", LEASE) is None
    state = b.read_state()
    assert state.lease.holder == "a" and state.lease.host == "host-a" and state.lease.valid


def test_renewal_keeps_epoch_and_the_lease(store: Metastore) -> None:
    first = store.acquire_or_renew("a", "host-a", LEASE)
    time.sleep(0.2)
    second = store.acquire_or_renew("a", "host-a", LEASE)
    assert first and second
    assert second.epoch == first.epoch
    assert LEASE - 1 < second.remaining <= LEASE


def test_release_lets_another_take_over_with_next_epoch(store: Metastore, other: Any) -> None:
    first = store.acquire_or_renew("a", "host-a", LEASE)
    assert first is not None
    assert store.release("a") is True
    assert store.release("a") is False  # already released
    taken = other().acquire_or_renew("b", "host-b", LEASE)
    assert taken is not None and taken.epoch == first.epoch + 1


def test_a_lapsed_lease_goes_to_the_next_contender(store: Metastore, other: Any, be: Backend) -> None:
    first = store.acquire_or_renew("a", "host-a", LEASE)
    assert first is not None
    b = other()
    assert b.acquire_or_renew("b", "host-b", LEASE) is None
    be.lapse(store)
    taken = b.acquire_or_renew("b", "host-b", LEASE)
    assert taken is not None and taken.epoch == first.epoch + 1
    # The old holder cannot renew: its lease (or session) is gone, and the new one's is valid.
    assert store.acquire_or_renew("a", "host-a", LEASE) is None


def test_expiry_is_judged_by_server_time(tmp_path: Path, backend: tuple[str, str]) -> None:
    """SQL: a lease left alone expires by the server's clock, with no help from the holder."""
    a, b = SQLMetastore(backend[1], TIMEOUT), SQLMetastore(backend[1], TIMEOUT)
    first = a.acquire_or_renew("a", "host-a", 0.6)
    assert first is not None
    assert b.acquire_or_renew("b", "host-b", 5) is None
    time.sleep(0.8)
    taken = b.acquire_or_renew("b", "host-b", 5)
    assert taken is not None and taken.epoch == first.epoch + 1
    assert a.acquire_or_renew("a", "host-a", 5) is None
    a.close()
    b.close()


def test_same_holder_after_a_lapse_starts_a_new_term(store: Metastore, be: Backend) -> None:
    first = store.acquire_or_renew("a", "host-a", LEASE)
    be.lapse(store)
    again = None
    for _ in range(50):  # ZooKeeper: the client reconnects with a new session first
        try:
            again = store.acquire_or_renew("a", "host-a", LEASE)
            break
        except MetastoreError:
            time.sleep(0.1)
    assert first and again and again.epoch == first.epoch + 1


def test_epoch_is_monotonic_across_many_changes_and_a_wipe(store: Metastore) -> None:
    epochs = []
    for i in range(20):
        lease = store.acquire_or_renew(f"h{i % 3}", "h", LEASE)
        assert lease is not None
        epochs.append(lease.epoch)
        assert store.release(f"h{i % 3}")
    assert epochs == list(range(epochs[0], epochs[0] + 20))
    store.clear()
    after = store.acquire_or_renew("z", "z", LEASE)
    assert after is not None and after.epoch == epochs[-1] + 1


def test_controller_clock_is_never_used(store: Metastore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller's wall clock jumping by hours changes nothing: only the server's counts."""
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    monkeypatch.setattr(time, "time", lambda: 0.0)
    assert lease is not None
    renewed = store.acquire_or_renew("a", "host-a", LEASE)
    assert renewed is not None and renewed.epoch == lease.epoch and LEASE - 1 < renewed.remaining <= LEASE


def _contend(spec: tuple[str, str], me: str, rounds: int, barrier: Any, results: Any) -> None:
    # The race is about atomicity, not speed: a call that times out on a loaded machine would leave
    # the round without its answer, so each call gets a generous deadline.
    s = open_spec(spec, timeout=20.0)
    for r in range(rounds):
        barrier.wait()
        lease = s.acquire_or_renew(me, me, 60)
        results.put((r, me, lease.epoch if lease else None))
        barrier.wait()
        if lease is not None:
            s.release(me)
        barrier.wait()
    s.close()


@pytest.mark.parametrize("contenders", [2, 3])
def test_racing_processes_exactly_one_wins_every_round(be: Backend, contenders: int) -> None:
    be.needs_server("processes racing need a store they share")
    be.open().close()  # schema first, so the race is about the lease
    rounds = 40
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(contenders, timeout=60)
    results = ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(be.spec, f"c{i}", rounds, barrier, results)) for i in range(contenders)]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=120) for _ in range(rounds * contenders)]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs)
    winners: dict[int, list[tuple[str, int]]] = {}
    for r, me, epoch in got:
        if epoch is not None:
            winners.setdefault(r, []).append((me, epoch))
    assert sorted(winners) == list(range(rounds)), "a round had no winner"
    assert all(len(w) == 1 for w in winners.values()), f"two winners in one round: {winners}"
    epochs = [winners[r][0][1] for r in range(rounds)]
    assert epochs == list(range(epochs[0], epochs[0] + rounds))


def test_concurrent_setup_from_many_processes(be: Backend) -> None:
    be.needs_server("processes need a store they share")
    code = textwrap.dedent(
        f"""
        from tests.contract.test_metastore_contract import open_spec
        s = open_spec({be.spec!r})
        print(s.read_state().lease.epoch)
        s.close()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [o[1].decode()[-500:] for o in outs]
    assert all(o[0].decode().strip() == "0" for o in outs)


def test_newer_schema_is_refused(store: Metastore, be: Backend) -> None:
    be.set_schema(store, 99)
    with pytest.raises(MetastoreError, match="schema version 99"):
        be.open()


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


# --- registry, observations, pause, events ----------------------------------------------------


def test_registry_heartbeats_and_deregistration(store: Metastore) -> None:
    store.heartbeat(ControllerInfo("n1", "h1", 11, "0.1", "standby", 0, 0))
    store.heartbeat(ControllerInfo("n2", "h2", 22, "0.1", "active", 0, 0))
    store.heartbeat(ControllerInfo("n1", "h1", 11, "0.1", "active", 0, 0))
    found = {c.host: c for c in store.controllers()}
    assert set(found) == {"n1", "n2"} and found["n1"].role == "active" and found["n2"].pid == 22
    assert all(0 <= c.age < 5 for c in found.values())
    store.deregister("n1", "someone-else")
    assert len(store.controllers()) == 2
    store.deregister("n1", "h1")
    assert [c.host for c in store.controllers()] == ["n2"]


def test_registry_keeps_the_paused_flag_each_controller_acts_on(store: Metastore) -> None:
    store.heartbeat(ControllerInfo("n1", "h1", 11, "0.1", "standby", 0, 0, paused=True))
    store.heartbeat(ControllerInfo("n2", "h2", 22, "0.1", "active", 0, 0))
    assert {c.host: c.paused for c in store.controllers()} == {"n1": True, "n2": False}
    store.heartbeat(ControllerInfo("n1", "h1", 11, "0.1", "standby", 0, 0, paused=False))
    assert {c.host: c.paused for c in store.controllers()} == {"n1": False, "n2": False}


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


def test_leashed_flags_round_trip(store: Metastore) -> None:
    """Each controller's own leashed report, and the active controller's per-node leashed observation."""
    store.heartbeat(ControllerInfo("n1", "h1", 11, "0.1", "active", 0, 0, leashed=True))
    store.heartbeat(ControllerInfo("n2", "h2", 22, "0.1", "standby", 0, 0))
    assert {c.host: c.leashed for c in store.controllers()} == {"n1": True, "n2": False}
    store.heartbeat(ControllerInfo("n1", "h1", 11, "0.1", "active", 0, 0, leashed=False))
    assert {c.host: c.leashed for c in store.controllers()} == {"n1": False, "n2": False}
    lease = store.acquire_or_renew("h1", "n1", LEASE)
    assert lease is not None
    obs = [Observation("n1", "running", (5,), "", leashed=True), Observation("n2", "stopped", (), "")]
    assert store.record_observations("h1", lease.epoch, obs)
    assert {o.node: o.leashed for o in store.observations()} == {"n1": True, "n2": False}
    dumped = store.dump()
    assert {c["host"]: c["leashed"] for c in dumped["controllers"]} == {"n1": False, "n2": False}
    assert {o["node"]: o["leashed"] for o in dumped["observations"]} == {"n1": True, "n2": False}


def test_foreign_processes_round_trip(store: Metastore) -> None:
    """An observation's foreign processes (another user's look-alikes): kept, capped, read back."""
    lease = store.acquire_or_renew("h1", "n1", LEASE)
    assert lease is not None
    many = tuple((100 + i, "u" * 40) for i in range(20))
    obs = [
        Observation("n1", "running", (5,), "", foreign=((7, "nobody"),)),
        Observation("n2", "stopped", (), "", foreign=many),
    ]
    assert store.record_observations("h1", lease.epoch, obs)
    got = {o.node: o.foreign for o in store.observations()}
    assert got["n1"] == ((7, "nobody"),)
    assert got["n2"] == tuple((pid, user[:USER_LIMIT]) for pid, user in many[:FOREIGN_LIMIT])
    assert {o["node"]: o["foreign"] for o in store.dump()["observations"]}["n1"] == [{"pid": 7, "user": "nobody"}]
    assert store.record_observations("h1", lease.epoch, [Observation("n1", "stopped", (), "")])
    assert [o.foreign for o in store.observations()] == [()]


def test_observations_are_fenced_by_epoch(store: Metastore) -> None:
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None
    obs = [Observation("n1", "running", (12, 13), ""), Observation("n2", "stopped", (), "")]
    assert store.record_observations("a", lease.epoch, obs) is True
    assert store.record_observations("a", lease.epoch + 1, obs[:1]) is False
    got = {o.node: o for o in store.observations()}
    assert got["n1"].pids == (12, 13) and got["n2"].state == "stopped"
    assert all(0 <= o.age < 5 for o in got.values())


def test_paused_flag(store: Metastore) -> None:
    assert store.read_state().paused is False
    store.set_paused(True)
    assert store.read_state().paused is True
    store.set_paused(False)
    assert store.read_state().paused is False


def test_switchover_request_is_seen_by_every_client_and_cleared(store: Metastore, other: Any) -> None:
    assert store.read_state().switchover is None
    store.request_switchover("n2", "forced")
    assert other().read_state().switchover == ("n2", "forced")
    store.request_switchover("n3", "controlled")  # a newer ask replaces the older one
    assert store.read_state().switchover == ("n3", "controlled")
    store.clear_switchover()
    assert store.read_state().switchover is None


def test_events_are_kept_bounded(store: Metastore, monkeypatch: pytest.MonkeyPatch) -> None:
    from scheduler_failover_controller.metastore import zookeeper as zkmod

    monkeypatch.setattr(sqlstore, "EVENTS_KEPT", 15)
    monkeypatch.setattr(zkmod, "EVENTS_KEPT", 15)
    monkeypatch.setattr(fakes, "EVENTS_KEPT", 15)
    for i in range(41):
        store.add_event("n1", EventKind.RESTART, f"event {i}", 3)
    events = store.events(100)
    assert 15 <= len(events) <= 35  # ZooKeeper trims in batches, SQL on every insert
    assert events[-1].message == "event 40" and events[-1].epoch == 3
    assert [e.message for e in store.events(3)] == ["event 38", "event 39", "event 40"]


def test_long_text_is_capped_to_what_the_store_keeps(store: Metastore) -> None:
    """A message or detail longer than the records keep is cut, never refused."""
    store.add_event("n1", EventKind.RESTART, "m" * (TEXT_LIMIT + 500))
    assert store.events(1)[0].message == "m" * TEXT_LIMIT
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None
    assert store.record_observations("a", lease.epoch, [Observation("n1", "failed", (), "d" * (TEXT_LIMIT + 1))])
    assert [o.detail for o in store.observations()] == ["d" * TEXT_LIMIT]


def test_clear_wipes_everything_but_the_epoch(store: Metastore) -> None:
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None
    store.set_placement("n1", "a", lease.epoch, store.read_state().placement.version, 30)
    store.heartbeat(ControllerInfo("n1", "a", 1, "0.1", "active", 0, 0))
    store.add_event("n1", EventKind.ELECTED, "x")
    store.set_paused(True)
    store.clear()
    state = store.read_state()
    assert state.lease.holder is None and state.placement.node is None and not state.paused
    assert store.controllers() == [] and store.events() == []
    assert state.lease.epoch == lease.epoch


# --- a server that is not there (frozen and cut-off servers: test_metastore_faults.py) ---------------


def test_unreachable_server_is_a_metastore_error() -> None:
    from tests.support.ports import free_port

    s = SQLMetastore(f"mysql+pymysql://u:pw@127.0.0.1:{free_port()}/x", 1.0)
    with pytest.raises(MetastoreError) as info:
        s.read_state()
    assert "pw" not in str(info.value)


def test_controller_clocks_minutes_apart_agree_on_expiry(mariadb_url: str, tmp_path: Path) -> None:
    """Contenders whose clocks are 10 minutes fast and slow (libfaketime) obey the server's clock."""
    faketime = shutil.which("faketime")
    if faketime is None:
        missing("faketime")
    script = tmp_path / "contend.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            from scheduler_failover_controller.metastore.sql import SQLMetastore
            s = SQLMetastore(sys.argv[1], 5.0)
            lease = s.acquire_or_renew(sys.argv[2], sys.argv[2], float(sys.argv[3]))
            print("won" if lease else "lost", lease.epoch if lease else -1, flush=True)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def contend(offset: str, holder: str, ttl: float) -> str:
        out = subprocess.run(
            [faketime, "-f", offset, sys.executable, str(script), mariadb_url, holder, str(ttl)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert out.returncode == 0, out.stderr[-1000:]
        return out.stdout.strip()

    assert contend("-10m", "slow", 3.0).startswith("won 1")
    # Ten minutes "later" by its own clock, the fast contender still sees a valid lease.
    assert contend("+10m", "fast", 3.0) == "lost -1"
    time.sleep(3.5)
    assert contend("+10m", "fast", 3.0) == "won 2"
    assert contend("-10m", "slow", 3.0) == "lost -1"


# --- ZooKeeper specifics ----------------------------------------------------------------------------


def test_zookeeper_digest_auth_protects_the_records(zk_hosts: str) -> None:
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoAuthError

    owner = ZooKeeperMetastore(zk_hosts, "/secured", LEASE, TIMEOUT, auth="sfc:pw")
    owner.setup()
    assert owner.acquire_or_renew("a", "host-a", LEASE) is not None
    stranger = KazooClient(hosts=zk_hosts, timeout=LEASE)
    stranger.start(timeout=10)
    try:
        with pytest.raises(NoAuthError):
            stranger.get("/secured/placement")
        with pytest.raises(NoAuthError):
            stranger.set("/secured/epoch", b"0")
    finally:
        stranger.stop()
        stranger.close()
    friend = ZooKeeperMetastore(zk_hosts, "/secured", LEASE, TIMEOUT, auth="sfc:pw")
    assert friend.read_state().lease.holder == "a"
    friend.close()
    # A wrong password or none: one line that says what to check, never a bare "NoAuthError:".
    for auth in ("sfc:wrong", ""):
        wrong = ZooKeeperMetastore(zk_hosts, "/secured", LEASE, TIMEOUT, auth=auth)
        with pytest.raises(MetastoreError, match=r"refused access.*NoAuthError.*metadata_service_zookeeper_auth"):
            wrong.read_state()
        wrong.close()
    owner.close()


def test_zookeeper_normal_close_is_no_lost_session(zk_hosts: str, caplog: pytest.LogCaptureFixture) -> None:
    store = ZooKeeperMetastore(zk_hosts, ROOT, LEASE, TIMEOUT)
    store.setup()
    store.read_state()
    with caplog.at_level(logging.DEBUG):
        store.close()
        time.sleep(0.5)  # kazoo reports the state change from its own thread
    assert not [r for r in caplog.records if "session lost" in r.getMessage()], caplog.text


def test_zookeeper_refuses_a_session_timeout_the_servers_will_not_grant(zk_hosts: str) -> None:
    """The ensemble allows at most 60 s: a 120 s lease must not silently become a 60 s session."""
    store = ZooKeeperMetastore(zk_hosts, ROOT, 120.0, TIMEOUT)
    with pytest.raises(MetastoreError, match="granted a session timeout of 60s but lease_ttl is 120s"):
        store.setup()
    store.close()


def test_zookeeper_suspended_connection_is_not_usable(zk_ensemble: Any, zk_hosts: str) -> None:
    store = ZooKeeperMetastore(zk_hosts, ROOT, LEASE, TIMEOUT)
    store.setup()
    assert store.acquire_or_renew("a", "a", LEASE) is not None and store.usable()
    for i in range(3):
        zk_ensemble.freeze(i)
    try:
        deadline = time.monotonic() + 2 * LEASE
        while store.usable() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not store.usable()
        with pytest.raises(MetastoreError):
            store.acquire_or_renew("a", "a", LEASE)
    finally:
        for i in range(3):
            zk_ensemble.thaw(i)
    store.close()


# --- self mode: per-node reports and the cluster's node_control ---------------------------------


def test_reports_round_trip_and_a_late_write_never_replaces_a_newer_one(store: Metastore) -> None:
    """Each node's report as written (stamped by the server), ordered by ``seq``: an older look's
    write that lands after a newer one is refused, and the newer report stays."""
    first = NodeReport("n1", "n1:1:aa", "running", (5, 6), True, ((7, "nobody"),), "ok", 3, 3, seq=10)
    assert store.write_report(first)
    assert store.write_report(NodeReport("n2", "n2:2:bb", "stopped", answers=3, seq=1))
    got = {r.node: r for r in store.reports()}
    assert set(got) == {"n1", "n2"}
    n1 = got["n1"]
    assert (n1.holder, n1.state, n1.pids, n1.leashed, n1.foreign, n1.detail) == (
        "n1:1:aa",
        "running",
        (5, 6),
        True,
        ((7, "nobody"),),
        "ok",
    )
    assert (n1.answers, n1.started_for, n1.seq) == (3, 3, 10)
    assert 0 <= n1.age < 5
    newer = NodeReport("n1", "n1:1:aa", "stopped", answers=4, started_for=3, seq=12)
    assert store.write_report(newer)
    late = NodeReport("n1", "n1:1:aa", "running", (5,), True, answers=3, started_for=3, seq=11)
    assert not store.write_report(late)
    assert not store.write_report(replace(late, seq=12))  # equal is not newer
    kept = {r.node: r for r in store.reports()}["n1"]
    assert (kept.state, kept.answers, kept.seq) == ("stopped", 4, 12)
    # A restarted controller (a new holder) goes on from the stored seq.
    assert store.write_report(NodeReport("n1", "n1:9:cc", "running", (8,), True, answers=4, started_for=4, seq=13))
    assert {r.node: r.holder for r in store.reports()}["n1"] == "n1:9:cc"


def test_reports_cap_their_free_text(store: Metastore) -> None:
    many = tuple((100 + i, "u" * 40) for i in range(20))
    assert store.write_report(NodeReport("n1", "n1:1:aa", "unknown", detail="x" * 5000, foreign=many, seq=1))
    report = store.reports()[0]
    assert report.detail == "x" * TEXT_LIMIT
    assert report.foreign == tuple((pid, user[:USER_LIMIT]) for pid, user in many[:FOREIGN_LIMIT])


def test_node_control_is_recorded_once_and_changed_only_while_paused(store: Metastore, other: Any) -> None:
    assert store.read_node_control() is None
    assert store.claim_node_control("self") == "self"
    assert store.read_node_control() == "self"
    second = other()
    assert second.claim_node_control("ssh") == "self"  # the first one recorded stays
    assert not second.set_node_control("ssh")  # not paused: refused
    assert store.claim_node_control("ssh") == "self"
    store.set_paused(True)
    assert second.set_node_control("ssh")
    assert store.claim_node_control("self") == "ssh"
    store.set_paused(False)
    assert not store.set_node_control("self")
    assert second.claim_node_control("self") == "ssh"


def test_clear_wipes_reports_and_node_control(store: Metastore) -> None:
    assert store.write_report(NodeReport("n1", "n1:1:aa", "running", (5,), True, answers=1, started_for=1, seq=4))
    assert store.claim_node_control("ssh") == "ssh"
    assert store.dump()["node_control"] == "ssh"
    assert [r["node"] for r in store.dump()["reports"]] == ["n1"]
    store.clear()
    assert store.reports() == []
    assert store.read_node_control() is None
    assert store.claim_node_control("self") == "self"
    assert store.write_report(NodeReport("n1", "n1:1:aa", "stopped", seq=1))


def test_a_placement_to_nowhere_keeps_its_expiry(store: Metastore) -> None:
    """Self mode's stop order: no node may run the scheduler, and its expiry (ttl after the write, by
    the server's clock) bounds every placement renewed before it (docs/design.md, 5a)."""
    lease = store.acquire_or_renew("h1", "n1", LEASE)
    assert lease is not None
    placed = store.set_placement("n2", "h1", lease.epoch, store.read_state().placement.version, 30)
    assert placed is not None
    order = store.set_placement(None, "h1", lease.epoch, placed.version, 30)
    assert order is not None and order.node is None and not order.valid
    read = store.read_state().placement
    assert read.node is None and not read.valid and 25 < read.remaining <= 30
    assert store.renew_placement("n2", 30) is None  # the old node can no longer renew it
