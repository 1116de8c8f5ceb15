"""The lab's metastores on 198.18.0.2: MariaDB, PostgreSQL and a ZooKeeper ensemble."""

from __future__ import annotations

import abc
import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil

from scheduler_failover_controller.metastore.base import Metastore
from scheduler_failover_controller.metastore.sql import SQLMetastore
from tests.conftest import MariaDB, start_mariadb, stop_server
from tests.lab.network import Network
from tests.lab.tools import (
    METASTORE_IP,
    SUBNET,
    T,
)
from tests.support.netns import in_netns
from tests.support.pg import PostgresServer, start_postgres
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
    with start_postgres(METASTORE_IP, net.meta_ns, password_from=f"{SUBNET}.0/24") as server:
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
