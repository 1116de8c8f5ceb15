"""The active controller's decisions about the placed node: healthy, restarted in place, or moved; and strays.

A mixin of ``Controller`` (its methods use the controller's collaborators as they are): the
scheduler is placed on a node, and what that node's probe and the other nodes' show decides
whether it is kept, restarted where it is, moved to another node, or first freed of strays.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..config import Config
from ..metastore.base import ClusterState
from ..metastore.events import EventKind
from ..nodes.base import NodeRunner
from ..probe_result import ProbeResult, SchedulerState
from .colocation import Colocation
from .fencing import Fencing
from .incidents import Incidents
from .renewals import Renewals
from .starts import stop
from .term import MARGIN_TOO_SMALL, Term


class Recovery:
    """Looking after the placed node (``_placed``): keep, restart in place, move; stop strays."""

    config: Config
    host: str
    runners: dict[str, NodeRunner]
    monotonic: Callable[[], float]
    term: Term
    renewals: Renewals
    incidents: Incidents
    fencing: Fencing
    cycles: int
    colocation: Colocation
    _pool: ThreadPoolExecutor

    def leads(self) -> bool:
        raise NotImplementedError

    def _event(
        self, kind: EventKind, message: str, request_id: str = "", *, node: str = "", from_node: str = ""
    ) -> None:
        raise NotImplementedError

    def _start_on(self, node: str, probes: dict[str, ProbeResult]) -> tuple[bool, str]:
        raise NotImplementedError

    def _placed(self, state: ClusterState, probes: dict[str, ProbeResult], node: str, strays: list[str]) -> str:
        """The scheduler is placed on ``node``: its state first, then strays elsewhere.

        A stray that keeps coming back must not keep the placed node from being looked after
        (its placement renewed while it is healthy). Nothing starts while a stray may still run.
        """
        probe = probes.get(node) or ProbeResult(node, SchedulerState.UNKNOWN, detail="not a configured node")
        if probe.state is SchedulerState.RUNNING and len(probe.pids) == 1:
            healthy = self._healthy(node, probe)
            return f"{healthy}; {self._kill_strays(strays, probes, node)}" if strays else healthy
        if probe.state is SchedulerState.UNKNOWN:
            return self._unseen(state, probes, node, probe, strays)
        if strays:
            killed, after = self._stop_strays(strays, probes, node)
            if len(after) < len(strays) or any(r.state is not SchedulerState.STOPPED for r in after.values()):
                return f"{killed}; the scheduler on {node} is {probe.describe()}: not restarted while a stray may run"
            return f"{killed}; {self._restart_or_move(state, {**probes, **after}, node, probe)}"
        return self._restart_or_move(state, probes, node, probe)

    def _unseen(
        self, state: ClusterState, probes: dict[str, ProbeResult], node: str, probe: ProbeResult, strays: list[str]
    ) -> str:
        """The placed ``node`` cannot be seen: fence it and move at once, or wait for its placement to expire."""
        why_not = "strays first" if strays else None
        if why_not is None and self.config.fence_command:
            version = state.placement.version
            why_not = self.fencing.fence_placed(node, probe, self.cycles, version) if self.leads() else MARGIN_TOO_SMALL
            if why_not is None:
                return self._fenced_move(state, probes, node)
        waiting = (
            f"cannot see the scheduler node {node} ({probe.detail}); waiting "
            f"{state.placement.remaining:.1f}s for its placement to expire before moving it"
        )
        if self.config.fence_command and why_not is not None:
            waiting += f" (not fenced: {why_not})"
        return f"{waiting}; {self._kill_strays(strays, probes, node)}" if strays else waiting

    def _fenced_move(self, state: ClusterState, probes: dict[str, ProbeResult], node: str) -> str:
        """``fence_command`` fenced the placed ``node``: move the scheduler now, its placement not waited for.

        The placement written is a compare-and-set on the version read before the fence, under this
        term's epoch: a term lost meanwhile, or any other write since, refuses it.
        """
        target = self.incidents.pick_target(probes, exclude=node, prefer=None)
        if target is None:
            return f"fenced {node}, but no other node can take the scheduler ({self.incidents.why_no_target(probes)})"
        blocking = self.fencing.blocking(target, probes, self.cycles)
        if blocking:
            return f"fenced {node}; not moving the scheduler to {target}: one may still run on {', '.join(blocking)}"
        left = state.placement.remaining
        if self.term.place(state.placement, target) is None:
            return f"fenced {node}, but lost the race to move the scheduler to {target}; retrying next cycle"
        self.incidents.restarts = 0
        ok, detail = self._start_on(target, probes)
        message = (
            f"moved the scheduler from {node} to {target} without waiting {left:.1f}s for its placement "
            f"to expire: fence_command fenced {node}"
        )
        return self._moved(node, target, message, ok, detail)

    def _healthy(self, node: str, probe: ProbeResult) -> str:
        if node != self.host and self.config.node_control == "ssh":
            # Our own node's placement was renewed by _guard already; in self mode only a node's own
            # controller renews it. Keeps the placement (and the leash) of a node whose own controller
            # is not there alive; the renewal thread goes on renewing them between cycles.
            self.renewals.keep(node)
        self.incidents.healthy()
        return f"scheduler healthy on {node} ({probe.describe()})"

    def _kill_strays(self, strays: list[str], probes: dict[str, ProbeResult], keep: str) -> str:
        return self._stop_strays(strays, probes, keep)[0]

    def _stop_strays(
        self, strays: list[str], probes: dict[str, ProbeResult], keep: str
    ) -> tuple[str, dict[str, ProbeResult]]:
        """Stop the schedulers on ``strays``: (what was done, each one's probe after its stop)."""
        if not self.leads():
            return f"{MARGIN_TOO_SMALL} to act; not killing strays this cycle", {}
        results = list(self._pool.map(lambda n: stop(self.runners[n]), strays))
        parts = [f"{n} ({probes[n].describe()} -> {r.state.value})" for n, r in zip(strays, results)]
        message = f"killed stray scheduler(s) on {', '.join(parts)}; the scheduler belongs on {keep}"
        self._event(EventKind.KILL, message, node=",".join(strays))
        return message, dict(zip(strays, results))

    def _restart_or_move(
        self, state: ClusterState, probes: dict[str, ProbeResult], node: str, probe: ProbeResult
    ) -> str:
        """The scheduler on ``node`` is down or unhealthy: restart it in place within the budget, then move it."""
        limit = self.config.max_restart_attempts
        if not self.leads():
            return f"{MARGIN_TOO_SMALL} to act; not restarting or moving the scheduler this cycle"
        target: str | None = None
        if self.incidents.restarts >= limit:
            # The in-place budget is spent: move, or else retry in place once the node's backoff
            # is over (a scheduler that cannot start is not retried back to back for ever).
            if len(self.config.nodes) > 1:
                target = self.incidents.pick_target(probes, exclude=node, prefer=None)
            wait = self.incidents.until(node) - self.monotonic()
            if target is None and wait > 0:
                self._stays_with_leader(node)
                others = f"no other node can take it ({self.incidents.why_no_target(probes)})"
                if len(self.config.nodes) == 1:
                    others = "it has no other node"
                return (
                    f"scheduler down on {node} after {self.incidents.restarts} failed restarts and {others}; "
                    f"next try in place in {wait:.1f}s"
                )
        if target is None:
            return self._restart_in_place(probes, node, probe)
        return self._move(state, probes, node, target)

    def _stays_with_leader(self, node: str) -> None:
        """A colocated service that will not start beside its leader does not move without it: alert."""
        leader = self.colocation.leader
        if leader:
            service = self.config.service
            summary = f"{service} cannot start on {node} beside {leader}"
            why = f"after {self.incidents.restarts} failed restarts; colocated with {leader}, it does not move alone"
            self.incidents.alert(summary, f"{summary} {why}.")

    def _restart_in_place(self, probes: dict[str, ProbeResult], node: str, probe: ProbeResult) -> str:
        limit = self.config.max_restart_attempts
        if probe.state.maybe_running:  # unhealthy, or several schedulers on one node
            stop(self.runners[node])
        # A restart that comes up but dies again still counts: crash loops end in a move.
        self.incidents.restarts += 1
        n = self.incidents.restarts
        attempt = f"attempt {n}/{limit}" if n <= limit else f"attempt {n}, after its backoff"
        ok, detail = self._start_on(node, probes)
        # why it was restarted, e.g. "pid 5120 is stopped", a failed health check, a stale job heartbeat
        why = f" ({probe.detail})" if probe.detail else ""
        self.incidents.failed(node, f"scheduler was {probe.state.value}{why}; restart {'ok' if ok else detail}", not ok)
        if ok and n > limit:
            self.incidents.back_off(node)  # a crash loop past its budget: if it dies again, wait longer
        if ok:
            self._event(EventKind.RESTART, f"restarted the scheduler on {node} ({attempt}){why}: {detail}", node=node)
            return f"scheduler was {probe.state.value} on {node}{why}; restarted it in place ({attempt}, {detail})"
        return f"restart of the scheduler on {node} failed ({attempt}): {detail}"

    def _move(self, state: ClusterState, probes: dict[str, ProbeResult], node: str, target: str) -> str:
        """Move the scheduler off ``node`` to ``target``: stop-before-start, never both at once."""
        limit = self.config.max_restart_attempts
        blocking = self.fencing.blocking(
            target, {**probes, node: ProbeResult(node, SchedulerState.STOPPED)}, self.cycles
        )
        if blocking:
            return f"not moving the scheduler off {node}: one may still run on {', '.join(blocking)}"
        # Stop-before-start: the old node must be confirmed empty (a late start could still appear).
        stopped = stop(self.runners[node])
        if stopped.state is not SchedulerState.STOPPED:
            return f"cannot move the scheduler off {node}: could not confirm it stopped ({stopped.describe()})"
        if self.term.place(state.placement, target) is None:
            return f"lost the race to move the scheduler from {node} to {target}; retrying next cycle"
        self.incidents.restarts = 0
        probes = {**probes, node: stopped}
        ok, detail = self._start_on(target, probes)
        message = f"moved the scheduler from {node} to {target} after {limit} failed restarts"
        return self._moved(node, target, message, ok, detail)

    def _moved(self, node: str, target: str, message: str, ok: bool, detail: str) -> str:
        """A move from ``node`` to ``target`` is done (``ok``: its start too): the event, the alert, the sentence."""
        if not self.incidents.memory.strikes(node):  # it failed: not healthy for a failback until forgotten
            self.incidents.back_off(node)
        self._event(
            EventKind.MOVE, f"{message}: {'started' if ok else 'start failed'}: {detail}", node=target, from_node=node
        )
        if ok:
            self.incidents.alert(f"scheduler moved from {node} to {target}", f"{message}.\n{detail}", always=True)
            return f"{message} ({detail})"
        self.incidents.failed(target, detail, start_failed=True)
        self.incidents.alert(
            f"scheduler moved from {node} to {target}, but it failed to start", f"{message}.\n{detail}"
        )
        return f"{message}, but the start there failed: {detail}"
