"""The in-memory node runner of the unit tests: one node's scheduler, with injectable faults."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from scheduler_failover_controller.exceptions import CommandFailed, NodeUnreachable
from scheduler_failover_controller.nodes.base import NodeRunner
from scheduler_failover_controller.probe_result import ForeignProcess, ProbeResult, SchedulerState

# --- nodes --------------------------------------------------------------------------------

_pids = itertools.count(4000)


class FakeRunner(NodeRunner):
    """One node's scheduler, in memory.

    ``state`` is the truth; ``probe`` reports it unless the node is unreachable (UNKNOWN).
    Knobs: ``start_error`` makes start raise CommandFailed; ``comes_up = False`` makes start
    "succeed" with no scheduler ever showing; ``up_after_probes`` delays it by that many probes;
    ``reachable = False`` makes probe UNKNOWN and start/stop raise NodeUnreachable;
    ``stop_fails`` leaves the scheduler running after stop; ``leashed = False`` reports its
    scheduler as not under a leash (one started by hand); ``leash_fails`` makes ``renew_leash``
    fail (the leash keeps its last deadline). ``actions`` (shared between runners)
    records ``(node, "start"|"stop")`` in call order; ``deadlines`` the leash deadlines given
    to ``start`` and ``renew_leash``.
    """

    def __init__(
        self,
        node: str,
        state: SchedulerState = SchedulerState.STOPPED,
        actions: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(node)
        self.state = state
        self.pids: tuple[int, ...] = (next(_pids),) if state is not SchedulerState.STOPPED else ()
        self.actions = actions if actions is not None else []
        self.reachable = True
        self.start_error: str | None = None
        self.comes_up = True
        self.up_after_probes = 0
        self.stop_fails = False
        self.leashed = True
        self.leash_fails = False
        self.foreign: tuple[ForeignProcess, ...] = ()  # another user's look-alikes it reports
        self.deadlines: list[tuple[str, float]] = []
        self.leash_clock: Callable[[], float] | None = None
        self.starts = 0
        self.stops = 0
        self.graces: list[float | None] = []
        self.probes = 0
        self.on_probe: Callable[[], None] | None = None
        self._pending = -1
        self._lock = threading.Lock()

    # --- test controls ---

    @property
    def running(self) -> bool:
        """Whether a scheduler process exists there (the truth, reachable or not)."""
        self._leash()
        return self.state in (SchedulerState.RUNNING, SchedulerState.UNHEALTHY)

    def enforce_leash(self, clock: Callable[[], float]) -> None:
        """Model the leash: a leashed scheduler dies once ``clock()`` passes its latest deadline.

        ``clock`` is this node's own monotonic clock; only deadlines written in that frame (by
        this node's own controller) may be used with it.
        """
        self.leash_clock = clock

    def _leash(self) -> None:
        if self.leash_clock is None or not self.leashed or not self.deadlines:
            return
        if self.state is not SchedulerState.STOPPED and self.leash_clock() >= max(d for _k, d in self.deadlines):
            self.die()

    def run(self, count: int = 1) -> None:
        self.state = SchedulerState.RUNNING
        self.pids = tuple(next(_pids) for _ in range(count))

    def hang(self) -> None:
        """The scheduler process is there but stuck (e.g. SIGSTOP): UNHEALTHY."""
        if not self.pids:
            self.pids = (next(_pids),)
        self.state = SchedulerState.UNHEALTHY

    def die(self) -> None:
        self.state = SchedulerState.STOPPED
        self.pids = ()

    def _result(self) -> ProbeResult:
        return ProbeResult(
            self.node, self.state, self.pids, leashed=self.leashed and self.running, foreign=self.foreign
        )

    # --- the NodeRunner contract ---

    def probe(self) -> ProbeResult:
        with self._lock:
            self.probes += 1
            hook, self.on_probe = self.on_probe, None
        if hook is not None:
            hook()
        self._leash()
        if not self.reachable:
            detail = f"{self.node}: fake node unreachable"
            return ProbeResult(self.node, SchedulerState.UNKNOWN, detail=detail, unreachable=True)
        with self._lock:
            if self._pending > 0:
                self._pending -= 1
            if self._pending == 0:
                self._pending = -1
                self.run()
        return self._result()

    def start(self, deadline: float) -> None:
        with self._lock:
            self.starts += 1
            self.actions.append((self.node, "start"))
            self.deadlines.append(("start", deadline))
        if not self.reachable:
            raise NodeUnreachable(f"{self.node}: fake node unreachable")
        if self.start_error is not None:
            raise CommandFailed(f"{self.node}: {self.start_error}")
        if self.state.maybe_running or not self.comes_up:
            return
        if self.up_after_probes > 0:
            self._pending = self.up_after_probes
        else:
            self.run()

    def renew_leash(self, deadline: float) -> bool:
        with self._lock:
            if self.leash_fails:
                return False
            self.deadlines.append(("renew", deadline))
        return True

    def stop(self, grace: float | None = None) -> ProbeResult:
        with self._lock:
            self.stops += 1
            self.graces.append(grace)
            self.actions.append((self.node, "stop"))
        if not self.reachable:
            raise NodeUnreachable(f"{self.node}: fake node unreachable")
        if not self.stop_fails:
            self._pending = -1
            self.die()
        return self._result()
