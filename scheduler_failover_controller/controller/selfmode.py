"""Self mode: this controller makes its own node match the placement, and reports it (docs/design.md, 5a).

Every controller, active or not, runs :meth:`SelfMode.reconcile` once per cycle (after the S2
guard and, for the active, its decision) and writes its node's report; the renewal thread writes
one with every renewal (:meth:`SelfMode.renewal`), and wakes the cycle when the placement came to
this node or left it while something runs here. Nothing is started or stopped in that thread.

``seq`` and ``started_for`` are shared by the cycle and the renewal thread: both are read and
moved only under ``_lock``. A report's ``seq`` is taken before its look, so a look taken earlier
can never overwrite a later one in the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import Config
from ..exceptions import CommandFailed, MetastoreError, NodeUnreachable
from ..metastore.base import ClusterState, Metastore, Placement
from ..metastore.reports import NodeReport
from ..nodes.base import NodeRunner
from ..nodes.by_report import ReportRunner, report_probe, stale_after
from ..probe_result import ProbeResult, SchedulerState
from .health import seen_running
from .renewals import Renewals
from .starts import stop
from .succession import Succession, SuccessionRunner
from .term import Role, Term

if TYPE_CHECKING:
    from .cycle import Controller

log = logging.getLogger("scheduler_failover_controller.controller")


class SelfMode:
    """This node's side of self mode: its reconcile, its reports, its start bookkeeping."""

    def __init__(self, controller: Controller) -> None:
        config, store, term, runners = controller.config, controller.store, controller.term, controller.runners
        self.config: Config = config
        self.store: Metastore = store
        self.term: Term = term
        self.renewals: Renewals = controller.renewals
        self.host = config.current_host
        # A previous incarnation of this node's controller may run a scheduler this one cannot see:
        # until it is seen or its placements expired, this node's look is UNKNOWN (succession.py).
        self.succession = Succession(self.host, term.holder, config.lease_ttl)
        runners[self.host] = SuccessionRunner(runners[self.host], self.succession)
        self.local: NodeRunner = runners[self.host]
        self.sleep = sleep = controller.sleep
        self.stopping = stopping = controller.stopping
        self._lock = threading.Lock()
        self._seq = 0
        self._started_for = 0
        self._loaded = False
        # Every other node: its report, and orders as placement writes under this term's epoch.
        for node in config.nodes:
            if node != self.host:
                runners[node] = ReportRunner(node, config, store, term, sleep, stopping)

    # --- reports ----------------------------------------------------------------------------

    def _load(self, placement: Placement) -> None:
        """Go on from this node's stored report (a restarted controller keeps its seq and started_for),
        and from what the placement now bounds of a previous incarnation's."""
        if self._loaded:
            self.succession.placement(placement)
            return
        mine = next((r for r in self.store.reports() if r.node == self.host), None)
        self.succession.begin(mine, placement)
        with self._lock:
            if mine is not None:
                self._seq = max(self._seq, mine.seq)
                self._started_for = max(self._started_for, mine.started_for)
            self._loaded = True

    def _next(self) -> tuple[int, int]:
        """The next report's (seq, started_for), taken together before its look."""
        with self._lock:
            self._seq += 1
            return self._seq, self._started_for

    @property
    def started_for(self) -> int:
        with self._lock:
            return self._started_for

    def _started(self, version: int) -> None:
        with self._lock:
            self._started_for = max(self._started_for, version)

    def _write(self, taken: tuple[int, int], answers: int, probe: ProbeResult) -> None:
        seq, started_for = taken
        report = NodeReport(
            self.host,
            self.term.holder,
            probe.state.value,
            probe.pids,
            probe.leashed,
            tuple((f.pid, f.user) for f in probe.foreign),
            probe.detail,
            answers,
            started_for,
            seq,
        )
        try:
            if not self.store.write_report(report):
                log.debug("report %d of %s not written: a newer one is stored", seq, self.host)
        except MetastoreError as exc:
            self.term.failed(exc)
            log.warning("could not write this node's report: %s", exc)

    def note_start(self) -> None:
        """The active started (or tried) its own node's scheduler: that counts for its placement."""
        try:
            placement = self.store.read_state().placement
        except MetastoreError:
            return
        if placement.node == self.host:
            self._started(placement.version)

    # --- the renewal thread -----------------------------------------------------------------

    def renewal(
        self,
        look: Callable[[], ProbeResult],
        renew: Callable[[Callable[[], ProbeResult]], bool],
        requested: Callable[[ClusterState], bool] = lambda _state: False,
    ) -> bool:
        """One renewal round (``renew``) with this node's report written from its look. True when the
        cycle should run now: also when the placement came here with nothing running for it, or
        left while a scheduler runs here, or the state read holds a request (``requested``)."""
        placement: Placement | None = None
        asked = False
        try:
            state = self.store.read_state()
            placement = state.placement
            self._load(placement)
        except MetastoreError as exc:
            self.term.failed(exc)
            placement = None
        else:
            try:
                asked = requested(state) or self._placed_node_stopped(placement)
            except MetastoreError as exc:
                log.debug("renewal: cannot read the placed node's report: %s", exc)
        taken = self._next()
        seen: list[ProbeResult] = []

        def looked() -> ProbeResult:
            probe = look()
            seen.append(probe)
            return probe

        wake = renew(looked) or asked
        if placement is None or not seen:
            return wake
        probe = seen[-1]
        self._write(taken, placement.version, probe)
        mine = placement.valid and placement.node == self.host
        if mine and probe.state is SchedulerState.STOPPED and self.started_for < placement.version:
            return True
        return wake or (not mine and seen_running(probe))

    def _placed_node_stopped(self, placement: Placement) -> bool:
        """The active: the placed node, another, reports its scheduler stopped (its leash told its
        controller, which reported at once). The active's cycle decides now, not at its next poll."""
        node = placement.node
        if self.term.role is not Role.ACTIVE or not placement.valid or node is None or node == self.host:
            return False
        report = next((r for r in self.store.reports() if r.node == node), None)
        return report_probe(node, report, placement, stale_after(self.config)).state is SchedulerState.STOPPED

    # --- the cycle --------------------------------------------------------------------------

    def reconcile(self, paused: bool) -> str | None:
        """Make this node match the placement, and report. A sentence when it did something."""
        try:
            placement = self.store.read_state().placement
            self._load(placement)
        except MetastoreError as exc:
            self.term.failed(exc)
            return None  # the guard (S2) and the leash look after the node meanwhile
        taken = self._next()
        probe = self.local.probe()
        mine = placement.valid and placement.node == self.host
        if paused or probe.state is SchedulerState.UNKNOWN:
            self._write(taken, placement.version, probe)
            return None
        if mine and seen_running(probe):
            self._started(placement.version)  # a scheduler runs for it: adopted
        elif mine and self.started_for < placement.version and self.term.role is not Role.ACTIVE:
            return self._start(placement, taken)
        elif not mine and seen_running(probe):
            after = stop(self.local)
            self._write(self._next(), placement.version, after)
            where = placement.node if placement.valid else "no node"
            return (
                f"stopped the local scheduler ({probe.describe()} -> {after.state.value}): the placement is on {where}"
            )
        self._write(taken, placement.version, probe)
        return None

    def _start(self, placement: Placement, taken: tuple[int, int]) -> str:
        """Start this node's scheduler for ``placement``, after renewing it (conditional)."""
        version = placement.version
        renewed = self.term.renew_own(self.term.monotonic())
        if renewed is None or renewed.version != version:
            self._write(taken, version, self.local.probe())
            return f"placed here (version {version}), but the placement could not be renewed: not starting"
        self._started(version)  # an attempt counts: a failed start is the active's to judge
        self.renewals.starting.add(self.host)
        try:
            ok, detail = self._launch_and_wait()
        finally:
            self.renewals.starting.discard(self.host)
        self._write(self._next(), version, self.local.probe())
        if ok:
            return f"started the local scheduler for placement version {version} ({detail})"
        return f"the local start for placement version {version} failed: {detail}"

    def _launch_and_wait(self) -> tuple[bool, str]:
        try:
            self.local.start(self.term.placement_deadline)
        except (NodeUnreachable, CommandFailed) as exc:
            return False, str(exc)
        begin = self.term.monotonic()
        give_up = begin + self.config.scheduler_start_timeout
        while True:
            probe = self.local.probe()
            if probe.state is SchedulerState.RUNNING:
                return True, f"up after {self.term.monotonic() - begin:.1f}s, {probe.describe()}"
            if self.stopping.is_set() or self.term.monotonic() >= give_up or not self.term.may_run_locally():
                after = stop(self.local)
                return False, f"not up within {self.config.scheduler_start_timeout:g}s (cleanup: {after.state.value})"
            self.sleep(min(0.25, self.config.poll_frequency / 2))


class NodeControl:
    """The cluster's one ``node_control``: recorded by the first controller, refused when it differs."""

    def __init__(self, config: Config, store: Metastore) -> None:
        self.config = config
        self.store = store
        self._lock = threading.Lock()  # the cycle writes the refusal, the renewal thread reads it
        self._refused: str | None = None

    @property
    def refused(self) -> str | None:
        """Why this controller refuses to act (None: it may act), as the last check found."""
        with self._lock:
            return self._refused

    def _set(self, refused: str | None) -> None:
        with self._lock:
            self._refused = refused

    def check(self) -> str | None:
        """None when this controller may act; else the one line saying why not (logged once)."""
        try:
            recorded = self.store.claim_node_control(self.config.node_control)
        except MetastoreError:
            return self.refused  # the store is down: the cycle says so
        if recorded == self.config.node_control:
            if self.refused is not None:
                log.warning("the cluster's node_control is %s again, as configured: acting again", recorded)
            self._set(None)
            return None
        if self.refused is None:
            log.error(
                "refusing to act: this controller's node_control is %s but the cluster's is %s "
                "(change it while paused with 'node_control %s', see the README)",
                self.config.node_control,
                recorded,
                self.config.node_control,
            )
        refused = f"refusing to act: node_control is {self.config.node_control} here but {recorded} for the cluster"
        self._set(refused)
        return refused
