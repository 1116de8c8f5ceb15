"""A dockerd of the container lab's own, and the host state it must give back.

The daemon (Debian's ``docker.io``) gets its own socket, exec root and pid file under a fresh
directory in /run, and a data root in the lab's cache (the imported base and the built layers
stay there between runs: that is the cache). It creates no default bridge (``--bridge=none``, so
no docker0 on 172.17.0.0/16) and every network it makes comes from ``--default-address-pool``
198.19.0.0/16 (inside 198.18.0.0/15, apart from the multi-host lab's 198.18.0.0/24). It is told
to leave the host's firewall and forwarding alone (``--iptables=false``, ``--ip-masq=false``,
``--ip-forward=false``): lab networks are ``internal`` and reach nothing but each other and the
host. :class:`HostState` still snapshots the iptables rules, the forwarding sysctls, the links and
the mounts before the daemon starts, and :meth:`PrivateDockerd.stop` restores the rules and
sysctls if they differ and reports anything left behind, also when a test failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.support.waiting import wait_for

DOCKERD = Path("/usr/sbin/dockerd")
DOCKER = Path("/usr/bin/docker")
ADDRESS_POOL = "base=198.19.0.0/16,size=24"
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv6/conf/all/forwarding")
STOP_WAIT = 30.0
CGROUP_PARENT = "/sfc-container-lab"


def _run(argv: list[str], timeout: float = 30, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=stdin, check=False)


def _mounts() -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return [line.split()[4] for line in handle]


def _links() -> set[str]:
    return {name for name in os.listdir("/sys/class/net")}


@dataclass
class HostState:
    """What dockerd may change on the host, as it was before the lab."""

    iptables: dict[str, str] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    links: set[str] = field(default_factory=set)
    mounts: set[str] = field(default_factory=set)

    @classmethod
    def take(cls) -> HostState:
        state = cls(links=_links(), mounts=set(_mounts()))
        for tool in ("iptables-save", "ip6tables-save"):
            if shutil.which(tool):
                state.iptables[tool] = _run([tool]).stdout
        for name in SYSCTLS:
            with contextlib.suppress(OSError):
                state.sysctls[name] = Path("/proc/sys", name).read_text()
        return state

    def restore(self) -> list[str]:
        """Puts back the rules and sysctls that differ; returns what had changed."""
        changed = []
        for tool, before in self.iptables.items():
            if _rules(_run([tool]).stdout) != _rules(before):
                changed.append(tool.replace("-save", ""))
                _run([tool.replace("-save", "-restore")], stdin=before)
        for name, before in self.sysctls.items():
            path = Path("/proc/sys", name)
            with contextlib.suppress(OSError):
                if path.read_text() != before:
                    changed.append(name)
                    path.write_text(before)
        return changed


def _rules(saved: str) -> list[str]:
    """iptables-save output without its comments and packet counters (they change by themselves)."""
    return [line.split(" [")[0] if line.startswith(":") else line for line in saved.splitlines() if line[:1] != "#"]


@dataclass
class PrivateDockerd:
    """One dockerd for the lab (see the module docstring); :meth:`start`, then :meth:`stop` in a finally."""

    data_root: Path
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sfc-dockerd-", dir="/run")))
    proc: subprocess.Popen[bytes] | None = None
    before: HostState | None = None

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        """The environment a docker or docker-compose client of this daemon runs with."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(DOCKER_HOST=self.host, COMPOSE_INTERACTIVE_NO_CLI="1")
        return env

    def docker(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        result = subprocess.run(
            [str(DOCKER), *args], env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
        return result.stdout.strip()

    def start(self) -> None:
        self.before = HostState.take()
        self.data_root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_root, 0o711)
        argv = [
            str(DOCKERD),
            f"--host={self.host}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.run_dir / 'exec'}",
            f"--pidfile={self.run_dir / 'dockerd.pid'}",
            "--bridge=none",
            f"--default-address-pool={ADDRESS_POOL}",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            "--userland-proxy=false",
            "--storage-driver=overlay2",
            "--log-level=warn",
            "--exec-opt=native.cgroupdriver=cgroupfs",
            f"--cgroup-parent={CGROUP_PARENT}",
        ]
        with (self.run_dir / "dockerd.log").open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited {self.proc.returncode}: {self.log()[-3000:]}")
            return self.socket.exists() and self.docker("version", "--format", "{{.Server.Version}}", check=False) != ""

        wait_for(up, 60, "the lab's dockerd", interval=0.2)

    def log(self) -> str:
        path = self.run_dir / "dockerd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def clean(self) -> None:
        """Removes every container, network and anonymous volume (images stay: the cache)."""
        ids = self.docker("ps", "-aq", check=False).split()
        if ids:
            self.docker(
                "unpause", *self.docker("ps", "-q", "--filter", "status=paused", check=False).split(), check=False
            )
            self.docker("rm", "-f", "-v", *ids, timeout=120, check=False)
        self.docker("network", "prune", "-f", check=False)
        self.docker("volume", "prune", "-f", check=False)

    def stop(self) -> list[str]:
        """Ends the daemon and everything it started; restores the host. Returns what was left behind."""
        left: list[str] = []
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.clean()
            self._end_daemon()
        left.extend(self._stragglers())
        left.extend(self._unmount())
        for parent in Path("/sys/fs/cgroup").glob(f"*{CGROUP_PARENT}"):
            with contextlib.suppress(OSError):
                parent.rmdir()
        assert self.before is not None
        left.extend(f"host setting changed (restored): {name}" for name in self.before.restore())
        left.extend(f"network link: {name}" for name in sorted(_links() - self.before.links))
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return left

    def _end_daemon(self) -> None:
        assert self.proc is not None
        tree = []
        with contextlib.suppress(psutil.Error):
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        # containerd and its shims, if any outlived the daemon (shims re-parent to init).
        for child in tree:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(tree, timeout=10)

    def _stragglers(self) -> list[str]:
        """Kills and names any process that still refers to the daemon's run directory (a shim)."""
        left = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if any(str(self.run_dir) in arg for arg in proc.info.get("cmdline") or []):
                left.append(f"process {proc.pid}: {' '.join(proc.info['cmdline'])[:120]}")
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        return left

    def _unmount(self) -> list[str]:
        roots = (str(self.data_root) + "/", str(self.run_dir) + "/")
        left = []
        for point in reversed(_mounts()):
            if point.startswith(roots) and (self.before is None or point not in self.before.mounts):
                left.append(f"mount: {point}")
                _run(["umount", "-l", point])
        return left
