"""A start of the scheduler on one node, under a leash, and the wait until it is up.

Before anything runs, the start is fenced twice: no other node may still run a scheduler this
controller cannot stop (``fencing``), and the placement is renewed under this term's epoch, so
the store refuses a start by a controller that lost its term. The leash is given the placement's
deadline; while the scheduler comes up, the lease and the placement are renewed every
``renew_interval``, and the start is undone when either is lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..airflow_fence import open_airflow_fence
from ..config import Config
from ..exceptions import CommandFailed, MetastoreError, NodeUnreachable
from ..nodes.base import NodeRunner
from ..probe_result import ProbeResult, SchedulerState
from .fencing import Fencing
from .incidents import Incidents
from .renewals import Renewals
from .term import MARGIN_TOO_SMALL, Term


def stop(runner: NodeRunner, grace: float | None = None) -> ProbeResult:
    """Stop ``runner``'s scheduler (``grace``: see ``NodeRunner.stop``); UNKNOWN when that failed."""
    try:
        return runner.stop(grace)
    except (NodeUnreachable, CommandFailed) as exc:
        return ProbeResult(runner.node, SchedulerState.UNKNOWN, detail=str(exc))


class Starts:
    """Starts of the scheduler, each fenced, renewed while it comes up, and undone when it does not."""

    def __init__(
        self,
        config: Config,
        term: Term,
        renewals: Renewals,
        fencing: Fencing,
        incidents: Incidents,
        runners: dict[str, NodeRunner],
        sleep: Callable[[float], None],
        stopping: threading.Event,
    ) -> None:
        self.config = config
        self.term = term
        self.renewals = renewals
        self.fencing = fencing
        self.incidents = incidents
        self.runners = runners
        self.sleep = sleep
        self.stopping = stopping  # set on SIGTERM/SIGINT: a wait gives up at once
        self.airflow = open_airflow_fence(config)  # airflow_job_fencing: Airflow learns what was proven empty

    def start(self, node: str, probes: dict[str, ProbeResult], cycle: int) -> tuple[bool, str]:
        """Start the scheduler on ``node`` and wait until it is up, renewing our leases meanwhile."""
        blocking = self.fencing.blocking(node, probes, cycle)
        if blocking:
            return False, f"not starting: a scheduler may still run on {', '.join(blocking)}"
        if self.airflow is not None:
            self.airflow.before_start(node, probes)  # before the new scheduler's first adoption of orphans
        # A stop just before (remote, with its grace) may have used up much of the lease: renew
        # it first, so that the start is judged against a fresh deadline.
        if not self.term.renew_lease():
            return False, "not starting: lost the leadership lease"
        if not self.term.leads():
            return False, f"not starting: {MARGIN_TOO_SMALL}"
        # Fence the start by our epoch at the store as well: a restart in place writes nothing
        # else that the store could refuse, and our deadline alone trusts the server's clock rate.
        if getattr(self.runners[node], "by_report", False):
            return self._order_and_wait(node)  # self mode: the node's own controller starts and renews it
        self.renewals.starting.add(node)
        try:
            return self._start_and_wait(node)
        finally:
            self.renewals.starting.discard(node)

    def _order_and_wait(self, node: str) -> tuple[bool, str]:
        """Place the scheduler on ``node`` (self mode) and wait for its report RUNNING, renewing the lease
        only: the placement is renewed by the node's own controller, never by this one."""
        runner = self.runners[node]
        self.fencing.started(node)  # before: a start whose answer is lost may still happen
        try:
            runner.start(self.term.placement_deadline)
        except (NodeUnreachable, CommandFailed) as exc:
            return False, str(exc)
        return self._wait(node, runner, lambda: self.term.renew_lease() and self.term.readable())

    def _start_and_wait(self, node: str) -> tuple[bool, str]:
        try:
            mine, deadline = self.term.renew_placement(node)
        except MetastoreError as exc:
            return False, f"not starting: cannot confirm the placement on {node}: {exc}"
        if mine is None and node == self.term.host and self.term.leash_behind():
            return False, f"not starting: the leash deadline of {node} cannot be written"
        if mine is None:
            return False, f"not starting: the placement on {node} is no longer ours (epoch {self.term.epoch})"
        runner = self.runners[node]
        self.fencing.started(node)  # before: a start whose answer is lost may still happen
        try:
            runner.start(deadline)  # under a leash holding that deadline
        except (NodeUnreachable, CommandFailed) as exc:
            return False, str(exc)
        return self._wait(node, runner, lambda: self.renewals.while_waiting(node))

    def _wait(self, node: str, runner: NodeRunner, renew: Callable[[], bool]) -> tuple[bool, str]:
        """Wait until ``runner``'s scheduler is up, calling ``renew`` every renew_interval (False: give up)."""
        start = self.term.monotonic()
        give_up = start + self.config.scheduler_start_timeout
        next_renewal = start + self.config.renew_interval
        step = min(0.25, self.config.poll_frequency / 2)
        while True:
            probe = runner.probe()
            if probe.state is SchedulerState.RUNNING:
                self.incidents.started()
                return True, f"up after {self.term.monotonic() - start:.1f}s, {probe.describe()}"
            now = self.term.monotonic()
            if self.stopping.is_set():
                after = stop(runner)
                return False, f"gave up the start to shut down (cleanup: {after.state.value})"
            if now >= give_up:
                after = stop(runner)  # it could still come up later: make sure it does not
                return False, f"not up within {self.config.scheduler_start_timeout:g}s (cleanup: {after.state.value})"
            if now >= next_renewal:
                next_renewal = now + self.config.renew_interval
                if not renew():
                    stop(runner)
                    if self.term.unreadable is not None:
                        return (
                            False,
                            f"the metastore became unreadable while waiting ({self.term.unreadable}); stopped it",
                        )
                    return False, "lost the lease while waiting for the scheduler to come up; stopped it"
            self.sleep(step)
