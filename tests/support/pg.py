"""A PostgreSQL server of the tests' own, optionally inside a network namespace.

Like the session fixture in tests/conftest.py (initdb as the ``postgres`` user, trust auth, a temp
data dir), but run through ``setpriv`` (which execs, unlike ``runuser``) so that the pid we hold
is the postmaster's, and inside ``netns`` when given (``ip netns exec`` execs too). The tests talk
to it over TCP on that namespace's 127.0.0.1; administration goes over its unix socket, which any
namespace can reach.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil


def postgres_bindir() -> Path | None:
    """The bin directory of an installed PostgreSQL server, newest first."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "postgres").exists() and (candidate / "initdb").exists():
            return candidate
    return None


@dataclass
class PgServer:
    """A running postmaster: its process, port and directories."""

    process: subprocess.Popen[bytes]
    port: int
    base: Path

    def pids(self) -> list[int]:
        """The postmaster first, then every process it forked (backends, checkpointer, ...)."""
        children = [c.pid for c in psutil.Process(self.process.pid).children(recursive=True)]
        return [self.process.pid, *children]

    def admin(self, sql: str) -> None:
        import psycopg2

        conn = psycopg2.connect(host=str(self.base), port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def create_database(self) -> str:
        name = "sfc_" + uuid.uuid4().hex[:12]
        self.admin(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def url(self, database: str, driver: str = "psycopg2") -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"


def _as_postgres() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", "--"]


@contextlib.contextmanager
def start_postgres(port: int, netns: str | None = None) -> Iterator[PgServer]:
    """initdb + postgres on 127.0.0.1:``port`` (of ``netns`` when given); stopped and removed on exit."""
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("postgresql (server binaries) is not installed")
    base = Path(tempfile.mkdtemp(prefix="sfc-pgns-"))
    os.chmod(base, 0o755)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    data = base / "data"
    process = None
    try:
        subprocess.run(
            [*_as_postgres(), str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        wrap = ["ip", "netns", "exec", netns] if netns else []
        with (base / "server.log").open("ab") as log:
            process = subprocess.Popen(
                [
                    *wrap,
                    *_as_postgres(),
                    str(bindir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(base),
                    "-c",
                    "fsync=off",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        server = PgServer(process, port, base)
        deadline = time.monotonic() + 60
        import psycopg2

        while True:
            try:
                server.admin("SELECT 1")
                break
            except psycopg2.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log_text = (base / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"postgres did not start:\n{log_text}") from None
                time.sleep(0.2)
        yield server
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(base, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Thaw the postmaster and its children (a test may have frozen them), then a fast shutdown."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.send_signal(signal.SIGCONT)
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGCONT)
        os.kill(process.pid, signal.SIGINT)  # fast shutdown: sessions are ended, not waited for
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
