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
from tests.conftest import MariaDB, start_mariadb
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
        }
        RECORDS.mkdir(mode=0o700, exist_ok=True)
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.record)

    def keep_track(self, directory: Path | None = None, mariadb: MariaDB | None = None, done: bool = False) -> None:
        """Record a temp directory or the MariaDB server of this run (``done``: it is gone again)."""
        if directory is not None:
            if done:
                with contextlib.suppress(ValueError):
                    self.dirs.remove(str(directory))
            else:
                self.dirs.append(str(directory))
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


class MariaDBSite(LabMetastore):
    """A database of its own on the network's MariaDB, read over the server's unix socket."""

    kind = "mariadb"

    def __init__(self, db: MariaDB) -> None:
        self.db = db
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
            "binds": [[str(self.dir / "state"), str(lab.state_dir)], *lab.blank_startup_files()],
            "tmpfs": ["/dev/shm"],
        }
        (self.dir / "spec.json").write_text(json.dumps(spec))

    def host_key_line(self) -> str:
        kind, key = (self.dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        return f"{self.name},{self.ip} {kind} {key}\n"

    def boot(self) -> None:
        """Start the host's PID 1 (hostname, /etc/hosts, sshd) in its namespaces."""
        self.lab.net.add_namespace(self.ns)
        self.lab.net.attach(self.ns, self.ip, self.port)
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

    def crash(self) -> None:
        """The whole host fails at once: SIGKILL its PID 1, and the kernel kills every process in it."""
        assert self.init_pid is not None
        os.kill(self.init_pid, signal.SIGKILL)
        if self.unshare is not None:
            self.unshare.wait(timeout=10)

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

    def blank_startup_files(self) -> list[list[str]]:
        """Bind mounts that hide the SSH user's shell start-up files on every host.

        bash sources ~/.bashrc even for an SSH command; this machine's (pyenv init, rehash with a
        lock file) would make every SSH session slow, and a session killed by a host crash could
        leave that lock behind for the whole machine. A fresh master has none of it.
        """
        home = Path(pwd.getpwuid(os.geteuid()).pw_dir)
        empty = self.dir / "empty"
        empty.touch()
        return [[str(empty), str(home / name)] for name in (".bashrc",) if (home / name).is_file()]

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
            net.keep_track(mariadb=db)
            try:
                yield net, db
            finally:
                net.keep_track(mariadb=db, done=True)
    finally:
        net.close()


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
