"""The active controller's side of ``sfc switchover``: a planned move, carried out and its outcome recorded.

A mixin of ``Controller`` (its method uses the controller's collaborators as they are).
"""

from __future__ import annotations

import logging

from ..exceptions import MetastoreError
from ..metastore.base import ClusterState, Metastore
from ..metastore.events import EventKind
from ..nodes.base import NodeRunner
from ..probe_result import ProbeResult, SchedulerState
from .incidents import Incidents
from .starts import stop
from .term import MARGIN_TOO_SMALL, Term

log = logging.getLogger("scheduler_failover_controller.controller")


class Switchovers:
    """A pending switchover request (``_switchover``): stop every other scheduler, then start the target."""

    store: Metastore
    runners: dict[str, NodeRunner]
    term: Term
    incidents: Incidents

    def leads(self) -> bool:
        raise NotImplementedError

    def _event(
        self, kind: EventKind, message: str, request_id: str = "", *, node: str = "", from_node: str = ""
    ) -> None:
        raise NotImplementedError

    def _start_on(self, node: str, probes: dict[str, ProbeResult]) -> tuple[bool, str]:
        raise NotImplementedError

    def _switchover(
        self,
        state: ClusterState,
        probes: dict[str, ProbeResult],
        target: str,
        mode: str,
        decided: str | None = None,
    ) -> str:
        """A planned move requested by ``sfc switchover``: stop every other scheduler, then start.

        ``controlled`` gives the old scheduler SIGTERM and up to ``scheduler_stop_timeout`` to exit
        (or runs the stop command); ``forced`` kills it at once. Either way it is confirmed gone
        before the new one starts. The outcome's event carries the request's id: the CLI that asked waits
        for it and judges the outcome by its kind alone. ``decided``: why the controller moved it by
        itself (a drain, a failback), put before the outcome; None: the store's request, cleared.
        """

        old = state.placement.node if state.placement.valid else None

        def finish(outcome: EventKind, message: str) -> str:
            return self._switchover_outcome(state, target, decided, outcome, message)

        refused = EventKind.SWITCHOVER_REFUSED
        if target not in self.runners:
            return finish(refused, f"refused the switchover to {target}: not in scheduler_nodes_in_cluster")
        barred = self.incidents.barred.get(target)
        if barred:
            return finish(refused, f"refused the switchover to {target}: {barred}")
        placement, probe = state.placement, probes[target]
        if placement.valid and placement.node == target and probe.state is SchedulerState.RUNNING:
            message = f"switchover to {target}: the scheduler already runs there ({probe.describe()})"
            return finish(EventKind.SWITCHOVER_DONE, message)
        if probe.state is not SchedulerState.STOPPED:
            return finish(refused, f"refused the switchover to {target}: its scheduler is {probe.describe()}")
        others = [n for n, r in probes.items() if n != target and r.state is not SchedulerState.STOPPED]
        unknown = [n for n in others if probes[n].state is SchedulerState.UNKNOWN]
        if unknown:
            return finish(refused, f"refused the switchover to {target}: cannot see {', '.join(unknown)}")
        if not self.leads():
            return f"{MARGIN_TOO_SMALL}; the switchover to {target} waits"
        grace = 0.0 if mode == "forced" else None
        for node in others:
            after = stop(self.runners[node], grace)
            if after.state is not SchedulerState.STOPPED:
                return f"switchover to {target}: the scheduler on {node} is still {after.describe()}; retrying"
            probes = {**probes, node: after}
        if self.term.place(placement, target) is None:
            return f"lost the race to place the scheduler on {target} for the switchover; retrying"
        ok, detail = self._start_on(target, probes)
        if not ok:
            self.incidents.failed(target, detail, start_failed=True)
        result = "started" if ok else "its start failed"
        return finish(
            EventKind.SWITCHOVER_DONE if ok else EventKind.SWITCHOVER_FAILED,
            f"{mode} switchover from {old or 'nowhere'} to {target}: stopped {others or 'nothing'}, {result}: {detail}",
        )

    def _switchover_outcome(
        self, state: ClusterState, target: str, decided: str | None, outcome: EventKind, message: str
    ) -> str:
        """Record a switchover's outcome, then clear the store's request (none when ``decided``)."""
        old = state.placement.node if state.placement.valid else None
        message = message if decided is None else f"{decided}: {message}"
        # The outcome first: a CLI of a release without ids reads the history as soon as the
        # request is gone, and would find no outcome between the two writes. (A request whose
        # clear fails is carried out again: a second outcome, never none.)
        self._event(outcome, message, state.switchover_id, node=target, from_node=old or "")
        try:
            if decided is None:
                self.store.clear_switchover()
        except MetastoreError as exc:
            log.warning("could not clear the switchover request: %s", exc)
        return message
