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

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from scheduler_failover_controller.config import Config, load_config
from scheduler_failover_controller.controller.cycle import PLEASE_REPORT
from scheduler_failover_controller.metastore.base import ClusterState, Event
from tests.lab.hosts import Host
from tests.lab.network import Network
from tests.lab.sites import (
    LabMetastore,
)
from tests.lab.tools import (
    FAKE,
    PYTHON,
    sh,
)
from tests.support.observer import Observer
from tests.support.waiting import wait_for

# --- the lab ----------------------------------------------------------------------------------


class Lab:
    """N hosts h1..hN on the network's bridge, sharing one metastore (MariaDB or ZooKeeper), and an observer."""

    host_class: type[Host] = Host  # the upgrade lab's hosts switch releases (tests/lab/upgrade.py)
    create_schema = True  # False: the first controller creates it (an older release's, in the upgrade lab)

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
        self.overrides = dict(config or {})  # node_control = self: hosts without sshd
        self.node_control = self.overrides.get("node_control", "ssh")
        self.hosts = [self.host_class(self, i + 1) for i in range(size)]
        self.observer = Observer(f"fake_scheduler.py --cluster {self.token}")
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
        if self.create_schema:
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
        if self.node_control == "self":
            self._check_no_ssh()
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

    def _check_no_ssh(self) -> None:
        """Self mode: no host runs an sshd or listens on port 22; each host counts what it sends
        to port 22 from now on (``ssh_attempts``), which must stay at nothing."""
        for host in self.hosts:
            assert host.sshd_processes() == [], f"{host.name} runs an sshd"
            listening = host.tcp_listeners()
            assert not any(addr.endswith(":22") for addr in listening), f"{host.name} listens on port 22: {listening}"
            host.count_ssh_packets()

    def ssh_attempts(self) -> dict[str, int]:
        """Packets each live host sent to a port 22 since boot (self mode; see ``_check_no_ssh``)."""
        return {h.name: h.ssh_packets_sent() for h in self.hosts if h.alive}

    # the metastore, read from the root namespace

    def state(self) -> ClusterState:
        return self.store.read_state()

    def active(self) -> str | None:
        lease = self.state().lease
        return lease.host if lease.valid else None

    def events(self, limit: int = 500) -> list[Event]:
        return self.store.events(limit)

    def cli(self, *args: str, host: str = "h1", timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The CLI with ``host``'s config, run in the metastore's namespace (it reaches 198.18.0.2).

        The lab's metastore_timeout is short (fast failover); on a loaded machine a CLI call can
        miss it, as an operator's might: like an operator, ask again (twice at most)."""
        for _ in range(2):
            done = self._cli(args, host, timeout)
            if done.returncode == 0 or "did not answer within" not in done.stdout + done.stderr:
                return done
        return self._cli(args, host, timeout)

    def _cli(self, args: tuple[str, ...], host: str, timeout: float) -> subprocess.CompletedProcess[str]:
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
