"""Scheduler health on the local machine: which processes are schedulers, and in what state.

A scheduler is a process whose arguments contain the words of ``scheduler_process_match``
(the first word compared by basename, so ``/venv/bin/airflow scheduler`` matches
``airflow scheduler`` but ``grep "airflow scheduler"`` does not). Only the top of each
matching process tree counts: Airflow's own children carry the same words.
"""

from __future__ import annotations

import enum
import os
import shlex
from dataclasses import dataclass, field

import psutil


class SchedulerState(str, enum.Enum):
    """What a probe saw. UNKNOWN means "could not look": never read it as running or stopped."""

    RUNNING = "running"
    STOPPED = "stopped"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"

    @property
    def maybe_running(self) -> bool:
        """True unless the node is known to run no scheduler process."""
        return self is not SchedulerState.STOPPED


@dataclass(frozen=True)
class ProbeResult:
    """One node's scheduler state with the pids of its process-tree roots."""

    node: str
    state: SchedulerState
    pids: tuple[int, ...] = ()
    detail: str = ""
    create_times: tuple[float, ...] = field(default=(), compare=False)

    def describe(self) -> str:
        pids = f" (pid {', '.join(map(str, self.pids))})" if self.pids else ""
        extra = f": {self.detail}" if self.detail and self.state is not SchedulerState.RUNNING else ""
        return f"{self.state.value}{pids}{extra}"

    def to_json(self) -> dict[str, object]:
        return {"node": self.node, "state": self.state.value, "pids": list(self.pids), "detail": self.detail}


def _argv(proc: psutil.Process) -> list[str]:
    argv = proc.cmdline()
    if len(argv) == 1 and " " in argv[0]:
        argv = argv[0].split()  # a process title set with setproctitle
    return argv


def matches(argv: list[str], words: list[str]) -> bool:
    """Whether ``words`` appear in ``argv`` in a row, the first compared by basename."""
    if not words:
        return False
    first, rest = words[0], words[1:]
    for i, arg in enumerate(argv):
        if (arg == first or os.path.basename(arg) == first) and argv[i + 1 : i + 1 + len(rest)] == rest:
            return True
    return False


def _own_lineage() -> set[int]:
    """This process and its ancestors: never schedulers, never to be killed."""
    pids = {os.getpid()}
    try:
        for parent in psutil.Process().parents():
            pids.add(parent.pid)
    except psutil.Error:
        pass
    return pids


def find_schedulers(match: str) -> list[psutil.Process]:
    """The root processes of every scheduler tree matching ``match``, oldest first."""
    words = shlex.split(match)
    skip = _own_lineage()
    found: dict[int, psutil.Process] = {}
    parents: dict[int, int] = {}
    for proc in psutil.process_iter(["pid", "ppid"]):
        try:
            if proc.pid in skip or not matches(_argv(proc), words):
                continue
            found[proc.pid] = proc
            parents[proc.pid] = proc.info["ppid"]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    roots = []
    for pid, proc in found.items():
        ancestor, depth = parents.get(pid, 0), 0
        nested = False
        while ancestor and depth < 64:
            if ancestor in found:
                nested = True
                break
            try:
                ancestor = psutil.Process(ancestor).ppid()
            except psutil.Error:
                break
            depth += 1
        if not nested:
            roots.append(proc)

    def created(proc: psutil.Process) -> float:
        try:
            return proc.create_time()
        except psutil.Error:
            return 0.0

    return sorted(roots, key=created)


def probe_local(node: str, match: str) -> ProbeResult:
    """Look at this machine's processes for ``node``'s scheduler."""
    try:
        roots = find_schedulers(match)
    except (psutil.Error, OSError) as exc:
        return ProbeResult(node, SchedulerState.UNKNOWN, detail=f"cannot list processes: {exc}")
    if not roots:
        return ProbeResult(node, SchedulerState.STOPPED)
    pids, times, bad = [], [], []
    for proc in roots:
        status: str
        try:
            status = proc.status()
            times.append(proc.create_time())
        except psutil.NoSuchProcess:
            continue
        except psutil.Error:
            status = "?"
            times.append(0.0)
        pids.append(proc.pid)
        if status in (psutil.STATUS_ZOMBIE, psutil.STATUS_STOPPED, psutil.STATUS_DEAD, "tracing-stop"):
            bad.append(f"pid {proc.pid} is {status}")
    if not pids:
        return ProbeResult(node, SchedulerState.STOPPED)
    if bad:
        return ProbeResult(node, SchedulerState.UNHEALTHY, tuple(pids), "; ".join(bad), tuple(times))
    detail = "" if len(pids) == 1 else f"{len(pids)} scheduler processes"
    return ProbeResult(node, SchedulerState.RUNNING, tuple(pids), detail, tuple(times))
