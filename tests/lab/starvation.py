"""CPU starvation of one lab host: bounded busy loops inside it, in a CPU cgroup of its own."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from tests.lab.hosts import Host


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
