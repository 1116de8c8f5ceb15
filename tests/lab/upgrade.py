"""The upgrade lab: the multi-host lab with each host running a release of its own.

Every host has a directory of its own on PATH (``h<i>/bin``: for its controller, and in ssh mode
for the SSH sessions the active opens there, by sshd's ``SetEnv``) holding links to the entry
points of the release installed on it (``tests/lab/releases.py``), and a config file per release
(the lab's settings less the keys that release does not know). Switching a host's release is
what an operator's upgrade does: stop its controller, point it at the other virtualenv, start it.
Processes started earlier (a leash, a scheduler) go on running the code they were started with.

Nothing sets PYTHONPATH: each release's Python imports its own installed copy only.
"""

from __future__ import annotations

import configparser
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lab.harness import Lab
from tests.lab.hosts import Host
from tests.lab.network import Network
from tests.lab.releases import Release
from tests.lab.scenarios import TTL
from tests.lab.sites import LabMetastore
from tests.lab.tools import SYSTEM_PATH
from tests.support.observer import Observer
from tests.support.sshd import sshd_config
from tests.support.waiting import holds_for, wait_for

TIMED_OUT = ("did not answer within", "did not finish within")  # the metastore's and SSH's deadlines
ENTRY_POINTS = ("python", "python3", "scheduler_failover_controller", "sfc")


class UpgradeHost(Host):
    """A lab host whose installed release can be switched (``install``)."""

    lab: UpgradeLab
    release: Release

    @property
    def bin(self) -> Path:
        return self.dir / "bin"

    def write_files(self, nodes: list[Host], overrides: dict[str, str]) -> None:
        super().write_files(nodes, overrides)
        parser = configparser.RawConfigParser()
        parser.read_string(self.config.read_text())
        self.settings = dict(parser["scheduler_failover"])
        lab = self.lab
        # The same sshd as every lab host's, but the PATH of its sessions is this host's release.
        (self.dir / "sshd_config").write_text(
            sshd_config(
                f"{self.ip}:22",
                self.dir / "ssh_host_ed25519_key",
                "none",
                lab.dir / "authorized_keys",
                "INFO",
                f"SetEnv PATH={self.bin}:{SYSTEM_PATH}",
            )
        )
        self.bin.mkdir()
        for release in (lab.old, lab.new):
            self.config_of(release).write_text(self.config_text(release))
        self.install(lab.old)

    def config_of(self, release: Release) -> Path:
        return self.dir / f"sfc-{release.name}.cfg"

    def config_text(self, release: Release) -> str:
        """The lab's settings less the keys ``release`` does not know (it would refuse them)."""
        kept = {k: v for k, v in self.settings.items() if k in release.keys}
        return "[scheduler_failover]\n" + "".join(f"{k} = {v}\n" for k, v in kept.items())

    def install(self, release: Release) -> None:
        """Make ``release`` the one installed here: its entry points on the host's PATH, its config."""
        for name in ENTRY_POINTS:
            link, tmp = self.bin / name, self.bin / f".{name}.new"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(release.venv / "bin" / name)
            os.replace(tmp, link)
        self.config.write_text(self.config_text(release))
        self.release = release

    def env(self) -> dict[str, str]:
        env = super().env()
        env.pop("PYTHONPATH", None)
        env["PATH"] = f"{self.bin}:{SYSTEM_PATH}"
        return env

    def start_controller(
        self, faketime: str | None = None, command: list[str] | None = None, env: dict[str, str] | None = None
    ) -> int:
        """The controller of the release installed here (no faketime in this lab)."""
        argv = [str(self.release.python), "-m", "scheduler_failover_controller", "--config", str(self.config), "start"]
        return super().start_controller(command=command or argv, env=env)

    def stop_controller(self, timeout: float = 30) -> None:
        """SIGTERM, as systemd stops it, and wait until it has exited (it hands over first)."""
        assert self.nsenter is not None and self.controller_pid is not None, f"{self.name}: no controller"
        os.kill(self.controller_pid, signal.SIGTERM)
        self.nsenter.wait(timeout=timeout)
        self.controller_pid = None

    def cli(
        self,
        release: Release,
        *args: str,
        config: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """``release``'s CLI run inside this host with this host's config for that release.

        Like Lab.cli, asks again (twice at most) when a call missed the lab's short metastore_timeout
        or ssh_timeout (a loaded machine misses them now and then, as an operator's call might)."""
        argv = self.enter(
            str(release.python),
            "-m",
            "scheduler_failover_controller",
            "--config",
            config or str(self.config_of(release)),
            *args,
        )
        for attempt in range(3):
            done = subprocess.run(
                argv,
                env={**self.env(), **(env or {})},
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
            said = done.stdout + done.stderr
            if attempt == 2 or done.returncode == 0 or not any(t in said for t in TIMED_OUT):
                break
        return done


@dataclass
class Step:
    """One master's upgrade or downgrade: when it began and ended, and the gaps without a scheduler."""

    host: str
    release: str
    began: float
    ended: float = 0.0
    gaps: list[float] = field(default_factory=list)


def gaps_between(observer: Observer, began: float, ended: float) -> list[float]:
    """Every span without a scheduler that overlaps [began, ended], in seconds (clipped to it)."""
    found: list[float] = []
    history = observer.history
    for i, (t, real, _) in enumerate(history):
        if real:
            continue
        until = history[i + 1][0] if i + 1 < len(history) else time.monotonic()
        start, end = max(t, began), min(until, ended)
        if end > start and i > 0:  # before the first scheduler there is nothing to lose
            found.append(end - start)
    return found


class UpgradeLab(Lab):
    """A lab whose hosts start on ``old`` and can each be switched to ``new`` and back."""

    host_class = UpgradeHost
    create_schema = False  # the old release's first controller creates its own schema
    hosts: list[UpgradeHost]  # type: ignore[assignment]

    def __init__(
        self,
        net: Network,
        site: LabMetastore,
        size: int = 3,
        config: dict[str, str] | None = None,
        old: Release | None = None,
        new: Release | None = None,
    ) -> None:
        assert old is not None and new is not None
        self.old, self.new = old, new
        super().__init__(net, site, size, config)

    def host(self, name: str) -> UpgradeHost:
        return next(h for h in self.hosts if h.name == name)

    def status(self, on: UpgradeHost | None = None) -> dict[str, Any] | None:
        """``status --json`` by the CLI of the release a host runs (h1's by default); None if unreadable."""
        host = on or self.hosts[0]
        done = host.cli(host.release, "status", "--json")
        try:
            found: dict[str, Any] = json.loads(done.stdout)
        except ValueError:
            return None
        return found

    def settled(self) -> bool:
        """One scheduler, where the store places it, an active controller, every controller registered."""
        seen = self.observer.current()
        if len(seen) != 1:
            return False
        found = self.status()
        if not found or not found.get("active_controller"):
            return False
        return found.get("scheduler_node") == seen[0].node and len(found.get("controllers") or []) == len(self.hosts)

    def boot_release(self) -> None:
        """Boot every host on the old release: h1's controller first (it becomes active), then the others."""
        self.net.forget_neighbours()
        for host in self.hosts:
            host.boot()
        for host in self.hosts:
            host.wait_ready()
        if self.node_control == "self":
            self._check_no_ssh()
        self.observer.start()
        first = self.hosts[0]
        first.start_controller()
        wait_for(lambda: (self.status() or {}).get("active_controller") == first.name, 30, "h1 to become active")
        for host in self.hosts[1:]:
            host.start_controller()
        wait_for(self.settled, 60, "the old release's cluster to settle")

    def replace(self, host: UpgradeHost, release: Release, settle: float = 30) -> Step:
        """Stop ``host``'s controller, install ``release`` there, start it, and wait for the
        cluster to settle with its controller registered; the step's gaps are then counted."""
        step = Step(host.name, release.name, time.monotonic())
        host.stop_controller()
        host.install(release)
        host.start_controller()
        wait_for(self.settled, settle, f"the cluster to settle after {host.name} switched to {release.name}")
        # What a new controller may still do a little later (e.g. to a leash of the other release)
        # belongs to its step: the scheduler must stay as it is for two leases.
        steady = self.observer.current()
        holds_for(lambda: self.observer.current() == steady, 2 * TTL, f"the scheduler after {host.name}'s switch")
        step.ended = time.monotonic()
        step.gaps = gaps_between(self.observer, step.began, step.ended)
        return step
