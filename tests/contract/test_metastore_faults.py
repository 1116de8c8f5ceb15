"""Every metastore call keeps to ``metastore_timeout`` when the server freezes or the network drops
its packets, on every backend: real servers started here, each in a network namespace of its own.

Per backend and fault, every public call runs at once, on stores that were working a moment
before: with a pooled connection ("warm"), with an empty pool ("cold": the call connects) and on
stores that never connected ("new": setup, inside the call). Each must raise MetastoreError (close:
return) within ``metastore_timeout + 1 s`` of its own start. After the fault the stores work
again, no lock or transaction is left behind, no failed SQL write shows up later, and no thread
of the calls lives on.

Faults: SIGSTOP of the server's processes (SQLite: the process holding the database's write lock),
and ``iptables -j DROP`` of the server's port inside the namespace, where the calls run too
(threads that entered it, tests/support/netns.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

from scheduler_failover_controller.exceptions import MetastoreError
from scheduler_failover_controller.metastore import deadline as dl
from scheduler_failover_controller.metastore import sql_engine
from scheduler_failover_controller.metastore.base import ControllerInfo, Metastore, Observation
from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.metastore.sql import SQLMetastore
from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore
from tests.conftest import mariadb_binaries, missing, start_mariadb
from tests.support.faults import blackholed, frozen, namespace
from tests.support.netns import in_netns
from tests.support.pg import postgres_bindir, start_postgres
from tests.support.zk import Ensemble, start_ensemble, zookeeper_available

T = TypeVar("T")
TIMEOUT = 1.0  # metastore_timeout of every store here
BOUND = TIMEOUT + 1.0  # what the contract promises
LEASE = 4.0  # ZooKeeper session timeout: outlives the faults, so sessions come back
ROOT = "/sfc"
TIMINGS: list[str] = []  # one line per test, printed at the end (-s or the terminal summary)


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        missing("root (network namespaces, iptables)")
    # The deadline watchdog is one thread per process: start it here, not in a thread of the
    # namespace (a thread would keep the namespace alive after it is deleted).
    with dl.scope(0.001):
        pass
    with namespace() as name:
        yield name


@pytest.fixture(scope="module")
def ns_mariadb(netns: str) -> Iterator[Any]:
    if not mariadb_binaries():
        missing("mariadb-server (mariadbd, mariadb-install-db)")
    with start_mariadb(netns=netns) as db:
        yield db


@pytest.fixture(scope="module")
def ns_postgres(netns: str) -> Iterator[Any]:
    if postgres_bindir() is None:
        missing("postgresql (server binaries)")
    with start_postgres(netns=netns) as server:
        yield server


@pytest.fixture(scope="module")
def ns_zookeeper(netns: str) -> Iterator[Ensemble]:
    if not zookeeper_available():
        missing("zookeeper (java, /usr/share/java/zookeeper.jar)")
    with start_ensemble(3, netns=netns) as ensemble:
        yield ensemble


@dataclass
class Site:
    """A store's server under the test's control."""

    name: str
    open: Callable[[], Metastore]  # a new client, not yet connected
    pids: Callable[[], list[int]]  # the processes to freeze
    ports: list[int] = field(default_factory=list)  # the ports to black-hole
    netns: str | None = None  # where the server listens and the calls run
    sql: bool = True
    lifted: Callable[[], None] = lambda: None  # what ends the fault, after the thaw


@contextlib.contextmanager
def _sqlite_site(tmp_path: Path) -> Iterator[Site]:
    """A SQLite file whose write lock a frozen process holds while the fault is on."""
    path = tmp_path / "metastore.db"
    holder: list[subprocess.Popen[str]] = []

    def release() -> None:
        for process in holder:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
            process.kill()
            process.wait()

    def lock() -> list[int]:
        code = textwrap.dedent(
            f"""
            import sqlite3, time
            conn = sqlite3.connect({str(path)!r}, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            print("locked", flush=True)
            time.sleep(300)
            """
        )
        process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        holder.append(process)
        assert process.stdout is not None and process.stdout.readline().strip() == "locked"
        return [process.pid]

    try:
        yield Site("sqlite", lambda: SQLMetastore(f"sqlite:///{path}", TIMEOUT), lock, lifted=release)
    finally:
        release()


@pytest.fixture
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    kind = request.param
    if kind == "sqlite":
        with _sqlite_site(tmp_path) as found:
            yield found
        return
    ns: str = request.getfixturevalue("netns")
    if kind == "mariadb":
        db = request.getfixturevalue("ns_mariadb")
        name = db.create_database()
        try:
            yield Site(kind, lambda: SQLMetastore(db.url(name), TIMEOUT), lambda: [db.pid], [db.port], ns)
        finally:
            db.drop_database(name)
    elif kind.startswith("postgresql"):
        if kind.endswith("+psycopg") and not sql_engine._SQLALCHEMY_2:
            pytest.skip("SQLAlchemy 1.4 (Airflow 2's) has no psycopg 3 dialect; psycopg2 is tested instead")
        pg = request.getfixturevalue("ns_postgres")
        name = pg.create_database()
        url = pg.url(name, kind.split("+")[1])
        try:
            yield Site(kind, lambda: SQLMetastore(url, TIMEOUT), pg.pids, [pg.port], ns)
        finally:
            pg.drop_database(name)
    else:
        ensemble: Ensemble = request.getfixturevalue("ns_zookeeper")
        for i in range(len(ensemble.servers)):  # a previous test may have frozen them
            with contextlib.suppress(ProcessLookupError):
                ensemble.thaw(i)
        ensemble.wait_quorum()
        chroot = "/f_" + os.urandom(6).hex()
        hosts = ensemble.hosts + chroot

        def admin(fn: Callable[[Any], None]) -> None:
            from kazoo.client import KazooClient

            def run() -> None:
                client = KazooClient(hosts=ensemble.hosts, timeout=10)
                client.start(timeout=30)
                try:
                    fn(client)
                finally:
                    client.stop()
                    client.close()

            in_netns(ns, run)

        admin(lambda c: c.ensure_path(chroot))
        try:
            yield Site(
                kind,
                lambda: ZooKeeperMetastore(hosts, ROOT, LEASE, TIMEOUT),
                lambda: [s.process.pid for s in ensemble.servers if s.process is not None],
                [s.client_port for s in ensemble.servers],
                ns,
                sql=False,
            )
        finally:
            admin(lambda c: c.delete(chroot, recursive=True))


def _calls(epoch: int) -> list[tuple[str, Callable[[Metastore], object]]]:
    """Every public call of the contract, with arguments that would write something."""
    return [
        ("setup", lambda s: s.setup()),
        ("acquire_or_renew", lambda s: s.acquire_or_renew("b", "host-b", 30)),
        ("release", lambda s: s.release("a")),
        ("read_state", lambda s: s.read_state()),
        ("set_placement", lambda s: s.set_placement("n2", "a", epoch, 0, 30)),
        ("renew_placement", lambda s: s.renew_placement("n1", 30)),
        ("renew_placement fenced", lambda s: s.renew_placement("n1", 30, "a", epoch)),
        ("release_placement", lambda s: s.release_placement("n1")),
        ("heartbeat", lambda s: s.heartbeat(ControllerInfo("late", "h9", 9, "0.1", "standby", 0, 0, leashed=True))),
        ("deregister", lambda s: s.deregister("n1", "a")),
        ("controllers", lambda s: s.controllers()),
        ("record_observations", lambda s: s.record_observations("a", epoch, [Observation("late", "x", (), "")])),
        ("observations", lambda s: s.observations()),
        ("set_paused", lambda s: s.set_paused(True)),
        ("request_switchover", lambda s: s.request_switchover("late", "forced")),
        ("clear_switchover", lambda s: s.clear_switchover()),
        ("add_event", lambda s: s.add_event("late", EventKind.ALERT, "late")),
        ("events", lambda s: s.events()),
        ("clear", lambda s: s.clear()),
        ("dump", lambda s: s.dump()),
    ]


def _parallel(fns: list[Callable[[], T]]) -> list[T]:
    with ThreadPoolExecutor(max(1, min(8, len(fns)))) as pool:
        return list(pool.map(lambda fn: fn(), fns))


def _healthy(fn: Callable[[], T], tries: int = 5) -> Callable[[], T]:
    """``fn`` retried a few times: a call to the HEALTHY server while the test builds its stores
    (the 1 s deadline it is held to can pass on a loaded machine; that is not what is tested)."""

    def call() -> T:
        for _ in range(tries - 1):
            try:
                return fn()
            except MetastoreError:
                time.sleep(0.2)
        return fn()

    return call


def _wave(jobs: list[tuple[str, Callable[[], object]]]) -> list[tuple[str, float, BaseException | None]]:
    """Run every job at the same moment, each in its own thread; (name, seconds, error) of each."""
    barrier = threading.Barrier(len(jobs))

    def one(job: tuple[str, Callable[[], object]]) -> tuple[str, float, BaseException | None]:
        name, fn = job
        barrier.wait()
        began = time.monotonic()
        try:
            fn()
            error = None
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            error = exc
        return name, time.monotonic() - began, error

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(one, jobs))


def _until(what: str, fn: Callable[[], T], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except MetastoreError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: still failing {timeout:g}s after the fault was lifted") from None
            time.sleep(0.2)


CASES = [
    ("sqlite", "frozen"),
    *(
        (kind, fault)
        for kind in ("mariadb", "postgresql+psycopg2", "postgresql+psycopg")
        for fault in ("frozen", "blackholed")
    ),
    ("zookeeper", "frozen"),
    ("zookeeper", "blackholed"),
]


@pytest.mark.parametrize(("site", "fault"), CASES, indirect=["site"], ids=[f"{k}-{f}" for k, f in CASES])
def test_every_call_fails_within_its_timeout(site: Site, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    def here(fn: Callable[[], T]) -> T:
        return in_netns(site.netns, fn)

    # Stores that work: one per call with a pooled connection, one per call with none (SQL), and
    # stores that never connected. The first holds the lease, with a placement on n1.
    calls = _calls(0)
    warm = here(lambda: _parallel([site.open for _ in calls]))
    here(lambda: _parallel([_healthy(s.setup) for s in warm]))
    lease = here(_healthy(lambda: warm[0].acquire_or_renew("a", "host-a", 60)))
    assert lease is not None
    placed = here(lambda: warm[0].set_placement("n1", "a", lease.epoch, warm[0].read_state().placement.version, 60))
    assert placed is not None
    here(lambda: warm[0].heartbeat(ControllerInfo("n1", "a", 1, "0.1", "active", 0, 0)))
    calls = _calls(lease.epoch)
    cold: list[Metastore] = []
    if site.sql:
        cold = here(lambda: _parallel([site.open for _ in calls]))
        here(lambda: _parallel([_healthy(s.setup) for s in cold]))
        for s in cold:
            assert isinstance(s, SQLMetastore)
            s.engine.dispose()
    fresh = here(lambda: _parallel([site.open for _ in range(3)]))
    closing = here(lambda: _parallel([site.open, site.open]))
    here(lambda: _parallel([_healthy(s.setup) for s in closing]))
    here(lambda: _parallel([_healthy(s.read_state) for s in warm]))  # every warm store has its connection now
    jobs: list[tuple[str, Callable[[], object]]] = []
    for stores, variant in ((warm, "warm"), (cold, "cold")):
        for (name, call), store in zip(calls, stores):
            jobs.append((f"{name} ({variant})", partial(call, store)))
    for (name, call), store in zip(calls[:3], fresh):  # setup, acquire_or_renew, release on new stores
        jobs.append((f"{name} (new)", partial(call, store)))
    jobs.append(("close", closing[0].close))

    threads_before = set(threading.enumerate())
    caplog.set_level(logging.WARNING)
    caplog.clear()
    fault_on = frozen(site.pids()) if fault == "frozen" else blackholed(str(site.netns), site.ports)
    try:
        with fault_on:
            results = here(lambda: _wave(jobs))
    finally:
        site.lifted()
    records = list(caplog.records)

    slow = [(n, round(s, 2), repr(e)) for n, s, e in results if s >= BOUND]
    assert not slow, f"calls that took longer than {BOUND:g}s: {slow}"
    wrong = [(n, repr(e)) for n, _, e in results if n != "close" and not isinstance(e, MetastoreError)]
    assert not wrong, f"calls that did not fail with MetastoreError: {wrong}"
    assert [e for n, _, e in results if n == "close"] == [None]
    messages = {str(e) for _, _, e in results if e is not None}
    assert all("\n" not in m and "sfc-secret" not in m for m in messages), messages  # one line, no password
    worst = max(results, key=lambda r: r[1])
    TIMINGS.append(
        f"{site.name} {fault}: {len(results)} calls, slowest {worst[1]:.3f}s ({worst[0]}), "
        f"median {sorted(r[1] for r in results)[len(results) // 2]:.3f}s"
    )
    # One warning line is the caller's to log: the store itself logs nothing at WARNING or above
    # per failed call (kazoo's own connection-state lines aside).
    noisy = [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if r.name.startswith(("sqlalchemy", "scheduler_failover_controller.metastore.sql")) or r.exc_info
    ]
    assert not noisy, noisy
    if site.sql:
        assert set(threading.enumerate()) - threads_before == set(), "a call left a thread behind"

    # The fault is lifted: every store works again; nothing is locked, nothing failed landed late.
    checker = here(site.open)
    try:
        _until("a new store", lambda: here(checker.read_state))
        for store in (warm[1], *cold[1:2], fresh[0]):
            _until("a store that failed", partial(here, store.read_state))
        if site.sql:
            time.sleep(TIMEOUT)  # what a transaction left open by a vanished client may hold the server
            state = here(checker.read_state)
            assert not state.paused and state.switchover is None, "a write that failed landed after all"
            assert state.lease.holder == "a" and state.placement.node == "n1"
            assert "late" not in {c.host for c in here(checker.controllers)}
            assert "late" not in {e.host for e in here(checker.events)}
        # Every table writable: no lock is left (SQL: innodb_lock_wait_timeout / lock_timeout 1 s).
        _until("writes", lambda: here(checker.clear), timeout=10)
        assert here(lambda: checker.acquire_or_renew("c", "host-c", 5)) is not None
    finally:
        here(lambda: _parallel([s.close for s in (checker, *warm, *cold, *fresh, closing[1])]))


@pytest.fixture(scope="module", autouse=True)
def _report_timings() -> Iterator[None]:
    yield
    if TIMINGS:
        print("\n" + "\n".join(f"time to error: {line}" for line in TIMINGS), file=sys.stderr)
