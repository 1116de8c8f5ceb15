"""The active controller with no placement to look after: adopt a running scheduler, or place one.

A mixin of ``Controller`` over ``Recovery`` and ``Switchovers`` (its methods use the controller's
collaborators as they are): a switchover asked for goes first, a valid placement is ``Recovery``'s,
and otherwise a scheduler already running is adopted (strays stopped) or a node is picked, placed
and started.
"""

from __future__ import annotations

from dataclasses import replace

from ..metastore.base import ClusterState
from ..metastore.events import EventKind
from ..probe_result import ProbeResult, SchedulerState
from .blind import Blindness
from .colocation import Colocation
from .draining import Draining
from .fencing import Fencing
from .incidents import Incidents
from .recovery import Recovery
from .renewals import Renewals
from .selfmode import SelfMode
from .starts import Starts
from .switchover import Switchovers
from .term import Term


class Placing(Draining, Recovery, Switchovers):
    """The active controller's decision (``_lead``) and its starts (``_start_on``); a valid placement
    goes to ``Recovery``, a switchover to ``Switchovers``."""

    host: str
    term: Term
    renewals: Renewals
    incidents: Incidents
    fencing: Fencing
    starts: Starts
    blind: Blindness
    selfmode: SelfMode | None
    colocation: Colocation
    cycles: int

    @property
    def epoch(self) -> int:
        raise NotImplementedError

    def _event(
        self, kind: EventKind, message: str, request_id: str = "", *, node: str = "", from_node: str = ""
    ) -> None:
        raise NotImplementedError

    def _lead(self, state: ClusterState, probes: dict[str, ProbeResult]) -> str:
        prefix = f"active (epoch {self.epoch})"
        self.renewals.drop_kept()  # _healthy sets it again for a scheduler seen healthy this cycle
        placement = state.placement
        self.incidents.drained = frozenset(state.drained)  # never a target, and the scheduler moves off
        self.incidents.memory.expire()  # failed starts past failure_timeout
        self.incidents.failback.observe(probes, self.incidents)
        tie = self.colocation.read()
        barred = tie.barred(self.config.nodes)  # never a target (a switchover's neither)
        barred.update({n: "not among its nodes" for n in self.runners if n not in self.config.nodes})
        self.incidents.barred = barred
        if state.switchover is not None:
            return f"{prefix}: {self._switchover(state, probes, *state.switchover)}"
        if tie.follow is not None and placement.valid and placement.node not in (None, tie.follow):
            return f"{prefix}: {self._follow(state, probes, tie.leader, tie.follow)}"
        busy = [n for n, r in probes.items() if r.state in (SchedulerState.RUNNING, SchedulerState.UNHEALTHY)]
        if placement.valid and placement.node is not None:
            node = placement.node
            if node in state.drained:
                moved = self._drain(state, probes, node)
                if moved is not None:
                    return f"{prefix}: {moved}"
                kept = self._placed(state, probes, node, [n for n in busy if n != node])
                return f"{prefix}: {self.why_kept(probes, node)}; {kept}"
            back = self._failback(state, probes, node, busy)
            return f"{prefix}: {back or self._placed(state, probes, node, [n for n in busy if n != node])}"
        # No valid placement: adopt a running scheduler, or place one.
        if len(busy) > 1:
            keep = placement.node if placement.node in busy else busy[0]
            return f"{prefix}: {self._kill_strays([n for n in busy if n != keep], probes, keep)}"
        if len(busy) == 1 and busy[0] in self.incidents.barred:  # not to be adopted where it may not run
            keep = tie.follow or "no node yet"
            return f"{prefix}: {self._kill_strays(busy, probes, keep)} ({self.incidents.barred[busy[0]]})"
        if len(busy) == 1:
            node = busy[0]
            if self.term.place(state.placement, node) is None:
                return f"{prefix}: lost the race to adopt the scheduler on {node}; retrying next cycle"
            self._event(EventKind.ADOPT, f"adopted the scheduler already running on {node}", node=node)
            return f"{prefix}: adopted the scheduler already running on {node} ({probes[node].describe()})"
        sticky = None if self.config.failback else self.blind.preferred(placement.node)  # stay where it ran
        target = self.incidents.pick_target(probes, exclude=None, prefer=sticky)
        if target is None:
            return f"{prefix}: no scheduler runs and no node can take it now ({self.incidents.why_no_target(probes)})"
        blocking = self.fencing.blocking(target, probes, self.cycles)
        if blocking:  # not placed: no backoff for the target, it did nothing wrong
            message = f"no scheduler seen, but one may still run on {', '.join(blocking)}; not placing one on {target}"
            self.incidents.alert(
                "no scheduler runs: a start is blocked", f"{message}. Bring the node back or fence it."
            )
            return f"{prefix}: {message}"
        placed = self.term.place(state.placement, target)
        if placed is None:
            return f"{prefix}: lost the race to place the scheduler on {target}; retrying next cycle"
        ok, detail = self._start_on(target, probes)
        if ok:
            self._event(EventKind.START, f"started the scheduler on {target}: {detail}", node=target)
            return f"{prefix}: placed and started the scheduler on {target} ({detail})"
        self.incidents.failed(target, detail, start_failed=True)
        return f"{prefix}: placed the scheduler on {target} but its start failed: {detail}"

    def _failback(self, state: ClusterState, probes: dict[str, ProbeResult], node: str, busy: list[str]) -> str | None:
        """A controlled switchover back to a more preferred node healthy for ``failback_delay`` (None: none
        is due), only from a healthy scheduler with no stray beside it."""
        probe = probes.get(node)
        if busy != [node] or probe is None or probe.state is not SchedulerState.RUNNING or len(probe.pids) != 1:
            return None
        if any(r.state is SchedulerState.UNKNOWN for r in probes.values()):  # it would be refused
            return None
        target = self.incidents.failback.target(node)
        if target is None:
            return None
        self.incidents.failback.tried(target)
        request = replace(state, switchover=(target, "controlled"), switchover_id="")
        why = f"failback to {target}, more preferred than {node}"
        return self._switchover(request, probes, target, "controlled", decided=why)

    def _follow(self, state: ClusterState, probes: dict[str, ProbeResult], leader: str, node: str) -> str:
        """This service runs apart from the leader it is colocated with: a controlled switchover to the
        leader's node (stop before start). Never the other way: the leader is not moved for it."""
        request = replace(state, switchover=(node, "controlled"), switchover_id="")
        why = f"{self.config.service} follows {leader} to {node}"
        return self._switchover(request, probes, node, "controlled", decided=why)

    def _start_on(self, node: str, probes: dict[str, ProbeResult]) -> tuple[bool, str]:
        """Start the scheduler on ``node`` and wait until it is up: (whether it is, what happened)."""
        result = self.starts.start(node, probes, self.cycles)
        if self.selfmode is not None and node == self.host:
            self.selfmode.note_start()  # started (or tried) for its placement: not again by the reconcile
        return result
