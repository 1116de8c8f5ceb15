"""Shared fixtures: a real MariaDB server started by the tests, and SQL URLs per backend."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pymysql
import pytest

from tests.support.pg import PostgresServer, postgres_bindir, start_postgres
from tests.support.ports import free_port
from tests.support.zk import Ensemble, start_ensemble, zookeeper_available

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


_ALLOWED_NETS = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128", "198.18.0.0/24")]
_real_getaddrinfo = socket.getaddrinfo


def _loopback_only_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    """Name lookups in tests: loopback and the lab's own addresses only, never a DNS query."""
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or name == "localhost":
        return _real_getaddrinfo(host, *args, **kwargs)
    try:
        address = ipaddress.ip_address(str(name).split("%")[0])
    except ValueError:
        raise socket.gaierror(socket.EAI_NONAME, f"tests resolve no host names: {name!r}") from None
    if not any(address in net for net in _ALLOWED_NETS):
        raise socket.gaierror(socket.EAI_NONAME, f"tests reach only loopback and the lab: {name!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


def pytest_configure(config: pytest.Config) -> None:
    """Tests never send traffic (a DNS query included) beyond loopback and the lab's namespaces."""
    socket.getaddrinfo = _loopback_only_getaddrinfo


def missing(what: str) -> NoReturn:
    """Skip locally when a server binary is missing; in CI that is a failure, not a skip."""
    if IN_CI:
        pytest.fail(f"{what} is not installed; .ci/run must install it")
    pytest.skip(f"{what} is not installed")


def stop_server(process: subprocess.Popen[bytes] | None) -> None:
    """Stop a server we started, by its pid: thawed first (a test may have frozen it)."""
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGCONT)
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class MariaDB:
    """A MariaDB server of our own on a loopback port and a temp datadir."""

    process: subprocess.Popen[bytes]
    port: int
    socket_path: Path
    base: Path
    host: str = "127.0.0.1"  # the address it listens on (a lab namespace's address in tests/lab)

    @property
    def pid(self) -> int:
        return self.process.pid

    def admin(self) -> pymysql.connections.Connection:
        return pymysql.connect(unix_socket=str(self.socket_path), user="root", autocommit=True)

    def create_database(self) -> str:
        name = "sfc_" + uuid.uuid4().hex[:12]
        with self.admin() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")

    def url(self, database: str) -> str:
        return f"mysql+pymysql://sfc:sfc-secret@{self.host}:{self.port}/{database}"

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


def mariadb_binaries() -> tuple[str, str] | None:
    """(mariadbd, mariadb-install-db) if installed."""
    server = shutil.which("mariadbd") or ("/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else None)
    install = shutil.which("mariadb-install-db")
    return (server, install) if server and install else None


@contextlib.contextmanager
def start_mariadb(bind_address: str = "127.0.0.1", netns: str | None = None) -> Iterator[MariaDB]:
    """A MariaDB server of our own on a free port (loopback by default); removed again on exit.

    ``bind_address`` is the address it listens on; with ``netns`` the server runs inside that
    network namespace (``ip netns exec``), as the lab's metastore host does. Its ``sfc`` user may
    then connect from any address of that network; on loopback only from 127.0.0.1.
    """
    found = mariadb_binaries()
    if found is None:
        raise RuntimeError("mariadb-server is not installed")
    server, install = found
    base = Path(tempfile.mkdtemp(prefix="sfc-mariadb-"))
    datadir, sock = base / "data", base / "mysqld.sock"
    user = ["--user=root"] if os.geteuid() == 0 else []
    process = None
    try:
        subprocess.run(
            [
                install,
                "--no-defaults",
                f"--datadir={datadir}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                *user,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        port = free_port()
        wrap = ["ip", "netns", "exec", netns] if netns else []  # execs the server: same pid
        client = "127.0.0.1" if bind_address == "127.0.0.1" else "%"
        process = subprocess.Popen(
            [
                *wrap,
                server,
                "--no-defaults",
                f"--datadir={datadir}",
                f"--socket={sock}",
                f"--port={port}",
                f"--bind-address={bind_address}",
                f"--pid-file={base / 'mysqld.pid'}",
                f"--log-error={base / 'error.log'}",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M",
                "--max-connections=300",
                *user,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        db = MariaDB(process, port, sock, base, bind_address)
        deadline = time.monotonic() + 60
        while True:
            try:
                with db.admin() as conn, conn.cursor() as cur:
                    cur.execute(f"CREATE USER IF NOT EXISTS 'sfc'@'{client}' IDENTIFIED BY 'sfc-secret'")
                    cur.execute(f"GRANT ALL ON *.* TO 'sfc'@'{client}'")
                break
            except pymysql.err.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (base / "error.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"mariadbd did not start:\n{log}") from None
                time.sleep(0.2)
        yield db
    finally:
        stop_server(process)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """Start ``mariadbd`` once for the session (mariadb-install-db + a temp datadir)."""
    if not mariadb_binaries():
        missing("mariadb-server (mariadbd, mariadb-install-db)")
    with start_mariadb() as db:
        yield db


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the session's own on loopback (trust auth), removed at the end."""
    if postgres_bindir() is None:
        missing("postgresql (server binaries)")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        missing("psycopg2 (the test extra installs psycopg2-binary)")
    with start_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    name = postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        postgres.drop_database(name)


@pytest.fixture
def mariadb_url(mariadb: MariaDB) -> Iterator[str]:
    """A fresh, empty database on the session's MariaDB server."""
    name = mariadb.create_database()
    try:
        yield mariadb.url(name)
    finally:
        mariadb.drop_database(name)


@pytest.fixture(params=["sqlite", "mariadb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(backend name, SQLAlchemy URL) for each real SQL backend, each test on an empty store."""
    if request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path / 'metastore.db'}"
    else:
        yield "mariadb", request.getfixturevalue("mariadb_url")


@pytest.fixture(scope="session")
def zk_ensemble() -> Iterator[Ensemble]:
    """A real 3-server ZooKeeper ensemble on loopback ports for the whole session."""
    if not zookeeper_available():
        missing("zookeeper (java, /usr/share/java/zookeeper.jar)")
    with start_ensemble(3) as ensemble:
        yield ensemble


@pytest.fixture
def zk_hosts(zk_ensemble: Ensemble) -> Iterator[str]:
    """The ensemble's connection string with a fresh per-test chroot (created, then removed)."""
    from kazoo.client import KazooClient

    for i in range(len(zk_ensemble.servers)):  # a previous test may have stopped or frozen one
        zk_ensemble.start(i)
        with contextlib.suppress(ProcessLookupError):
            zk_ensemble.thaw(i)
    zk_ensemble.wait_quorum()
    chroot = "/t_" + uuid.uuid4().hex[:12]
    admin = KazooClient(hosts=zk_ensemble.hosts, timeout=10)
    admin.start(timeout=30)
    try:
        admin.ensure_path(chroot)
        yield zk_ensemble.hosts + chroot
    finally:
        with contextlib.suppress(Exception):
            admin.delete(chroot, recursive=True)
        admin.stop()
        admin.close()
