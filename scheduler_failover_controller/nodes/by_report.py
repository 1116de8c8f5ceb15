"""Another node in self mode (docs/design.md, section 5a): seen through its own controller's report,
commanded by placement writes under the active's epoch. Never a connection to the node.

Its probe is the node's last report: UNKNOWN when the report is older than :func:`stale_after`
or answers a placement version below the current one. A stop is a placement to nowhere (for the
placed node; a stray's own controller stops it anyway) and then a wait for the node's report
STOPPED answering it; a start is a placement to the node (a new version when the node already
started for the current one), then the caller waits for its report RUNNING as for any start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import Config
from ..exceptions import CommandFailed, MetastoreError
from ..metastore.base import Metastore, Placement
from ..metastore.reports import NodeReport
from ..probe_result import ForeignProcess, ProbeResult, SchedulerState
from .base import NodeRunner

if TYPE_CHECKING:
    from ..controller.term import Term


def stale_after(config: Config) -> float:
    """Seconds after which a node's report no longer says what runs there.

    Reports are written with every renewal (every R), each within two metastore calls (2T) of its
    look, and a third call's time is slack for a loaded host: 2R + 3T.
    """
    return 2 * config.renew_interval + 3 * config.metastore_timeout


def report_probe(node: str, report: NodeReport | None, placement: Placement, stale: float) -> ProbeResult:
    """What ``report`` says of ``node`` against the current ``placement``."""
    if report is None:
        return ProbeResult(node, SchedulerState.UNKNOWN, detail="no report from its controller", unreachable=True)
    if report.age > stale:
        detail = f"its controller's last report is {report.age:.1f}s old"
        return ProbeResult(node, SchedulerState.UNKNOWN, detail=detail, unreachable=True)
    if report.answers < placement.version:
        detail = f"its report answers placement version {report.answers}, not yet {placement.version}"
        return ProbeResult(node, SchedulerState.UNKNOWN, detail=detail)
    try:
        state = SchedulerState(report.state)
    except ValueError:
        return ProbeResult(node, SchedulerState.UNKNOWN, detail=f"its report says {report.state!r}")
    if (
        state is SchedulerState.STOPPED
        and placement.valid
        and placement.node == node
        and report.started_for < placement.version
    ):
        # placed there and not started for yet: its controller may be starting it right now
        return ProbeResult(
            node, SchedulerState.UNKNOWN, detail=f"placed there (version {placement.version}), not started yet"
        )
    if state.maybe_running and state is not SchedulerState.UNKNOWN and not (placement.valid and placement.node == node):
        # Its own controller stops it (or its leash did, by its placement's deadline): never adopted, and
        # no stop order is needed; until it reports STOPPED, it blocks a start by the fencing rule.
        detail = f"reports a scheduler ({report.state}) without a valid placement there; its own controller stops it"
        return ProbeResult(node, SchedulerState.UNKNOWN, detail=detail)
    foreign = tuple(ForeignProcess(pid, user) for pid, user in report.foreign)
    return ProbeResult(node, state, report.pids, report.detail, leashed=report.leashed, foreign=foreign)


class ReportRunner(NodeRunner):
    """A node that runs its own controller: its report, and orders as placement writes."""

    by_report = True

    def __init__(
        self,
        node: str,
        config: Config,
        store: Metastore,
        term: Term | None = None,
        sleep: Callable[[float], None] | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        super().__init__(node)
        self.config = config
        self.store = store
        self.term = term  # None: read only (the CLI)
        self.sleep = sleep
        self.stopping = stopping or threading.Event()
        self.stale = stale_after(config)
        self.report_age: float | None = None  # of the report the last probe read (None: none)

    def _look(self) -> tuple[ProbeResult, Placement, NodeReport | None]:
        state = self.store.read_state()
        report = next((r for r in self.store.reports() if r.node == self.node), None)
        self.report_age = report.age if report is not None else None
        return report_probe(self.node, report, state.placement, self.stale), state.placement, report

    def probe(self) -> ProbeResult:
        try:
            return self._look()[0]
        except MetastoreError as exc:
            return ProbeResult(self.node, SchedulerState.UNKNOWN, detail=f"cannot read its report: {exc}")

    def _orders(self) -> Term:
        if self.term is None:
            raise CommandFailed(f"{self.node}: only the active controller gives orders")
        return self.term

    def start(self, deadline: float) -> None:
        """Place the scheduler on the node (its own controller starts it); ``deadline`` is not ours
        to give: the node's controller takes its own from the renewal before its start."""
        term = self._orders()
        try:
            _probe, placement, report = self._look()
        except MetastoreError as exc:
            raise CommandFailed(f"cannot read the placement for a start on {self.node}: {exc}") from None
        started_for = report.started_for if report is not None else 0
        if placement.valid and placement.node == self.node and started_for < placement.version:
            return  # placed, and not started for yet: its controller does
        if term.place(placement, self.node) is None:
            raise CommandFailed(f"could not place the scheduler on {self.node} (epoch {term.epoch})")

    def stop(self, grace: float | None = None) -> ProbeResult:
        """Order the node's scheduler stopped and wait for its report saying so.

        ``grace`` is the node's own controller's to choose (it always stops gracefully).
        """
        term = self._orders()
        try:
            probe, placement, _report = self._look()
        except MetastoreError as exc:
            return ProbeResult(self.node, SchedulerState.UNKNOWN, detail=f"cannot read its report: {exc}")
        if placement.node == self.node:
            if term.place(placement, None) is None:
                return ProbeResult(self.node, SchedulerState.UNKNOWN, detail="could not write the stop order")
            probe = self.probe()  # a report from before the order proves nothing: it may have started since
        wait = self.config.scheduler_stop_timeout + self.stale
        until = term.monotonic() + wait
        while True:
            if probe.state is SchedulerState.STOPPED:  # answering the current version, >= the order's
                return probe
            if term.monotonic() >= until or self.stopping.is_set():
                return probe
            (self.sleep or _sleep)(min(0.2, self.config.renew_interval / 4))
            probe = self.probe()


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)
