"""One simulated master host of the lab."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from scheduler_failover_controller.config import KEYS

if TYPE_CHECKING:
    from tests.lab.harness import Lab

from tests.lab.starvation import CPUStarvation
from tests.lab.tools import (
    FAKE,
    FAKETIME_SHIM,
    HOSTINIT,
    METASTORE_IP,
    PYTHON,
    ROOT,
    SUBNET,
    SYSTEM_PATH,
    VENV_BIN,
    libfaketime,
    sh,
)
from tests.support.sshd import sshd_config
from tests.support.waiting import wait_for

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
        self.ssh = lab.overrides.get("node_control", "ssh") == "ssh"  # else no sshd on this host

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
            sshd_config(
                f"{self.ip}:22",
                self.dir / "ssh_host_ed25519_key",
                "none",
                lab.dir / "authorized_keys",
                "INFO",
                f"SetEnv PATH={VENV_BIN}:{SYSTEM_PATH} PYTHONPATH={ROOT}",
            )
        )
        settings = {
            "scheduler_nodes_in_cluster": ",".join(h.name for h in nodes),
            "current_host": self.name,
            "local_nodes": self.name,
            "node_control": "ssh",
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
            # A self-mode lab's hosts run no sshd at all: nothing but the metastore between them.
            "sshd": ["/usr/sbin/sshd", "-D", "-e", "-f", str(self.dir / "sshd_config")] if self.ssh else [],
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

    def set_setting(self, key: str, value: str) -> None:
        """Change one key of the host's config file (read by its controller when it starts)."""
        lines = self.config.read_text().splitlines()
        changed = [f"{key} = {value}" if line.split("=", 1)[0].strip() == key else line for line in lines]
        assert changed != lines or f"{key} = {value}" in lines, f"{self.name}: no {key} in its config"
        self.config.write_text("\n".join(changed) + "\n")

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

        wait_for(ready, timeout, f"{self.name} to boot (sshd up)" if self.ssh else f"{self.name} to boot")
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

    def start_controller(
        self, faketime: str | None = None, command: list[str] | None = None, env: dict[str, str] | None = None
    ) -> int:
        """Start ``scheduler_failover_controller start`` inside the host (under ``faketime -f OFFSET``).

        ``command`` and ``env`` start another controller in its place (benchmarks/legacy.py runs
        the 2016 one); ``env`` then replaces the host's environment."""
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
                self.enter(*(command or argv)),
                env=env or self.env(),
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

    def tcp_listeners(self) -> list[str]:
        """The local addresses (``ip:port``) of every listening TCP socket in the host's network."""
        out = sh("ip", "netns", "exec", self.ns, "ss", "-H", "-l", "-t", "-n").stdout
        return [line.split()[3] for line in out.splitlines() if len(line.split()) > 3]

    def count_ssh_packets(self) -> None:
        """A rule without a target in the host's OUTPUT chain: it counts every TCP packet the host
        sends to a port 22 (an SSH connection tried), and lets it go."""
        self.iptables("-A", "OUTPUT", "-p", "tcp", "--dport", "22")

    def ssh_packets_sent(self) -> int:
        """What ``count_ssh_packets``'s rule has counted so far (0 without the rule)."""
        out = sh("ip", "netns", "exec", self.ns, "iptables", "-w", "5", "-L", "OUTPUT", "-v", "-n", "-x").stdout
        return sum(int(line.split()[0]) for line in out.splitlines() if "dpt:22" in line)

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
