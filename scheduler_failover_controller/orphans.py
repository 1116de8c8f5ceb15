"""A scheduler's orphaned fork told from a scheduler, across consecutive probes of a node."""

from __future__ import annotations

import threading
from dataclasses import replace

from .probe_result import ProbeResult, SchedulerState


class OrphanWatch:
    """Tells a scheduler's orphaned child from a scheduler, across consecutive probes of a node.

    A process forked by a scheduler keeps its command line, so while the scheduler lives it is
    hidden under it (only tree roots count). When the scheduler dies hard, that child becomes a
    root and would pass for a live scheduler. It is recognised by identity, not by time: a root
    whose (pid, start since boot) a look saw below a scheduler is an orphan, so the node is
    UNHEALTHY and gets cleaned up and restarted. (Comparing start times with the time of a look is
    not exact: a look is listed before it is checked, and a scheduler started just after a look
    passed for an orphan. psutil's create times would not do either: they move with the wall clock.)

    An orphan stays one until it is gone, whoever probes next (the cycle, or the renewal thread),
    and a look in between (the dying scheduler as a zombie, nothing at all) forgets nothing. A
    look listed before one already taken in (two threads probing at once) updates nothing.
    """

    def __init__(self) -> None:
        self.roots: tuple[int, ...] = ()  # the scheduler's roots at the last look that saw it running
        self.hidden: frozenset[tuple[int, float]] = frozenset()  # what was below them then
        self.looked_at = 0.0  # the newest look taken in
        self.orphans: dict[int, tuple[int, ...]] = {}  # orphan pid -> the roots it outlived
        self._lock = threading.Lock()

    def check(self, result: ProbeResult) -> ProbeResult:
        with self._lock:
            fresh = result.looked_at == 0.0 or result.looked_at >= self.looked_at
            if fresh:
                self.looked_at = max(self.looked_at, result.looked_at)
                self.orphans = {pid: dead for pid, dead in self.orphans.items() if pid in result.pids}
            if result.state is SchedulerState.RUNNING:
                below = dict(self.hidden)
                for pid, created in zip(result.pids, result.create_times):
                    # Starts in clock ticks since boot: exact, and no step of the wall clock moves them.
                    if pid not in self.orphans and pid in below and created == below[pid]:
                        self.orphans[pid] = self.roots
                live = tuple(pid for pid in result.pids if pid not in self.orphans)
                if live and fresh:
                    self.roots, self.hidden = live, result.hidden
            found = [pid for pid in result.pids if pid in self.orphans]
        if not found:
            return result
        dead = sorted({p for pid in found for p in self.orphans.get(pid, ())})
        detail = f"pid {', '.join(map(str, found))} outlived its scheduler (pid {', '.join(map(str, dead))})"
        return replace(result, state=SchedulerState.UNHEALTHY, detail=detail)
