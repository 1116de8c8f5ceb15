"""The multi-host lab: N simulated master hosts on this machine, each in its own namespaces.

Layout (every name carries a short random token, so concurrent runs never collide)::

    root namespace            the tests, the observer, nothing on 198.18.0.0/24 (no address, no route)
    sfcbr-<net>               a Linux bridge br0; one veth port per host and one for the metastore
    sfcm-<net>    198.18.0.2  the metastore host: MariaDB (tests/conftest.py start_mariadb with
                              bind_address/netns) and, for the ZooKeeper runs, a 3-server ensemble
                              on its own ports (tests/support/zk.py start_ensemble, same arguments)
    sfch<i>-<lab> 198.18.0.<10+i>
                              unshare --pid --fork --mount-proc --uts: PID 1 = hostinit.py, host name
                              h<i>, a private /etc/hosts naming every host, sshd on its address
                              (generated host key, root login by key only), its own state_dir (a bind
                              mount at the path every host uses), then the controller and the
                              stand-in schedulers it starts, all inside the host's PID namespace

The project is "installed" on every host by sharing this filesystem: same virtualenv, whose bin
directory is on PATH for the controllers and for SSH sessions (``SetEnv PATH`` in sshd_config).

The observer runs in the root namespace, where psutil sees the processes of every PID namespace:
every ~50 ms it lists the stand-in schedulers of this lab (process-tree roots, by the lab's token)
and attributes each to a host by its ``--node`` argument.

Faults: ``Host.crash`` (SIGKILL of the host's PID 1: the kernel kills its whole PID namespace),
``Lab.partition`` (the host's bridge port down), ``Lab.drop`` (iptables on one host drops what
another sends it), ``Host.freeze_sshd``, flag files read by the lab's start command (a start that
fails or hangs on one host, or on all), ``Host.spawn_scheduler(stray=True)``, and a controller run
under ``faketime``.

Everything is torn down by ``Lab.close`` / ``Network.close`` by pid and by namespace name, also
when a test fails; a host's processes die with its PID 1 even if this process is killed
(``setpriv --pdeathsig`` on ``unshare --kill-child``). What a killed run leaves (namespace names,
its MariaDB, temp directories) is on record under /run/sfc-lab and swept by the next run.
"""

from __future__ import annotations

import abc
import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from scheduler_failover_controller.config import KEYS, Config, load_config
from scheduler_failover_controller.metastore.base import ClusterState, Event, Metastore
from scheduler_failover_controller.metastore.sql import SQLMetastore
from scheduler_failover_controller.probe import find_schedulers
from tests.conftest import MariaDB, free_port, postgres_binaries, start_mariadb, stop_server
from tests.support.netns import in_netns
from tests.support.zk import Ensemble, start_ensemble

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "support" / "fake_scheduler.py"
HOSTINIT = Path(__file__).resolve().parent / "hostinit.py"
FAKETIME_SHIM = Path(__file__).resolve().parent / "faketime_shim"
PYTHON = sys.executable
VENV_BIN = Path(sys.executable).parent
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SUBNET = "198.18.0"
METASTORE_IP = f"{SUBNET}.2"
PLEASE_REPORT = "INTERNAL ERROR (please report"

TOOLS = {
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "setpriv": "util-linux",
    "iptables": "iptables",
    "faketime": "faketime",
    "ssh-keygen": "openssh-client",
}


def libfaketime() -> str | None:
    """The libfaketime preload library (Debian package libfaketime, a dependency of faketime)."""
    for pattern in ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def missing_tools() -> list[str]:
    """Debian packages the lab needs that are not installed."""
    lacking = [package for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if not os.path.exists("/usr/sbin/sshd"):
        lacking.append("openssh-server")
    if libfaketime() is None:
        lacking.append("faketime")
    return sorted(set(lacking))


def ssh_available() -> bool:
    """Whether this checkout has SSH control of other masters (nodes/ssh.py and its config keys)."""
    here = ROOT / "scheduler_failover_controller" / "nodes" / "ssh.py"
    return here.exists() and "ssh_known_hosts_file" in KEYS


def sh(*argv: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a short command, bounded in time; fail with its output."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip() or result.stdout}")
    return result


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll ``predicate`` until true; return the seconds it took, fail naming ``what``."""
    began = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# --- the network ------------------------------------------------------------------------------


RECORDS = Path("/run/sfc-lab")  # what each run created, so that a later run can sweep up after a killed one


def sweep_stale() -> list[str]:
    """Remove what a lab run that was killed (SIGKILL, timeout) left behind; return what went.

    Each run records, under /run/sfc-lab, its pid, its namespaces, its MariaDB and its temp
    directories. For a run that is gone: its namespaces' remaining processes are killed by pid,
    the namespaces deleted, its MariaDB (pid checked against its datadir) killed, its directories
    removed. Runs still alive are left alone, so concurrent runs never touch each other.
    """
    swept: list[str] = []
    for path in sorted(RECORDS.glob("*.json")) if RECORDS.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        try:
            alive = psutil.Process(record["owner"]).create_time() == record["owner_started"]
        except psutil.Error:
            alive = False
        if alive:
            continue
        for ns in record.get("namespaces", []):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)
            swept.append(f"namespace {ns}")
        server = record.get("mariadb")
        if server:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(server["pid"])
                if f"--datadir={server['base']}/data" in proc.cmdline():
                    proc.kill()
                    proc.wait(timeout=30)
                    swept.append(f"mariadbd {server['pid']}")
            record.setdefault("dirs", []).append(server["base"])
        for directory in record.get("dirs", []):
            shutil.rmtree(directory, ignore_errors=True)
            swept.append(directory)
        for cgroup in record.get("cgroups", []):  # emptied when its host's processes died
            with contextlib.suppress(OSError):
                os.rmdir(cgroup)
                swept.append(f"cgroup {cgroup}")
        path.unlink(missing_ok=True)
    return swept


class Network:
    """A bridge in a namespace of its own, and the metastore's namespace on it (198.18.0.2)."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex[:6]
        self.bridge_ns = f"sfcbr-{self.token}"
        self.meta_ns = f"sfcm-{self.token}"
        self.namespaces: list[str] = []
        self.dirs: list[str] = []
        self.mariadb: dict[str, object] | None = None
        self.cgroups: list[str] = []
        self.record = RECORDS / f"{self.token}.json"

    def _save(self) -> None:
        """Keep this run's record current (see sweep_stale)."""
        me = psutil.Process()
        data = {
            "owner": me.pid,
            "owner_started": me.create_time(),
            "namespaces": self.namespaces,
            "dirs": self.dirs,
            "mariadb": self.mariadb,
            "cgroups": self.cgroups,
        }
        RECORDS.mkdir(mode=0o700, exist_ok=True)
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.record)

    def keep_track(
        self,
        directory: Path | None = None,
        mariadb: MariaDB | None = None,
        done: bool = False,
        cgroup: Path | None = None,
    ) -> None:
        """Record a temp directory, a CPU cgroup or the MariaDB server of this run (``done``: it is gone again)."""
        for kept, path in ((self.dirs, directory), (self.cgroups, cgroup)):
            if path is None:
                continue
            if done:
                with contextlib.suppress(ValueError):
                    kept.remove(str(path))
            else:
                kept.append(str(path))
        if mariadb is not None:
            self.mariadb = None if done else {"pid": mariadb.pid, "base": str(mariadb.base)}
        self._save()

    def add_namespace(self, name: str) -> None:
        self.namespaces.append(name)
        self._save()  # before it exists: a run killed right after still has it on record
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def create(self) -> None:
        for what in sweep_stale():
            print(f"lab: removed what a killed run left: {what}", file=sys.stderr)
        self.add_namespace(self.bridge_ns)
        sh("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        self.add_namespace(self.meta_ns)
        self.attach(self.meta_ns, METASTORE_IP, f"vm{self.token}")

    def attach(self, ns: str, address: str, port: str) -> None:
        """Connect namespace ``ns`` to the bridge: its eth0 gets ``address``, the bridge port is ``port``."""
        assert len(port) <= 15, port
        sh("ip", "link", "add", port, "netns", self.bridge_ns, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def set_port(self, port: str, up: bool) -> None:
        sh("ip", "-n", self.bridge_ns, "link", "set", port, "up" if up else "down")

    def delete_namespace(self, name: str, port: str | None = None) -> None:
        """Delete a namespace and cut it off the bridge first.

        ``ip netns del`` only drops the name: a namespace lives on while anything still refers
        to it, e.g. the orphaned TCP sockets of its killed processes that keep retransmitting to
        a peer that dropped their packets. Its eth0 would stay on the bridge with its address,
        and the next lab's host of that address would share it with a ghost (ARP answers from
        both). Deleting the bridge end of the veth pair deletes both ends at once.
        """
        if port is not None:
            sh("ip", "-n", self.bridge_ns, "link", "del", port, check=False)
        sh("ip", "netns", "del", name, check=False)
        if name in self.namespaces:
            self.namespaces.remove(name)
            self._save()

    def forget_neighbours(self) -> None:
        """A new host may reuse an old host's address with a new MAC: start from clean caches."""
        sh("ip", "-n", self.meta_ns, "neigh", "flush", "all", check=False)

    def ports(self) -> list[str]:
        """The bridge's ports (veth ends), e.g. to check that a lab left none behind."""
        out = sh("ip", "-n", self.bridge_ns, "-o", "link", "show", "master", "br0").stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]

    def close(self) -> None:
        for name in reversed(list(self.namespaces)):
            self.delete_namespace(name)
        self.record.unlink(missing_ok=True)


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


# --- the observer -----------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Seen:
    """One stand-in scheduler as the observer saw it."""

    node: str
    pid: int
    stray: bool = False


@dataclass
class Observer:
    """Samples the lab's stand-in schedulers every ~50 ms from the root namespace.

    Strays a test planted itself (``--stray``) are tracked apart and never count as "two
    schedulers": the scenarios check they are killed, and that the real one was never doubled.
    """

    match: str
    interval: float = 0.05
    samples: int = 0
    started: float = 0.0
    stopped: float = 0.0
    max_seen: int = 0
    seconds_two_or_more: float = 0.0
    seconds_none: float = 0.0  # after the first scheduler appeared
    history: list[tuple[float, tuple[Seen, ...], tuple[Seen, ...]]] = field(default_factory=list)
    doubled: list[tuple[float, tuple[Seen, ...]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> list[Seen]:
        found = []
        for proc in find_schedulers(self.match):
            with contextlib.suppress(psutil.Error):
                argv = proc.cmdline()
                if "--node" not in argv[:-1]:
                    continue  # exiting (its arguments are gone already)
                found.append(Seen(argv[argv.index("--node") + 1], proc.pid, "--stray" in argv))
        return found

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                seen = self.sample()
            except Exception as exc:  # noqa: BLE001 - keep sampling; a lost sample is recorded
                print(f"observer: sample failed: {exc}", file=sys.stderr)
                self._stop.wait(self.interval)
                continue
            now = time.monotonic()
            dt, last = now - last, now
            real = tuple(sorted(s for s in seen if not s.stray))
            strays = tuple(sorted(s for s in seen if s.stray))
            self.samples += 1
            self.max_seen = max(self.max_seen, len(real))
            if len(real) >= 2:
                self.seconds_two_or_more += dt
                self.doubled.append((now, real))
            if not real and any(h[1] for h in self.history):
                self.seconds_none += dt
            if not self.history or self.history[-1][1:] != (real, strays):
                self.history.append((now, real, strays))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))  # a fixed period

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="lab-observer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if not self._stop.is_set():
            self.stopped = time.monotonic()
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def mean_interval(self) -> float:
        """Mean seconds between two samples."""
        end = self.stopped or time.monotonic()
        return (end - self.started) / self.samples if self.samples else float("inf")

    def current(self) -> tuple[Seen, ...]:
        return self.history[-1][1] if self.history else ()

    def strays(self) -> tuple[Seen, ...]:
        return self.history[-1][2] if self.history else ()

    def one(self) -> Seen | None:
        now = self.current()
        return now[0] if len(now) == 1 else None

    def first_after(self, since: float, predicate: Callable[[tuple[Seen, ...]], bool]) -> float | None:
        """Monotonic time of the first change after ``since`` to real schedulers satisfying ``predicate``."""
        for t, real, _ in self.history:
            if t >= since and predicate(real):
                return t
        return None

    def describe(self) -> str:
        t0 = self.history[0][0] if self.history else 0.0
        return "; ".join(
            f"+{t - t0:.2f}s {[f'{s.node}:{s.pid}' for s in real]}" + (f" strays {[s.node for s in st]}" if st else "")
            for t, real, st in self.history
        )


# --- hosts ------------------------------------------------------------------------------------


class Host:
    """One simulated master: a network namespace on the bridge, its own PID/UTS/mount namespaces."""

    def __init__(self, lab: Lab, index: int) -> None:
        self.lab = lab
        self.index = index
        self.name = f"h{index}"
        self.ip = f"{SUBNET}.{10 + index}"
        self.ns = f"sfch{index}-{lab.token}"
        self.port = f"vh{index}{lab.token}"  # its veth on the bridge
        self.dir = lab.dir / self.name
        self.config = self.dir / "sfc.cfg"
        self.log_path = self.dir / "controller.log"
        self.home = self.dir / "home"  # the SSH user's home on this host (see write_home)
        self.unshare: subprocess.Popen[bytes] | None = None
        self.init_pid: int | None = None
        self.nsenter: subprocess.Popen[bytes] | None = None  # the controller's nsenter
        self.controller_pid: int | None = None
        self.faketime: str | None = None

    # set-up

    def write_files(self, nodes: list[Host], overrides: dict[str, str]) -> None:
        self.dir.mkdir(parents=True)
        (self.dir / "state").mkdir()
        lab = self.lab
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", str(self.dir / "ssh_host_ed25519_key"))
        (self.dir / "hosts").write_text(
            f"127.0.0.1 localhost\n127.0.1.1 {self.name}-loopback\n{METASTORE_IP} metastore\n"
            + "".join(f"{h.ip} {h.name}\n" for h in nodes)
        )
        (self.dir / "sshd_config").write_text(
            f"ListenAddress {self.ip}:22\n"
            f"HostKey {self.dir / 'ssh_host_ed25519_key'}\n"
            "PidFile none\n"
            f"AuthorizedKeysFile {lab.dir / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "UseDNS no\n"
            "PrintMotd no\n"
            "MaxStartups 100:30:200\n"
            "MaxSessions 100\n"
            "LogLevel INFO\n"
            f"SetEnv PATH={VENV_BIN}:{SYSTEM_PATH} PYTHONPATH={ROOT}\n"
        )
        settings = {
            "scheduler_nodes_in_cluster": ",".join(h.name for h in nodes),
            "current_host": self.name,
            "local_nodes": self.name,
            **lab.site.settings(),
            "state_dir": str(lab.state_dir),  # the same path on every host, private to each (a bind mount)
            "poll_frequency": "0.5",
            "lease_ttl": "3",
            "scheduler_process_match": f"fake_scheduler.py --cluster {lab.token} --node {{node}}",
            "airflow_scheduler_start_command": f"exec /bin/sh {lab.start_script} {{node}}",
            "scheduler_start_timeout": "3",
            "logging_level": "INFO",
            "ssh_user": "root",
            "ssh_port": "22",
            "ssh_key_file": str(lab.dir / "id_ed25519"),
            "ssh_host_key_policy": "reject",
        }
        if "ssh_known_hosts_file" in KEYS:
            settings["ssh_known_hosts_file"] = str(lab.dir / "known_hosts")
        settings.update(overrides)
        self.config.write_text("[scheduler_failover]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
        spec = {
            "hostname": self.name,
            "address": self.ip,
            "hosts_file": str(self.dir / "hosts"),
            "sshd": ["/usr/sbin/sshd", "-D", "-e", "-f", str(self.dir / "sshd_config")],
            "sshd_log": str(self.dir / "sshd.log"),
            "ready_file": str(self.dir / "ready"),
            "binds": [[str(self.dir / "state"), str(lab.state_dir)], [str(self.write_home()), "/etc/passwd"]],
            "tmpfs": ["/dev/shm"],
        }
        (self.dir / "spec.json").write_text(json.dumps(spec))

    def write_home(self) -> Path:
        """A home of its own for the SSH user (root) on this host, with neutral shell start-up files.

        bash sources ~/.bashrc even for a command run over SSH. This machine's root has one that
        runs ``pyenv init`` (a ``pyenv rehash`` with a lock file) on every login: many sessions
        at once would starve the CPU, and one killed by a host crash could leave that lock behind
        for the whole machine. A fresh master has none of it. So each host sees an /etc/passwd
        (a bind mount in its own mount namespace) whose entry for the SSH user names
        ``h<i>/home`` as the home directory: sshd changes to it and sets ``HOME``, and bash reads
        the neutral ``.bashrc``/``.profile`` there. Everything else of the machine (the virtualenv,
        its interpreter under /root) stays where it is. Returns the passwd file to mount.
        """
        home = self.home
        home.mkdir()
        for name in (".bashrc", ".profile", ".bash_profile"):
            # Neutral: runs nothing, only leaves a marker that it was the rc that ran (tests check it).
            (home / name).write_text(f"# {name} of the lab host's SSH user\nexport SFC_LAB_RC={self.name}\n")
        user = pwd.getpwuid(os.geteuid()).pw_name
        lines = []
        for line in Path("/etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) == 7 and fields[0] == user:
                fields[5] = str(home)
            lines.append(":".join(fields))
        passwd = self.dir / "passwd"
        passwd.write_text("\n".join(lines) + "\n")
        passwd.chmod(0o644)
        return passwd

    def host_key_line(self) -> str:
        kind, key = (self.dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        return f"{self.name},{self.ip} {kind} {key}\n"

    def boot(self) -> None:
        """Start the host's PID 1 (hostname, /etc/hosts, sshd) in its namespaces."""
        self.lab.net.add_namespace(self.ns)
        self.lab.net.attach(self.ns, self.ip, self.port)
        self._start_init()

    def reboot(self, timeout: float = 20) -> None:
        """After a crash: a new PID 1 (and sshd) in the same network namespace, so the same
        address and MAC, as a rebooted machine keeps its NIC; its state_dir survives (its disk),
        its /dev/shm does not. The controller is started again by the caller."""
        assert not self.alive, f"{self.name} is still up"
        self._reap_controller()
        (self.dir / "ready").unlink(missing_ok=True)
        self.init_pid = None
        self._start_init()
        self.wait_ready(timeout)

    def _start_init(self) -> None:
        with (self.dir / "init.log").open("ab") as log:
            self.unshare = subprocess.Popen(
                [
                    "setpriv",
                    "--pdeathsig",
                    "KILL",  # if this test process dies, unshare dies, and --kill-child kills PID 1
                    "ip",
                    "netns",
                    "exec",
                    self.ns,
                    "unshare",
                    "--pid",
                    "--fork",
                    "--kill-child",
                    "--mount-proc",
                    "--uts",
                    "--",
                    PYTHON,
                    str(HOSTINIT),
                    str(self.dir / "spec.json"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 20) -> None:
        unshare = self.unshare
        assert unshare is not None

        def ready() -> bool:
            if unshare.poll() is not None:
                raise AssertionError(f"{self.name}: init exited {unshare.returncode}: {self.read('init.log')}")
            return (self.dir / "ready").exists()

        wait_for(ready, timeout, f"{self.name} to boot (sshd up)")
        children = psutil.Process(unshare.pid).children()
        assert len(children) == 1, children
        self.init_pid = children[0].pid

    # processes of the host

    def enter(self, *argv: str) -> list[str]:
        """``argv`` run inside this host: its PID, mount (private /etc/hosts), UTS and network namespaces."""
        assert self.init_pid is not None, f"{self.name} is not booted"
        return ["nsenter", "-t", str(self.init_pid), "-p", "-m", "-u", "-n", "--", *argv]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "FAKETIME", "LD_PRELOAD"))}
        env.pop("SCHEDULER_FAILOVER_CONTROLLER_CONFIG", None)
        env["AIRFLOW__SCHEDULER_FAILOVER__CURRENT_HOST"] = self.name
        env["PATH"] = f"{VENV_BIN}:{SYSTEM_PATH}"
        env["PYTHONPATH"] = str(ROOT)
        env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT dumps every thread's stack into the log (hangs)
        return env

    def start_controller(self, faketime: str | None = None) -> int:
        """Start ``scheduler_failover_controller start`` inside the host (under ``faketime -f OFFSET``)."""
        self.faketime = faketime
        wrap = []
        if faketime:
            # What `faketime -f OFFSET` does, without its wrapper (which keeps a semaphore named
            # after its pid in /dev/shm, and pids repeat across the hosts' PID namespaces). Only
            # the wall clock is off, as on a host whose clock is wrong; see faketime_shim/.
            wrap = [
                "env",
                f"LD_PRELOAD={libfaketime()}",
                f"FAKETIME={faketime}",
                "FAKETIME_DONT_FAKE_MONOTONIC=1",
                # Its "monotonic fix", on by default with this glibc, treats the absolute
                # CLOCK_MONOTONIC deadlines of CPython's GIL waits as wall-clock times, so they
                # expire at once: every thread waiting for the GIL spins and forces switches, and
                # the whole controller runs several times slower (calls miss metastore_timeout).
                "FAKETIME_FORCE_MONOTONIC_FIX=0",
                f"PYTHONPATH={FAKETIME_SHIM}:{ROOT}",
            ]
        argv = [*wrap, PYTHON, "-m", "scheduler_failover_controller", "--config", str(self.config), "start"]
        with self.log_path.open("ab") as log:
            self.nsenter = subprocess.Popen(
                self.enter(*argv),
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        nsenter = self.nsenter

        def child() -> bool:
            if nsenter.poll() is not None:
                raise AssertionError(f"{self.name}: controller exited at once: {self.log()[-2000:]}")
            return bool(psutil.Process(nsenter.pid).children())

        wait_for(child, 10, f"{self.name}'s controller process")
        self.controller_pid = psutil.Process(nsenter.pid).children()[0].pid
        return self.controller_pid

    def signal_controller(self, sig: int) -> None:
        assert self.controller_pid is not None
        os.kill(self.controller_pid, sig)
        if sig == signal.SIGCONT:
            self._wake_nsenter()

    def _wake_nsenter(self) -> None:
        """SIGCONT the controller's nsenter as well: it passes a stop of its child on by stopping
        itself (util-linux continue_as_child), and a stopped nsenter never reaps the controller
        when it dies; that zombie would keep the host's PID namespace alive after a crash."""
        if self.nsenter is not None and self.nsenter.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.nsenter.pid, signal.SIGCONT)

    def controller_running(self) -> bool:
        """Whether this host's controller process is alive (stopped by SIGSTOP counts as alive)."""
        if self.nsenter is None or self.nsenter.poll() is not None or self.controller_pid is None:
            return False
        try:
            return psutil.Process(self.controller_pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def kill_controller(self) -> None:
        """SIGKILL the controller (by its pid) and nothing else: its scheduler and sessions stay."""
        if self.controller_running():
            assert self.controller_pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.controller_pid, signal.SIGCONT)  # a stopped one dies just as well; no matter
                os.kill(self.controller_pid, signal.SIGKILL)
        self._reap_controller()

    def _reap_controller(self) -> None:
        """Wait for the controller's nsenter (it exits with the controller, or with the host)."""
        if self.nsenter is not None:
            self._wake_nsenter()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.nsenter.wait(timeout=10)
        self.controller_pid = None

    def restart_controller(self) -> int:
        """Start the controller again after it was killed (same config, same faketime)."""
        self._reap_controller()
        return self.start_controller(self.faketime)

    def pid_namespace(self) -> str:
        assert self.init_pid is not None
        return os.readlink(f"/proc/{self.init_pid}/ns/pid")

    def processes(self) -> list[psutil.Process]:
        """Every process of this host (its PID namespace), as the root namespace sees them."""
        try:
            ns = self.pid_namespace()
        except OSError:
            return []
        found = []
        # Not psutil.process_iter: it shares its Process objects (and their .info) between
        # threads, and the observer iterates at the same time.
        for pid in psutil.pids():
            with contextlib.suppress(OSError, psutil.Error):
                if os.readlink(f"/proc/{pid}/ns/pid") == ns:
                    found.append(psutil.Process(pid))
        return found

    def sshd_processes(self) -> list[psutil.Process]:
        found = []
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                if proc.name() == "sshd":
                    found.append(proc)
        return found

    def freeze_sshd(self) -> list[int]:
        """SIGSTOP every sshd of the host: the listener and every open session."""
        pids = [p.pid for p in self.sshd_processes()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        return pids

    def thaw_sshd(self) -> None:
        for proc in self.sshd_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)

    def spawn_scheduler(self, stray: bool = False) -> None:
        """Start a stand-in scheduler inside the host by hand, detached (re-parented to PID 1)."""
        argv = [PYTHON, str(FAKE), "--cluster", self.lab.token, "--node", self.name, *(["--stray"] if stray else [])]
        command = f"( exec {' '.join(argv)} ) >> {self.dir / 'by-hand.log'} 2>&1 < /dev/null &"
        subprocess.run(
            self.enter("/bin/sh", "-c", command),
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=True,
            start_new_session=True,
        )

    def iptables(self, *args: str) -> None:
        sh("ip", "netns", "exec", self.ns, "iptables", "-w", "5", *args)

    def block_ssh(self, on: bool = True) -> None:
        """This host drops every packet sent to its port 22 (iptables in its own namespace): SSH
        to it times out, while its own traffic (to the metastore, to the others) still flows."""
        self.iptables("-A" if on else "-D", "INPUT", "-p", "tcp", "--dport", "22", "-j", "DROP")

    @contextlib.contextmanager
    def starved(self, seconds: float, hogs: int = 2, cpu_quota: float = 1.0) -> Iterator[CPUStarvation]:
        """Starve this host of CPU for at most ``seconds`` (see CPUStarvation); lifted on exit."""
        starvation = CPUStarvation(self, seconds, hogs, cpu_quota)
        starvation.start()
        try:
            yield starvation
        finally:
            starvation.stop()

    def crash(self) -> None:
        """The whole host fails at once: SIGKILL its PID 1, and the kernel kills every process in it."""
        assert self.init_pid is not None
        ns = self.pid_namespace()
        self._wake_nsenter()
        os.kill(self.init_pid, signal.SIGKILL)
        if self.unshare is not None:
            try:
                self.unshare.wait(timeout=10)
            except subprocess.TimeoutExpired:
                left = []
                for pid in psutil.pids():  # what keeps the dead host's PID namespace from going
                    with contextlib.suppress(OSError, psutil.Error):
                        if os.readlink(f"/proc/{pid}/ns/pid") == ns:
                            proc = psutil.Process(pid)
                            parent = psutil.Process(proc.ppid())
                            wchan = Path(f"/proc/{pid}/wchan").read_text()
                            left.append(
                                f"{pid} {proc.name()} {proc.status()} in {wchan} {' '.join(proc.cmdline())[:100]}"
                                f" (parent {parent.pid} {' '.join(parent.cmdline())[:100]})"
                            )
                raise AssertionError(f"{self.name}: still not down 10s after its PID 1 was killed: {left}") from None

    @property
    def alive(self) -> bool:
        return self.unshare is not None and self.unshare.poll() is None

    def read(self, name: str) -> str:
        path = self.dir / name
        return path.read_text(errors="replace") if path.exists() else ""

    def log(self) -> str:
        return self.read("controller.log")

    def kill(self) -> None:
        """Teardown: every process of the host dies with its PID 1; then the namespace goes."""
        self._wake_nsenter()
        if self.init_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGKILL)
        for proc in (self.unshare, self.nsenter):
            if proc is None:
                continue
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


# --- CPU starvation ---------------------------------------------------------------------------


def cpu_cgroup_parent() -> tuple[Path, int] | None:
    """Where a CPU-limited cgroup can be made, and the cgroup version; None if nowhere."""
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").exists() and os.access(v1, os.W_OK):
        return v1, 1
    v2 = Path("/sys/fs/cgroup")
    try:
        if "cpu" in (v2 / "cgroup.controllers").read_text().split():
            if "cpu" not in (v2 / "cgroup.subtree_control").read_text().split():
                (v2 / "cgroup.subtree_control").write_text("+cpu")
            return v2, 2
    except OSError:
        pass
    return None


class CPUStarvation:
    """A bounded CPU hog inside one host.

    ``hogs`` busy loops (``/bin/sh``) at ``nice -n -20`` run inside the host's namespaces, each
    killed by ``timeout -s KILL`` after ``seconds`` at the latest, even if the test dies. With a
    CPU cgroup available (v1 ``cpu`` or v2), every process of the host and the hogs go into a
    cgroup of their own limited to ``cpu_quota`` CPUs: the host's own processes (controller,
    scheduler, sshd and its sessions) share that quota with hogs of about 88 times their weight,
    while the rest of the machine (the observer, the other hosts, other users) keeps its CPU.
    Without a cgroup the hogs compete machine-wide. ``stop`` kills the hogs by pid and moves the
    host's processes back.
    """

    PERIOD_US = 100_000

    def __init__(self, host: Host, seconds: float, hogs: int, cpu_quota: float) -> None:
        self.host = host
        self.seconds = seconds
        self.hogs = hogs
        self.cpu_quota = cpu_quota
        self.cgroup: Path | None = None
        self.parent: Path | None = None
        self.launchers: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        found = cpu_cgroup_parent()
        if found is not None:
            self.parent, version = found
            self.cgroup = self.parent / f"sfc-{self.host.lab.token}-{self.host.name}"
            self.host.lab.net.keep_track(cgroup=self.cgroup)
            self.cgroup.mkdir(exist_ok=True)
            quota = max(1000, int(self.cpu_quota * self.PERIOD_US))
            if version == 1:
                (self.cgroup / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
                (self.cgroup / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (self.cgroup / "cpu.max").write_text(f"{quota} {self.PERIOD_US}")
            self._move(self.host.processes(), self.cgroup)
        hog = self.host.enter(
            "nice", "-n", "-20", "timeout", "-s", "KILL", f"{self.seconds:g}", "/bin/sh", "-c", "while :; do :; done"
        )
        if self.cgroup is not None:
            # Into the cgroup from here, before entering the host: inside it, /sys is the one
            # `ip netns exec` mounted, without the machine's cgroups. No move, no hog.
            hog = ["/bin/sh", "-c", f'echo $$ > {self.cgroup / "cgroup.procs"} && exec "$@"', "hog", *hog]
        for _ in range(self.hogs):
            self.launchers.append(
                subprocess.Popen(
                    hog,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )

    @staticmethod
    def _move(processes: list[psutil.Process], cgroup: Path) -> None:
        for proc in processes:
            with contextlib.suppress(OSError):  # gone meanwhile
                (cgroup / "cgroup.procs").write_text(str(proc.pid))

    def stop(self) -> None:
        for launcher in self.launchers:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(launcher.pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        child.kill()
            with contextlib.suppress(ProcessLookupError):
                launcher.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                launcher.wait(timeout=10)
        self.launchers.clear()
        if self.cgroup is None or self.parent is None:
            return
        for _ in range(50):
            try:
                pids = (self.cgroup / "cgroup.procs").read_text().split()
            except OSError:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    (self.parent / "cgroup.procs").write_text(pid)
            try:
                self.cgroup.rmdir()
                break
            except OSError:
                time.sleep(0.1)
        if not self.cgroup.exists():  # else it stays on record, for the sweep
            self.host.lab.net.keep_track(cgroup=self.cgroup, done=True)
        self.cgroup = None


# --- the lab ----------------------------------------------------------------------------------


class Lab:
    """N hosts h1..hN on the network's bridge, sharing one metastore (MariaDB or ZooKeeper), and an observer."""

    def __init__(self, net: Network, site: LabMetastore, size: int = 3, config: dict[str, str] | None = None) -> None:
        self.net = net
        self.site = site
        self.token = uuid.uuid4().hex[:6]
        self.dir = Path(tempfile.mkdtemp(prefix=f"sfc-lab-{self.token}-"))
        net.keep_track(self.dir)
        site.open(self.token)
        # The tests read the metastore from the root namespace.
        self.store = site.reader()
        self.start_script = self.dir / "start-scheduler.sh"
        self.flags = self.dir / "flags"
        self.state_dir = self.dir / "state"  # each host mounts its own h<i>/state here
        self.hosts = [Host(self, i + 1) for i in range(size)]
        self.observer = Observer(f"fake_scheduler.py --cluster {self.token}")
        self.overrides = dict(config or {})
        self.closed = False
        self._prepare()

    def _prepare(self) -> None:
        self.flags.mkdir()
        self.state_dir.mkdir()
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab", "-f", str(self.dir / "id_ed25519"))
        (self.dir / "authorized_keys").write_text((self.dir / "id_ed25519.pub").read_text())
        self.start_script.write_text(
            "#!/bin/sh\n"
            "# The lab's scheduler start command: the stand-in scheduler, unless a test set a flag.\n"
            f'flags={self.flags} node="$1"\n'
            'if [ -e "$flags/fail-all" ] || [ -e "$flags/fail-$node" ]; then\n'
            '  echo "lab: start on $node fails at once" >&2; exit 1\n'
            "fi\n"
            'if [ -e "$flags/hang-$node" ]; then\n'
            '  echo "lab: start on $node hangs" >&2; exec sleep 3600\n'
            "fi\n"
            'if [ -e "$flags/slow-$node" ]; then\n'
            '  echo "lab: start on $node is slow" >&2; sleep "$(cat "$flags/slow-$node")"\n'
            "fi\n"
            f'exec {PYTHON} {FAKE} --cluster {self.token} --node "$node"\n'
        )
        for host in self.hosts:
            host.write_files(self.hosts, self.overrides)
        (self.dir / "known_hosts").write_text("".join(h.host_key_line() for h in self.hosts))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.store.setup()

    def config(self, host: str = "h1") -> Config:
        """A host's configuration as its controller loads it (with the defaults it derives)."""
        return load_config(str(self.host(host).config), env={})

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def flag(self, name: str, on: bool = True, value: str = "") -> None:
        """Set or clear a start-command flag: ``fail-all``, ``fail-<node>``, ``hang-<node>`` or
        ``slow-<node>`` (its value: seconds the start takes before the scheduler comes up)."""
        path = self.flags / name
        if on:
            path.write_text(value)
        else:
            path.unlink(missing_ok=True)

    # boot

    def boot(
        self,
        active: str = "h1",
        scheduler: str | None = None,
        faketime: dict[str, str] | None = None,
        expect_scheduler: bool = True,
        controllers: list[str] | None = None,
    ) -> None:
        """Boot every host, then the controller of ``active`` alone, then the others.

        With ``scheduler`` (another host) a stand-in scheduler is started there by hand first, so
        the first active controller adopts it: the active controller and the scheduler then sit
        on different hosts (needs SSH, or the active could not see it).

        ``controllers`` limits which hosts run a controller (default: every host); the others are
        masters reached over SSH only (benchmarks of the active controller's cycle).
        """
        faketime = faketime or {}
        running = [h.name for h in self.hosts] if controllers is None else list(controllers)
        assert active in running
        self.net.forget_neighbours()
        for host in self.hosts:
            host.boot()
        for host in self.hosts:
            host.wait_ready()
        self.observer.start()
        where = scheduler or active
        if scheduler and scheduler != active:
            self.host(scheduler).spawn_scheduler()
            wait_for(lambda: [s.node for s in self.observer.current()] == [scheduler], 10, "the hand-started scheduler")
        self.host(active).start_controller(faketime.get(active))
        wait_for(lambda: self.active() == active, 20, f"{active} to become active")

        def placed() -> bool:
            state = self.state()
            seen = self.observer.current()
            return state.placement.valid and state.placement.node == where and [s.node for s in seen] == [where]

        if where != active:
            # The active controller adopts the hand-started scheduler (it sees it over SSH)
            # before the node's own controller starts: that one kills an unplaced scheduler.
            wait_for(placed, 20, f"{active} to adopt the scheduler on {where}")
        # The others start as standbys. (Without SSH the active cannot see the other hosts: it
        # starts nothing until their controllers have registered, since they guard their nodes.)
        for host in self.hosts:
            if host.name != active and host.name in running:
                host.start_controller(faketime.get(host.name))
        if expect_scheduler:
            wait_for(placed, 20, f"the scheduler to run on {where} (placed there)")
        wait_for(lambda: len(self.store.controllers()) == len(running), 20, "every controller registered")
        if expect_scheduler and where != active:
            # The hand-started scheduler runs under no leash, and an unreachable node that may run
            # an unleashed scheduler blocks every start elsewhere: kill it, so that the active
            # restarts it in place over SSH under a leash, as every scheduler the product starts.
            (hand,) = self.observer.current()
            os.kill(hand.pid, signal.SIGKILL)

            def restarted() -> bool:
                seen = self.observer.current()
                return len(seen) == 1 and seen[0].pid != hand.pid and placed()

            wait_for(restarted, 20, f"the scheduler on {where} restarted under a leash")
            # That gap is the boot's own, not a scenario's outage. (Two at once would still count.)
            self.observer.seconds_none = 0.0
        assert self.active() == active, f"{self.active()} took over during boot"
        time.sleep(1.0)  # a couple of cycles with everyone up

    # the metastore, read from the root namespace

    def state(self) -> ClusterState:
        return self.store.read_state()

    def active(self) -> str | None:
        lease = self.state().lease
        return lease.host if lease.valid else None

    def events(self, limit: int = 500) -> list[Event]:
        return self.store.events(limit)

    def cli(self, *args: str, host: str = "h1", timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The CLI with ``host``'s config, run in the metastore's namespace (it reaches 198.18.0.2)."""
        env = self.host(host).env()
        return subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.net.meta_ns,
                PYTHON,
                "-m",
                "scheduler_failover_controller",
                "--config",
                str(self.host(host).config),
                *args,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    # faults

    def partition(self, name: str) -> None:
        """Cut the host off completely: its bridge port goes down."""
        self.net.set_port(self.host(name).port, up=False)

    def heal(self, name: str) -> None:
        self.net.set_port(self.host(name).port, up=True)

    def drop(self, at: str, source: str, on: bool = True) -> None:
        """One-way partition: host ``at`` drops every packet that host ``source`` sends it."""
        self.host(at).iptables("-A" if on else "-D", "INPUT", "-s", self.host(source).ip, "-j", "DROP")

    # checks and teardown

    def logs(self) -> dict[str, str]:
        return {h.name: h.log() for h in self.hosts}

    def internal_errors(self) -> list[str]:
        return [
            f"{name}: {line}"
            for name, text in self.logs().items()
            for line in text.splitlines()
            if PLEASE_REPORT in line
        ]

    def report(self, tail: int = 60) -> str:
        """The end of every controller's log, and the observer's history: printed when a test fails."""
        parts = [f"lab {self.token} in {self.dir}", f"observer: {self.observer.describe()}"]
        for host in self.hosts:
            lines = host.log().splitlines()[-tail:]
            parts.append(f"--- {host.name} controller log (last {len(lines)} lines)\n" + "\n".join(lines))
        with contextlib.suppress(Exception):
            parts.append("--- events\n" + "\n".join(f"[{e.kind}] {e.host}: {e.message}" for e in self.events(40)))
        return "\n".join(parts)

    def close(self, keep: bool = False) -> None:
        """Tear everything down, by pid and by namespace name. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.observer.stop()
        for host in self.hosts:
            with contextlib.suppress(Exception):
                host.kill()
        for host in self.hosts:
            self.net.delete_namespace(host.ns, host.port)
        self.net.forget_neighbours()
        self.store.close()
        with contextlib.suppress(Exception):
            self.site.drop()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.net.keep_track(self.dir, done=True)


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
