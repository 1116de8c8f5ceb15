"""A real OpenSSH server of our own on a free 127.0.0.1 port, for the SSH node runner's tests.

``sshd -D`` runs as root from a temp dir (generated host key, an ``authorized_keys`` with a
generated client key, ``UsePAM no``, key login only) and listens on 127.0.0.1 only. The tests
reach it as node ``127.0.0.1`` with ``ssh_known_hosts_file`` pointing at a known_hosts file
written for ``[127.0.0.1]:PORT``. Everything is stopped by pid and removed at the end, also when
a test fails: sshd and its session processes, and every stand-in scheduler carrying a test's token.
The ``mode`` fixture runs a test both ways a probe reaches the node (:data:`MODES`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import psutil
import pytest

from scheduler_failover_controller.config import ENV_PREFIX, Config, load_config
from scheduler_failover_controller.matching import find_schedulers
from scheduler_failover_controller.nodes.local import kill_trees
from scheduler_failover_controller.nodes.ssh import SSHNodeRunner
from tests.conftest import IN_CI, missing
from tests.support.ports import free_port
from tests.support.sshd import sshd_config

SSHD = "/usr/sbin/sshd"
ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "support" / "fake_scheduler.py"
PYTHON = sys.executable
#: this project's console script, as it is installed on the "remote" node (the same machine)
REMOTE_SFC = str(Path(sys.executable).parent / "scheduler_failover_controller")
NODE = "127.0.0.1"
CONTROLLER = "controller"  # the controller's own node name in the test configs (local)
#: the two ways a probe reaches the node: the project's own ``probe`` there, or the ps fallback
MODES = {"project": {}, "fallback": {"ssh_remote_command": "sfc_no_such_command_here"}}


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


@dataclass
class Sshd:
    """Our sshd: its directory, port, keys and process (restartable, freezable)."""

    base: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def host_key(self) -> Path:
        return self.base / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        return self.base / "id_ed25519"

    @property
    def wrong_key(self) -> Path:
        return self.base / "id_wrong"

    @property
    def known_hosts(self) -> Path:
        return self.base / "known_hosts"

    @property
    def log(self) -> Path:
        return self.base / "sshd.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def write_files(self) -> None:
        _keygen(self.host_key, "sfc-test-host")
        _keygen(self.client_key, "sfc-test-client")
        _keygen(self.wrong_key, "sfc-test-wrong")
        (self.base / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        kind, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[{NODE}]:{self.port} {kind} {key}\n")
        (self.base / "sshd_config").write_text(
            sshd_config(
                f"{NODE}:{self.port}",
                self.host_key,
                str(self.base / "sshd.pid"),
                self.base / "authorized_keys",
                "VERBOSE",
            )
        )

    def start(self) -> None:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
        self.process = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.base / "sshd_config"), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((NODE, self.port), timeout=2) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not come up:\n{self.log_tail()}")
            time.sleep(0.1)

    def processes(self) -> list[psutil.Process]:
        """The listener and its session processes."""
        if self.process is None:
            return []
        try:
            listener = psutil.Process(self.pid)
            return [listener, *listener.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def freeze(self) -> list[int]:
        """SIGSTOP the listener and every open session."""
        pids = [p.pid for p in self.processes()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        return pids

    def thaw(self, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the listener and its sessions by pid (SIGCONT first, in case they are frozen)."""
        if self.process is None:
            return
        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.resume()
        for proc in reversed(procs):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
        _gone, alive = psutil.wait_procs(procs, timeout=5)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[Sshd]:
    """Start our own sshd once for the session (restarted by tests that stop it)."""
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        missing("openssh-server (/usr/sbin/sshd) and ssh-keygen")
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the SSH tests log in as root to an sshd they start; CI runs them as root")
        pytest.skip("the SSH tests log in as root to an sshd they start; run them as root")
    base = Path(tempfile.mkdtemp(prefix="sfc-sshd-"))
    server = Sshd(base, free_port())
    try:
        server.write_files()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sshd(sshd_server: Sshd) -> Iterator[Sshd]:
    """The session's sshd, running and not frozen at the start of each test."""
    if sshd_server.process is None or sshd_server.process.poll() is not None:
        sshd_server.process = None
        sshd_server.start()
    yield sshd_server
    sshd_server.thaw([p.pid for p in sshd_server.processes()])


@dataclass
class Env:
    """A test's token (in every stand-in scheduler it starts) and its temp dir."""

    token: str
    tmp: Path
    sshd: Sshd

    @property
    def match(self) -> str:
        return f"fake_scheduler.py --cluster {self.token} --node {{node}}"

    def settings(self, **overrides: object) -> dict[str, str]:
        values: dict[str, object] = {
            "scheduler_nodes_in_cluster": f"{CONTROLLER},{NODE}",
            "current_host": CONTROLLER,
            "node_control": "ssh",
            "state_dir": self.tmp / "state",
            # never connected to by these tests; SQLite is refused for nodes on other hosts
            "metadata_service_sql_conn": "mysql+pymysql://sfc@127.0.0.1:1/sfc",
            "poll_frequency": 1,
            "lease_ttl": 12,  # a remote stop (3 + 2 x 3 s) must fit in lease_ttl - poll_frequency
            "metastore_timeout": 1,
            "scheduler_process_match": self.match,
            "airflow_scheduler_start_command": f"exec {PYTHON} {FAKE} --cluster {self.token} --node {{node}}",
            "scheduler_stop_timeout": 3,
            "ssh_user": "root",
            "ssh_port": self.sshd.port,
            "ssh_key_file": self.sshd.client_key,
            "ssh_known_hosts_file": self.sshd.known_hosts,
            "ssh_host_key_policy": "reject",
            "ssh_timeout": 3,
            "ssh_remote_command": REMOTE_SFC,
        }
        values.update(overrides)
        return {key: str(value) for key, value in values.items()}

    def config(self, **overrides: object) -> Config:
        env = {"AIRFLOW_HOME": str(self.tmp / "airflow_home")}
        env.update({ENV_PREFIX + key.upper(): value for key, value in self.settings(**overrides).items()})
        return load_config(None, env=env, hostname=lambda: CONTROLLER)

    def runner(self, **overrides: object) -> SSHNodeRunner:
        runner = SSHNodeRunner(NODE, self.config(**overrides))
        self.runners.append(runner)
        return runner

    def schedulers(self, node: str = NODE) -> list[psutil.Process]:
        """Stand-in scheduler tree roots of this test on ``node`` (seen locally: same machine)."""
        return find_schedulers(self.match.replace("{node}", node))

    def __post_init__(self) -> None:
        self.runners: list[SSHNodeRunner] = []


@pytest.fixture
def env(sshd: Sshd, tmp_path: Path) -> Iterator[Env]:
    """A token and temp dir; at the end, closes the runners and kills this test's schedulers by pid."""
    env = Env(uuid.uuid4().hex[:12], tmp_path, sshd)
    try:
        yield env
    finally:
        for runner in env.runners:
            runner.close()
        roots = find_schedulers(f"fake_scheduler.py --cluster {env.token}")
        kill_trees(roots, timeout=2)


def spawn_remote(sshd: Sshd, command: str) -> None:
    """Start ``command`` detached through a plain SSH session (a process started "over there")."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(sshd.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            NODE,
            port=sshd.port,
            username="root",
            key_filename=str(sshd.client_key),
            allow_agent=False,
            look_for_keys=False,
            timeout=10,
        )
        _stdin, stdout, _stderr = client.exec_command(f"setsid {command} </dev/null >/dev/null 2>&1 &", timeout=10)
        stdout.channel.recv_exit_status()
    finally:
        client.close()


def later(seconds: float = 60.0) -> float:
    """A leash deadline ``seconds`` from now (the leash clamps it to lease_ttl)."""
    return time.monotonic() + seconds


@pytest.fixture(params=sorted(MODES))
def mode(request: pytest.FixtureRequest) -> dict[str, str]:
    """Probe through the project's own ``probe --json`` on the node, or through the ps fallback."""
    return dict(MODES[request.param])
