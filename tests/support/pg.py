"""PostgreSQL servers of the tests' own: initdb in a temp dir, optionally inside a network namespace.

One kind of server for every suite: the session fixture (tests/conftest.py), the frozen and
black-holed contract tests (a namespace of their own) and the lab (198.18.0.2, where the
controllers log in with a password). It runs as the ``postgres`` user through ``setpriv``, which
execs (as ``ip netns exec`` does), so the pid we hold is the postmaster's. Administration goes
over the unix socket in ``base``, which every namespace can reach.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from tests.support.ports import free_port
from tests.support.waiting import wait_for

LOGIN = ("sfc", "sfc-secret")  # the role that logs in with a password, where ``password_from`` allows it


def postgres_bindir() -> Path | None:
    """The bin directory of an installed PostgreSQL server, newest first."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "postgres").exists() and (candidate / "initdb").exists():
            return candidate
    return None


def postgresql_available() -> bool:
    """Server binaries, the ``postgres`` user and psycopg2 (what the tests administer with)."""
    if postgres_bindir() is None:
        return False
    try:
        pwd.getpwnam("postgres")
        import psycopg2  # noqa: F401
    except (KeyError, ImportError):
        return False
    return True


@dataclass
class PostgresServer:
    """A postmaster with its data in ``base``, on ``host``:``port`` (inside ``netns`` when given).

    Without ``password_from`` every login is trusted and the tests connect as ``postgres``. With
    it (a CIDR), TCP logins need a password (scram-sha-256) and only the role ``sfc`` may log in,
    from those addresses: as the lab's controllers do.
    """

    bindir: Path
    base: Path
    port: int
    host: str = "127.0.0.1"
    netns: str | None = None
    password_from: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.base / "data"

    def _as_postgres(self, *argv: str) -> list[str]:
        wrap = ["ip", "netns", "exec", self.netns] if self.netns else []
        who = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] if os.geteuid() == 0 else []
        return [*wrap, *who, *argv]

    def init(self) -> None:
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256"] if self.password_from else ["--auth=trust"]
        initdb = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", *auth, "-E", "UTF8"]
        subprocess.run(self._as_postgres(*initdb), check=True, capture_output=True, timeout=120)
        if self.password_from:
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all {LOGIN[0]} {self.password_from} scram-sha-256\n")

    def admin(self) -> Any:
        """A psycopg2 connection as ``postgres`` over the unix socket, in autocommit."""
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
        postgres = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", self.host]
        options = ["-k", str(self.base), "-c", "fsync=off", "-c", "max_connections=300"]
        with (self.base / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                self._as_postgres(*postgres, *options), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log
            )
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
        """The postmaster first, then every backend and helper process it forked."""
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
        """Thawed (a test may have frozen it), then a fast shutdown (SIGINT); SIGKILL after 30 s."""
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
        owner = f" OWNER {LOGIN[0]}" if self.password_from else ""
        self.execute(f"CREATE DATABASE {name}{owner}")
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def url(self, database: str, driver: str = "psycopg2") -> str:
        who = ":".join(LOGIN) if self.password_from else "postgres"
        return f"postgresql+{driver}://{who}@{self.host}:{self.port}/{database}"

    def socket_url(self, database: str) -> str:
        """The way in from the root namespace: the unix socket, as the role the controllers use."""
        who = LOGIN[0] if self.password_from else "postgres"
        return f"postgresql+psycopg2://{who}@/{database}?host={self.base}&port={self.port}"


@contextlib.contextmanager
def start_postgres(
    bind_address: str = "127.0.0.1",
    netns: str | None = None,
    port: int | None = None,
    password_from: str | None = None,
) -> Iterator[PostgresServer]:
    """initdb and start a server of our own; stopped (also if frozen) and removed on exit."""
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("postgresql (server binaries) is not installed")
    base = Path(tempfile.mkdtemp(prefix="sfc-pg-"))
    os.chmod(base, 0o755)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    server = PostgresServer(bindir, base, port or free_port(), bind_address, netns, password_from)
    try:
        server.init()
        server.start()
        if password_from:
            server.execute(f"CREATE ROLE {LOGIN[0]} LOGIN PASSWORD '{LOGIN[1]}'")
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
