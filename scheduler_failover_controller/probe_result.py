"""What a probe saw: a node's scheduler state, its roots' pids, and what does not count.

The domain types every layer shares (the decisions, the CLI, the metastore's reports, both node
runners). Standard library only: importing them pulls in neither psutil nor paramiko.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field


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


@dataclass(frozen=True, order=True)
class ForeignProcess:
    """A matching process that does not count as the scheduler: its pid and its user."""

    pid: int
    user: str

    def describe(self) -> str:
        return f"pid {self.pid} ({self.user})"

    def to_json(self) -> dict[str, object]:
        return {"pid": self.pid, "user": self.user}


def describe_foreign(foreign: Iterable[ForeignProcess]) -> str:
    return ", ".join(f.describe() for f in foreign)


@dataclass(frozen=True)
class ProbeResult:
    """One node's scheduler state with the pids of its process-tree roots."""

    node: str
    state: SchedulerState
    pids: tuple[int, ...] = ()
    detail: str = ""
    #: when each root started, in seconds since boot (no step of the wall clock moves it)
    create_times: tuple[float, ...] = field(default=(), compare=False)
    #: every scheduler root found runs under a live leash for this node (it stops them at the
    #: node's placement deadline whatever becomes of any controller); False when none runs
    leashed: bool = False
    #: (pid, start in seconds since boot) of every matching process below a root at this look: a scheduler's
    #: forks, which keep its command line (see :class:`~.orphans.OrphanWatch`)
    hidden: frozenset[tuple[int, float]] = field(default=frozenset(), compare=False)
    #: ``time.monotonic()`` just before the processes were listed (0: not known)
    looked_at: float = field(default=0.0, compare=False)
    #: matching processes that do not count (another user's, not leashed): reported only
    foreign: tuple[ForeignProcess, ...] = field(default=(), compare=False)
    #: UNKNOWN because nothing answered for the node at all: SSH did not reach it within its timeout,
    #: or (self mode) its controller's report is stale or missing. Not set when the node answered
    #: but what it said is not yet usable (a start under way, a report of an older version).
    unreachable: bool = field(default=False, compare=False)

    def describe(self) -> str:
        pids = f" (pid {', '.join(map(str, self.pids))})" if self.pids else ""
        extra = f": {self.detail}" if self.detail and self.state is not SchedulerState.RUNNING else ""
        foreign = f"; foreign, not counted: {describe_foreign(self.foreign)}" if self.foreign else ""
        return f"{self.state.value}{pids}{extra}{foreign}"

    def to_json(self) -> dict[str, object]:
        return {
            "node": self.node,
            "state": self.state.value,
            "pids": list(self.pids),
            "detail": self.detail,
            "leashed": self.leashed,
            "foreign": [f.to_json() for f in self.foreign],
        }
