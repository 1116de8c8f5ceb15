"""Fakes for the leash's supervisor: a process table, its children and its deadline channel, on
an injected clock (tests/unit/test_leash_states.py). No process is started or signalled."""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from scheduler_failover_controller.leash.procs import DENIED, GONE, SENT, Proc
from scheduler_failover_controller.leash.spec import Spec
from scheduler_failover_controller.leash.states import State
from scheduler_failover_controller.leash.supervisor import Supervisor
from scheduler_failover_controller.leash.tree import Procs
from scheduler_failover_controller.matching import matches

from .fakes import FakeClock

LEASH = 500  # the supervisor's pid
WATCHER = 501
SCHEDULER = ["airflow", "scheduler"]
OTHER = ["sleep", "60"]


@dataclass
class FakeProc:
    ppid: int
    argv: list[str]
    start: int
    uid: int = field(default_factory=os.geteuid)
    user: str = "airflow"
    denied: bool = False  # EPERM: another user's
    ignores: frozenset[int] = frozenset()  # signals it survives (SIGKILL too: uninterruptible)


@dataclass
class FakeTable:
    """:class:`~scheduler_failover_controller.leash.procs.ProcessTable` over a dict."""

    procs: dict[int, FakeProc] = field(default_factory=dict)
    signals: list[tuple[int, int]] = field(default_factory=list)  # (pid, signum) delivered
    next_pid: int = 1000

    def add(self, argv: list[str], ppid: int = LEASH, **kwargs: object) -> int:
        self.next_pid += 1
        self.procs[self.next_pid] = FakeProc(ppid, list(argv), start=self.next_pid * 7, **kwargs)  # type: ignore[arg-type]
        return self.next_pid

    def end(self, pid: int) -> None:
        """``pid`` exits; its children are re-parented to the leash (a subreaper)."""
        self.procs.pop(pid, None)
        for proc in self.procs.values():
            if proc.ppid == pid:
                proc.ppid = LEASH

    def table(self) -> dict[int, Proc]:
        return {pid: Proc(p.ppid, 1, p.start, "S") for pid, p in self.procs.items()}

    def argv(self, pid: int) -> list[str]:
        proc = self.procs.get(pid)
        return list(proc.argv) if proc else []

    def signal(self, pid: int, start: int, signum: int) -> str:
        proc = self.procs.get(pid)
        if proc is None or proc.start != start:
            return GONE
        if proc.denied:
            return DENIED
        if signum:
            self.signals.append((pid, signum))
        if signum in (signal.SIGTERM, signal.SIGKILL) and signum not in proc.ignores:
            self.end(pid)
        return SENT

    def user(self, pid: int) -> str:
        proc = self.procs.get(pid)
        return proc.user if proc else "unknown user"

    def owned(self, pid: int, uid: int) -> bool:
        proc = self.procs.get(pid)
        return proc is not None and proc.uid == uid

    def schedulers(self, match: str) -> list[int]:
        words = match.split()
        found = {pid for pid, p in self.procs.items() if matches(p.argv, words)}
        return sorted(pid for pid in found if self.procs[pid].ppid not in found)

    def sent(self, signum: int) -> list[int]:
        return [pid for pid, sig in self.signals if sig == signum]


@dataclass
class FakeChildren:
    """:class:`~scheduler_failover_controller.leash.children.Children` that start fake processes."""

    table: FakeTable
    watcher: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    spawned: list[list[str]] = field(default_factory=list)
    registrations: list[tuple[str, bool]] = field(default_factory=list)
    told: list[tuple[float, str, Procs]] = field(default_factory=list)
    cgroup_kills: int = 0
    closed: bool = False

    def prepare(self) -> None:
        self.watcher = WATCHER

    def spawn(self, argv: list[str], contain: bool = False) -> int:
        self.spawned.append(argv)
        return self.table.add(argv)

    def reap(self) -> None:
        pass

    def exit_status(self, pid: int) -> int | None:
        return self.statuses.get(pid)

    def exit(self, pid: int, status: int) -> None:
        """Child ``pid`` exits with ``status`` (and is reaped)."""
        self.table.end(pid)
        self.statuses[pid] = status

    def register(self, mode: str, shown: bool) -> None:
        self.registrations.append((mode, shown))

    def send(self, deadline: float, mode: str, procs: Procs) -> None:
        self.told.append((deadline, mode, procs))

    def kill_cgroup(self, wait: float) -> None:
        self.cgroup_kills += 1

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeRenewals:
    """The deadline channel: what the next :meth:`take` gives."""

    pending: list[tuple[float | None, str]] = field(default_factory=list)

    def take(self) -> tuple[float | None, str]:
        return self.pending.pop(0) if self.pending else (None, "")


class RecordingSupervisor(Supervisor):
    """Records every change of state, and checks that each says exactly one line."""

    changes: list[tuple[State, State]]
    lines: list[tuple[int, str]]

    def change(self, state: State, message: str, level: int = logging.INFO) -> None:
        before, said = self.state, len(self.lines)
        super().change(state, message, level)
        assert len(self.lines) == said + 1, self.lines[said:]
        self.changes.append((before, state))


class Rig:
    """A supervisor on fakes, and the means to move time and processes."""

    def __init__(self, tmp_path: Path, **overrides: object) -> None:
        self.clock = FakeClock(1000.0)
        values: dict[str, object] = {
            "node": "n1",
            "state_dir": tmp_path,
            "command": "airflow scheduler",
            "stop_command": "",
            "stop_timeout": 5.0,
            "ttl": 30.0,
            "deadline": self.clock.now + 30.0,
            "match": "airflow scheduler",
            "linger": 10.0,
        }
        values.update(overrides)
        self.spec = Spec(**values)  # type: ignore[arg-type]
        self.table = FakeTable()
        self.children = FakeChildren(self.table)
        self.renewals = FakeRenewals()
        self.lines: list[tuple[int, str]] = []
        sup = RecordingSupervisor(
            self.spec, LEASH, self.clock.monotonic, self.table, self.children, self.renewals, self.say
        )
        sup.changes, sup.lines = [], self.lines
        self.sup = sup

    def say(self, message: str, level: int = logging.INFO) -> None:
        self.lines.append((level, message))

    @property
    def state(self) -> State:
        return self.sup.state

    @property
    def root(self) -> int:
        return self.sup.root

    def log(self) -> str:
        return "\n".join(message for _level, message in self.lines)

    def started(self) -> Rig:
        self.sup.start()
        assert self.state is State.RUNNING, self.log()
        return self

    def step(self, seconds: float = 0.0) -> float | None:
        self.clock.advance(seconds)
        return self.sup.step()

    def run_until(self, state: State, limit: float = 120.0) -> None:
        """Step, waking when the supervisor asks, until it enters ``state`` (at most ``limit`` seconds)."""
        end, seen = self.clock.now + limit, len(self.sup.changes)
        while self.state is not state:
            wake = self.sup.step()
            if state in [after for _before, after in self.sup.changes[seen:]]:
                return
            assert self.clock.now < end and wake is not None, (self.state, self.log())
            self.clock.now = max(wake, self.clock.now + 0.01)

    def scheduler(self, **kwargs: object) -> int:
        """A scheduler below the start command."""
        return self.table.add(SCHEDULER, ppid=self.root, **kwargs)

    def daemon(self) -> int:
        """The start command forked the scheduler and exited 0."""
        pid = self.scheduler()
        self.children.exit(self.root, 0)
        self.step()
        assert self.state is State.DAEMON, self.log()
        return pid

    def handed_off(self) -> None:
        """The start command exited 0 leaving nothing: a scheduler runs elsewhere (systemd's)."""
        self.children.exit(self.root, 0)
        self.table.add(SCHEDULER, ppid=1)
        self.step()
        assert self.state is State.WATCHING, self.log()

    def waiting(self) -> int:
        """The start command exited leaving a wrapper that has yet to exec the scheduler."""
        wrapper = self.table.add(OTHER, ppid=self.root)
        self.children.exit(self.root, 0)
        self.step()
        assert self.state is State.WAITING, self.log()
        return wrapper
