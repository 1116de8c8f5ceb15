"""The active controller's side of ``sfc drain``: a scheduler placed on a drained node is moved off it
by a controlled switchover, to the best other node.

A mixin of ``Controller`` over ``Switchovers``. The move's outcome is recorded as a switchover
outcome carrying the drain request's id: ``sfc drain --wait`` waits for it as ``switchover --wait``
does. While no other node can take the scheduler, it stays where it runs (a drained node with the
only scheduler is better than none) and is moved as soon as one can.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..metastore.base import ClusterState
from ..probe_result import ProbeResult, SchedulerState
from .incidents import Incidents


class Draining:
    """``_drain``: move the scheduler off a drained node, or say why it stays for now."""

    incidents: Incidents

    if TYPE_CHECKING:  # Switchovers', which comes after this mixin

        def _switchover(
            self,
            state: ClusterState,
            probes: dict[str, ProbeResult],
            target: str,
            mode: str,
            decided: str | None = None,
        ) -> str: ...

    def _drain(self, state: ClusterState, probes: dict[str, ProbeResult], node: str) -> str | None:
        """The scheduler is placed on the drained ``node``: move it (the sentence), or None when it
        stays this cycle (then ``why_kept`` says why) and is looked after where it is."""
        target = self.incidents.pick_target(probes, exclude=node, prefer=None)
        if target is None:
            return None
        unknown = [n for n, r in probes.items() if n != target and r.state is SchedulerState.UNKNOWN]
        if unknown:  # a switchover would be refused: wait until every node can be seen
            return None
        request = replace(state, switchover=(target, "controlled"), switchover_id=state.drained.get(node, ""))
        return self._switchover(request, probes, target, "controlled", decided=f"{node} is drained")

    def why_kept(self, probes: dict[str, ProbeResult], node: str) -> str:
        """Why the scheduler stays on the drained ``node`` this cycle."""
        unknown = [n for n, r in probes.items() if n != node and r.state is SchedulerState.UNKNOWN]
        if unknown and self.incidents.pick_target(probes, exclude=node, prefer=None) is not None:
            return f"{node} is drained, but the scheduler stays until {', '.join(unknown)} can be seen"
        return f"{node} is drained, but no other node can take the scheduler ({self.incidents.why_no_target(probes)})"
