"""The Airflow processes of the lab's hosts (tests/lab/airflow_harness.py).

The :class:`AirflowObserver` counts, every 100 ms from the root namespace, the scheduler ROOT
processes (by argv; the children Airflow forks and renames by setproctitle do not match, and a child
forked before it renames itself has a matching ancestor). :func:`scheduler_processes` lists a host's
Airflow processes that belong to its scheduler: every process of the host but its PID 1, sshd and
its sessions, the controller and what it runs, and the dag-processor and api-server trees.
"""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass

import psutil

from scheduler_failover_controller.matching import matches
from scheduler_failover_controller.process_tree import parent_lookup, root_pids
from tests.lab.hosts import Host
from tests.support.observer import Observer, Seen
from tests.support.waiting import wait_for


@dataclass(frozen=True)
class Proc:
    """A process as seen at one moment (pid + start time: a reused pid is another process)."""

    pid: int
    started: float
    argv: str

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return proc.create_time() == self.started and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


class AirflowObserver(Observer):
    """The lab observer, counting real ``airflow scheduler`` ROOT processes, by node (their --pid path)."""

    def __init__(self, words: dict[str, list[str]]) -> None:
        super().__init__(match="airflow scheduler", interval=0.1)
        self.words = words

    def sample(self) -> list[Seen]:
        found: dict[int, str] = {}
        parents: dict[int, int] = {}
        for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
            argv = proc.info.get("cmdline") or []
            if "scheduler" not in argv:
                continue
            for node, words in self.words.items():
                if matches(argv, words):
                    found[proc.pid] = node
                    parents[proc.pid] = proc.info["ppid"]

        tops = root_pids(found, parent_lookup(parents))
        return [Seen(node, pid) for pid, node in found.items() if pid in tops]


@dataclass
class Service:
    """An Airflow daemon the harness runs on a host beside the controller (dag-processor, api-server)."""

    name: str
    host: Host
    nsenter: subprocess.Popen[bytes]
    pid: int


def infrastructure(host: Host, services: list[Service]) -> set[int]:
    """Pids of the host that are not its scheduler's: PID 1, sshd and sessions, the controller, the services."""
    procs = host.processes()
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            children.setdefault(proc.ppid(), []).append(proc.pid)
            names[proc.pid] = proc.name()
    roots = {host.init_pid} if host.init_pid else set()
    if host.controller_pid:
        roots.add(host.controller_pid)
    roots |= {s.pid for s in services if s.host is host}
    roots |= {pid for pid, name in names.items() if name == "sshd"}
    out: set[int] = set()
    level = [r for r in roots if r is not None]
    out.update(level)
    # Not below PID 1 as a whole: orphans (the scheduler's leash) are its children.
    below = [p for r in level if r != host.init_pid for p in children.get(r, [])]
    while below:
        out.update(below)
        below = [c for p in below for c in children.get(p, [])]
    return out


def scheduler_processes(host: Host, services: list[Service]) -> list[Proc]:
    """What runs on the host for its scheduler: the leash, the scheduler and every Airflow child."""
    infra = infrastructure(host, services)
    found = []
    for proc in host.processes():
        if proc.pid in infra:
            continue
        with contextlib.suppress(psutil.Error):
            found.append(Proc(proc.pid, proc.create_time(), " ".join(proc.cmdline())[:160]))
    return found


def assert_gone(old: list[Proc], timeout: float, what: str) -> None:
    """Every process of ``old`` ends within ``timeout``; fails naming those left."""
    try:
        wait_for(lambda: not [p for p in old if p.alive()], timeout, what, interval=0.2)
    except AssertionError:
        left = [f"{p.pid} {p.argv}" for p in old if p.alive()]
        raise AssertionError(f"{what}: still running after {timeout:g}s: {left}") from None
