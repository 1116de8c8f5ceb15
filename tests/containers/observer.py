"""Counting the containers' schedulers from the host's process table.

The host sees every container's processes. A scheduler ROOT is a process whose argv is
``airflow scheduler`` and whose parent's is not (Airflow's forked children rename themselves; one
forked before it renamed has a matching ancestor). Its container is read from its cgroup (the
lab's dockerd puts container ``ID`` at ``/sfc-container-lab/ID``), and a process whose freezer
cgroup is FROZEN (``docker pause``) does not run: :class:`ContainerObserver` counts it apart, so a
paused master's scheduler beside a new one is not "two schedulers", and the moment it thaws it is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from scheduler_failover_controller.matching import matches
from scheduler_failover_controller.process_tree import parent_lookup, root_pids
from tests.containers.dockerd import CGROUP_PARENT, PrivateDockerd
from tests.support.observer import Observer, Seen

ROOT = Path(__file__).resolve().parents[2]
WORDS = ["airflow", "scheduler"]
FREEZER = Path("/sys/fs/cgroup/freezer")


def container_of(pid: int) -> str | None:
    """The lab container id of ``pid`` (from its cgroup), or None."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        if path.startswith(CGROUP_PARENT + "/"):
            return path[len(CGROUP_PARENT) + 1 :].split("/")[0]
    return None


def frozen(container: str) -> bool:
    """Whether the container's freezer cgroup is frozen (or freezing): its processes do not run."""
    try:
        state = (FREEZER / CGROUP_PARENT.lstrip("/") / container / "freezer.state").read_text().strip()
    except OSError:
        return False
    return state != "THAWED"


def scheduler_roots() -> dict[int, str]:
    """Every scheduler root on the host that runs in a lab container: pid -> container id."""
    found: dict[int, str] = {}
    parents: dict[int, int] = {}
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        argv = proc.info.get("cmdline") or []
        if "scheduler" in argv and matches(argv, WORDS):
            container = container_of(proc.pid)
            if container is not None:
                found[proc.pid] = container
                parents[proc.pid] = proc.info["ppid"]
    tops = root_pids(found, parent_lookup(parents))
    return {pid: c for pid, c in found.items() if pid in tops}


@dataclass
class ContainerObserver(Observer):
    """Samples the containers' running scheduler roots (by compose service); frozen ones apart."""

    dockerd: PrivateDockerd | None = None
    names: dict[str, str] = field(default_factory=dict)  # container id -> service
    frozen_seen: list[tuple[float, tuple[Seen, ...]]] = field(default_factory=list)

    def service(self, container: str) -> str:
        if container not in self.names and self.dockerd is not None:
            for line in self.dockerd.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}").splitlines():
                cid, name = line.split()
                # compose names containers <project>_<service>_1
                self.names[cid] = name.split("_", 1)[1].rsplit("_", 1)[0] if name.count("_") >= 2 else name
        return self.names.get(container, container[:12])

    def sample(self) -> list[Seen]:
        running: list[Seen] = []
        paused: list[Seen] = []
        for pid, container in scheduler_roots().items():
            seen = Seen(self.service(container), pid)
            (paused if frozen(container) else running).append(seen)
        if paused and (not self.frozen_seen or self.frozen_seen[-1][1] != tuple(sorted(paused))):
            self.frozen_seen.append((time.monotonic(), tuple(sorted(paused))))
        return running

    def nodes(self) -> list[str]:
        return [s.node for s in self.current()]


@dataclass
class ThawWatch:
    """:mod:`tests.containers.thaw_watch` in a process of its own, started while the container is paused."""

    container: str
    pid: int
    proc: subprocess.Popen[str] | None = None
    found: dict[str, float | None] = field(default_factory=dict)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.containers.thaw_watch", self.container, str(self.pid)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready", "the thaw watch did not start"

    def join(self, timeout: float = 200.0) -> float:
        """The seconds the scheduler ran after the thaw (inf if it never ended); :attr:`found` has
        the details (when the leash got a CPU, the scheduler's own CPU seconds)."""
        assert self.proc is not None
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return float("inf")
        found = json.loads(out.strip().splitlines()[-1])
        self.found = found
        return float("inf") if found["ended"] is None else float(found["ended"] - found["thawed"])


def full_id(dockerd: PrivateDockerd, name: str) -> str:
    return dockerd.docker("inspect", "--format", "{{.Id}}", name)
