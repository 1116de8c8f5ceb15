"""The lab's metastores on 198.18.0.2: MariaDB, PostgreSQL and a ZooKeeper ensemble."""

from __future__ import annotations

import abc
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from scheduler_failover_controller.metastore.base import Metastore
from scheduler_failover_controller.metastore.sql import SQLMetastore
from tests.conftest import MariaDB, postgres_binaries, start_mariadb, stop_server
from tests.lab.network import Network
from tests.lab.tools import (
    METASTORE_IP,
    SUBNET,
    T,
)
from tests.support.netns import in_netns
from tests.support.ports import free_port
from tests.support.waiting import wait_for
from tests.support.zk import Ensemble, start_ensemble

# --- the metastore of a lab -------------------------------------------------------------------


class LabMetastore(abc.ABC):
    """Where one lab's controllers keep their state, on the network's metastore host."""

    kind = ""

    @abc.abstractmethod
    def open(self, token: str) -> None:
        """Make lab ``token`` a namespace of its own on the shared server (a database, a chroot)."""

    @abc.abstractmethod
    def settings(self) -> dict[str, str]:
        """The config keys its hosts need to reach that namespace on 198.18.0.2."""

    @abc.abstractmethod
    def reader(self) -> Metastore:
        """A connected store for the tests, which run in the root namespace."""

    @abc.abstractmethod
    def drop(self) -> None:
        """Remove the lab's namespace on the server."""

    @abc.abstractmethod
    def freeze(self) -> None:
        """SIGSTOP the server (every server process: the whole ensemble, every backend)."""

    @abc.abstractmethod
    def thaw(self) -> None:
        """SIGCONT what ``freeze`` stopped."""

    @abc.abstractmethod
    def restart(self, down: float = 0.0) -> None:
        """Stop the server (as an operator's restart does), keep it down ``down`` seconds, start
        it again on the same address, port and data, and wait until it serves."""


class MariaDBSite(LabMetastore):
    """A database of its own on the network's MariaDB, read over the server's unix socket."""

    kind = "mariadb"

    def __init__(self, db: MariaDB, net: Network | None = None) -> None:
        self.db = db
        self.net = net  # where the server runs (its metastore namespace); needed by restart
        self.database = ""

    def open(self, token: str) -> None:
        self.database = self.db.create_database()

    def settings(self) -> dict[str, str]:
        return {"metadata_service_sql_conn": self.db.url(self.database)}

    def reader(self) -> Metastore:
        return SQLMetastore(f"mysql+pymysql://root@localhost/{self.database}?unix_socket={self.db.socket_path}", 2.0)

    def drop(self) -> None:
        """Drop the lab's database, first ending the sessions of hosts that are gone.

        A host cut off in the middle of a transaction leaves a session on the server that still
        holds its locks (nothing tells the server the client is gone): DROP DATABASE would wait
        for it, so such sessions are killed first.
        """
        with self.db.admin() as conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s", (self.database,))
            for (session,) in cur.fetchall():
                with contextlib.suppress(Exception):
                    cur.execute(f"KILL {int(session)}")
            cur.execute("SET SESSION lock_wait_timeout = 10")
            cur.execute(f"DROP DATABASE IF EXISTS {self.database}")

    def freeze(self) -> None:
        self.db.freeze()

    def thaw(self) -> None:
        self.db.thaw()

    def restart(self, down: float = 0.0) -> None:
        """mariadbd stopped (SIGTERM: a clean shutdown) and started again with the same arguments.

        The new process replaces ``db.process``; network_with_mariadb stops it at the end (the
        server's own context manager only knows the first one).
        """
        assert self.net is not None, "MariaDBSite(db, net) to restart the server"
        argv = psutil.Process(self.db.pid).cmdline()
        stop_server(self.db.process)
        time.sleep(down)
        self.db.process = subprocess.Popen(
            ["ip", "netns", "exec", self.net.meta_ns, *argv],  # execs mariadbd: same pid
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.net.keep_track(mariadb=self.db)

        def serving() -> bool:
            if self.db.process.poll() is not None:
                raise AssertionError(f"mariadbd exited {self.db.process.returncode} after the restart")
            try:
                with self.db.admin() as conn, conn.cursor() as cur:
                    cur.execute("SELECT 1")
                return True
            except Exception:  # noqa: BLE001 - not up yet
                return False

        wait_for(serving, 60, "MariaDB to serve again", interval=0.2)


@dataclass
class PostgresServer:
    """A PostgreSQL server of the lab: data in ``base``, on ``host``:``port`` inside ``netns``.

    It runs as the ``postgres`` user (``setpriv``, which execs: the Popen's pid is the
    postmaster). The controllers log in over TCP as ``sfc`` with a password (scram-sha-256,
    from 198.18.0.0/24 only); the tests, in the root namespace, as ``postgres`` over the unix
    socket in ``base`` (trust).
    """

    bindir: Path
    base: Path
    port: int
    host: str
    netns: str | None
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.base / "data"

    def _as_postgres(self, *argv: str) -> list[str]:
        wrap = ["ip", "netns", "exec", self.netns] if self.netns else []
        who = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] if os.geteuid() == 0 else []
        return [*wrap, *who, *argv]

    def init(self) -> None:
        subprocess.run(
            self._as_postgres(
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all sfc {SUBNET}.0/24 scram-sha-256\n")

    def admin(self) -> Any:
        import psycopg2

        conn = psycopg2.connect(
            host=str(self.base), port=self.port, user="postgres", dbname="postgres", connect_timeout=5
        )
        conn.autocommit = True
        return conn

    def execute(self, sql: str) -> None:
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def start(self, timeout: float = 60) -> None:
        log = (self.base / "server.log").open("ab")
        self.process = subprocess.Popen(
            self._as_postgres(
                str(self.bindir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-h",
                self.host,
                "-k",
                str(self.base),
                "-c",
                "fsync=off",
                "-c",
                "max_connections=300",
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        process = self.process

        def serving() -> bool:
            if process.poll() is not None:
                tail = (self.base / "server.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"postgres exited {process.returncode}:\n{tail}")
            try:
                self.execute("SELECT 1")
                return True
            except Exception:  # noqa: BLE001 - not up yet
                return False

        wait_for(serving, timeout, "PostgreSQL to serve", interval=0.2)

    def pids(self) -> list[int]:
        """The postmaster and every backend and helper process it forked."""
        if self.process is None or self.process.poll() is not None:
            return []
        found = [self.process.pid]
        with contextlib.suppress(psutil.Error):
            found += [child.pid for child in psutil.Process(self.process.pid).children(recursive=True)]
        return found

    def freeze(self) -> None:
        # The postmaster first (no new backend forked meanwhile), then every child; twice, for
        # a backend forked just before the postmaster stopped.
        for _ in range(2):
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in reversed(self.pids()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        """A fast shutdown (SIGINT: clients disconnected); SIGKILL after 30 s."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        self.thaw()
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.wait(timeout=30)

    def create_database(self) -> str:
        name = "sfc_" + uuid.uuid4().hex[:12]
        self.execute(f"CREATE DATABASE {name} OWNER sfc")
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def url(self, database: str, driver: str = "psycopg2") -> str:
        return f"postgresql+{driver}://sfc:sfc-secret@{self.host}:{self.port}/{database}"

    def socket_url(self, database: str) -> str:
        """The tests' way in (root namespace): the unix socket, as the controllers' user (the
        tables the tests' store creates are then the controllers' own)."""
        return f"postgresql+psycopg2://sfc@/{database}?host={self.base}&port={self.port}"


def postgresql_available() -> bool:
    if postgres_binaries() is None:
        return False
    try:
        pwd.getpwnam("postgres")
        import psycopg2  # noqa: F401
    except (KeyError, ImportError):
        return False
    return True


@contextlib.contextmanager
def start_postgres(bind_address: str = "127.0.0.1", netns: str | None = None) -> Iterator[PostgresServer]:
    """A PostgreSQL server of our own (initdb in a temp dir); stopped and removed on exit."""
    bindir = postgres_binaries()
    if bindir is None:
        raise RuntimeError("postgresql is not installed")
    base = Path(tempfile.mkdtemp(prefix="sfc-pg-"))
    os.chmod(base, 0o755)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    server = PostgresServer(bindir, base, free_port(), bind_address, netns)
    try:
        server.init()
        server.start()
        server.execute("CREATE ROLE sfc LOGIN PASSWORD 'sfc-secret'")
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


class PostgreSQLSite(LabMetastore):
    """A database of its own on the network's PostgreSQL server, owned by the controllers' user."""

    kind = "postgresql"

    def __init__(self, server: PostgresServer, driver: str = "psycopg2") -> None:
        self.server = server
        self.driver = driver
        self.database = ""

    def open(self, token: str) -> None:
        self.database = self.server.create_database()

    def settings(self) -> dict[str, str]:
        return {"metadata_service_sql_conn": self.server.url(self.database, self.driver)}

    def reader(self) -> Metastore:
        return SQLMetastore(self.server.socket_url(self.database), 2.0)

    def drop(self) -> None:
        """WITH (FORCE) ends the sessions of hosts that are gone (one cut off mid-transaction)."""
        self.server.drop_database(self.database)

    def freeze(self) -> None:
        self.server.freeze()

    def thaw(self) -> None:
        self.server.thaw()

    def restart(self, down: float = 0.0) -> None:
        self.server.stop()
        time.sleep(down)
        self.server.start()


class ZooKeeperSite(LabMetastore):
    """A chroot of its own on the network's ZooKeeper ensemble.

    The ensemble listens on 198.18.0.2 only, inside the metastore's namespace; the tests' own
    clients open their sockets there (tests/support/netns.py), never in the root namespace.
    """

    kind = "zookeeper"

    def __init__(self, ensemble: Ensemble) -> None:
        self.ensemble = ensemble
        self.chroot = ""
        self._admin: object | None = None

    def _in_ns(self, fn: Callable[[], T]) -> T:
        return in_netns(self.ensemble.netns, fn)

    def admin(self) -> Any:
        """One kazoo client for creating and removing the labs' chroots (started in the namespace)."""
        from kazoo.client import KazooClient

        if self._admin is None:

            def connect() -> KazooClient:
                client = KazooClient(hosts=self.ensemble.hosts, timeout=10)
                client.start(timeout=30)
                return client

            self._admin = self._in_ns(connect)
        return self._admin

    def open(self, token: str) -> None:
        self.chroot = f"/lab_{token}"
        self.admin().ensure_path(self.chroot)

    def settings(self) -> dict[str, str]:
        return {
            "metadata_service_type": "ZookeeperMetadataService",
            "metadata_service_zookeeper_nodes": self.ensemble.hosts + self.chroot,
        }

    def reader(self) -> Metastore:
        from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore

        def connect() -> Metastore:
            # The tests' session: longer than the controllers' (3 s), so a slow test never loses it.
            store = ZooKeeperMetastore(self.ensemble.hosts + self.chroot, "/scheduler_failover_controller", 10.0, 2.0)
            store.setup()
            return store

        return self._in_ns(connect)

    def drop(self) -> None:
        with contextlib.suppress(Exception):
            self.admin().delete(self.chroot, recursive=True)

    def freeze(self) -> None:
        for i in range(len(self.ensemble.servers)):
            self.ensemble.freeze(i)

    def thaw(self) -> None:
        for i in range(len(self.ensemble.servers)):
            with contextlib.suppress(ProcessLookupError):
                self.ensemble.thaw(i)

    def restart(self, down: float = 0.0) -> None:
        """The whole ensemble stopped (SIGKILL, as the tests' servers are) and started again on its data."""
        for i in range(len(self.ensemble.servers)):
            self.ensemble.stop(i)
        time.sleep(down)
        for i in range(len(self.ensemble.servers)):
            self.ensemble.start(i)
        self.ensemble.wait_quorum()

    def close(self) -> None:
        if self._admin is not None:
            admin, self._admin = self.admin(), None
            with contextlib.suppress(Exception):
                admin.stop()
            with contextlib.suppress(Exception):
                admin.close()


@contextlib.contextmanager
def network_with_mariadb() -> Iterator[tuple[Network, MariaDB]]:
    """The bridge, the metastore namespace and MariaDB on 198.18.0.2; all removed on exit."""
    net = Network()
    try:
        net.create()
        with start_mariadb(bind_address=METASTORE_IP, netns=net.meta_ns) as db:
            first = db.process
            net.keep_track(mariadb=db)
            try:
                yield net, db
            finally:
                if db.process is not first:  # restarted (MariaDBSite.restart): the server it started
                    stop_server(db.process)
                net.keep_track(mariadb=db, done=True)
    finally:
        net.close()


@contextlib.contextmanager
def postgresql_on(net: Network, driver: str = "psycopg2") -> Iterator[PostgreSQLSite]:
    """A PostgreSQL server in the network's metastore namespace, on 198.18.0.2; removed on exit.

    A run killed meanwhile: the sweep kills what runs in that namespace (the postmaster and
    its backends) and removes its directory, on the run's record.
    """
    with start_postgres(METASTORE_IP, net.meta_ns) as server:
        net.keep_track(server.base)
        try:
            yield PostgreSQLSite(server, driver)
        finally:
            net.keep_track(server.base, done=True)


@contextlib.contextmanager
def zookeeper_on(net: Network) -> Iterator[ZooKeeperSite]:
    """A 3-server ZooKeeper ensemble in the network's metastore namespace, on 198.18.0.2; removed on exit.

    A run killed meanwhile leaves nothing for long: the servers die when the sweep kills what
    runs in that namespace, and their directory is on the run's record.
    """
    with start_ensemble(3, bind_address=METASTORE_IP, netns=net.meta_ns) as ensemble:
        net.keep_track(ensemble.base)
        site = ZooKeeperSite(ensemble)
        try:
            yield site
        finally:
            site.close()
            net.keep_track(ensemble.base, done=True)
