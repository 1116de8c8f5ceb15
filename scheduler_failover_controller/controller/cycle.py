"""The controller cycle: one decision per cycle, returned as a sentence and logged.

Every controller guards its own node (S2 in docs/design.md): its scheduler may run only while
this node holds an unexpired placement (a ``time.monotonic()`` deadline from the server's expiry
less a margin). The active also probes every node (in self mode: reads its report), kills strays,
restarts in place and moves the scheduler, stop-before-start, while its lease has margin left.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..airflow_job import SchedulerJobReader, open_job_reader
from ..alerts import Alerter
from ..config import Config
from ..config.services import SCHEDULER
from ..event_hook import EventHook
from ..exceptions import CorruptRecord, MetastoreError
from ..metastore.base import ClusterState, ControllerInfo, Lease, Metastore
from ..metastore.events import EventKind
from ..nodes.base import NodeRunner
from ..ownership import ForeignLog
from ..probe_pool import ProbePool
from ..probe_result import ProbeResult, SchedulerState
from .blind import Blindness
from .colocation import Colocation, colocation_for
from .fencing import Fencing
from .fleet import Fleet
from .guard import Guard
from .health import Health
from .identity import Identity
from .incidents import Incidents
from .looks import doubts as implausible_logged
from .looks import record_looks
from .placing import Placing
from .recording import Recording
from .renewals import Renewals, unanswered
from .selfmode import NodeControl, SelfMode
from .shutdown import shut_down
from .starts import Starts
from .term import Role, Term

log = logging.getLogger("scheduler_failover_controller.controller")

PLEASE_REPORT = "INTERNAL ERROR (please report this with the log)"


class Controller(Recording, Placing, Guard):
    """One controller instance: its decision procedure, with its collaborators.

    ``term``: role, epoch, deadlines; ``health``: each node's last look and check streaks;
    ``incidents``: failure counts, backoffs, alerts; ``fencing``: what blocks a start; ``starts``,
    ``renewals``, ``identity`` (the registry row); ``selfmode``: this node's reconcile (self mode).
    The active controller's decision: ``Placing``; on the placed node and strays: ``Recovery``;
    a switchover's: ``Switchovers``; this node's self-fencing: ``Guard``; its events: ``Recording``
    (mixins); the exit: ``shut_down``.
    """

    def __init__(
        self,
        config: Config,
        store: Metastore,
        runners: dict[str, NodeRunner],
        alerter: Alerter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        pid: int | None = None,
        job_reader: SchedulerJobReader | None = None,
        fleet: Fleet | None = None,
        colocation: Colocation | None = None,
    ) -> None:
        self.config, self.store, self.runners = config, store, runners
        self.alerter = alerter or Alerter(config)
        self.hooks = EventHook(config)  # event_command, and the count of events by kind (``_event``)
        self.monotonic, self.sleep = monotonic, sleep
        self.host, self.pid = config.current_host, (os.getpid() if pid is None else pid)
        self.fleet = fleet if fleet is not None else Fleet(self.host, self.pid)
        self.holder = self.fleet.join(self)  # every service's controller of this process: one holder, one lease
        self.service, self.primary = config.service, config.service == SCHEDULER  # primary: keeps the registry row
        self.colocation = colocation or colocation_for(config.service_specs, config.service, store)
        self.term = Term(
            self.host,
            self.holder,
            store,
            config.lease_ttl,
            config.safety_margin,
            monotonic,
            lambda deadline: self.local.renew_leash(deadline),
            self.fleet.lease_calls,
        )
        self._shared = threading.Lock()  # the cycle writes ``paused`` and ``duplicate`` under it; renewals read them
        self.paused = False
        self.stopping = threading.Event()  # set on SIGTERM/SIGINT: a start wait gives up at once (handing over)
        self.store_answered = False  # whether the store has answered since this process started
        self._renewal_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="leash")
        self.renewals = Renewals(config, store, self.term, runners, self._renewal_pool)
        self.incidents = Incidents(config, self.alerter, self._event, monotonic, store)
        # Airflow's job table (scheduler_job_heartbeat_timeout), read by one of the checks
        self.jobs = job_reader if job_reader is not None else open_job_reader(config)
        self.health = Health(config, self.jobs, monotonic)
        self.fencing = Fencing(config, store, self.health, self._event, lambda: self.term.epoch)
        self.term.placing = self.fencing.started  # a placement naming a node ends a fence of it
        self.starts = Starts(
            config, self.term, self.renewals, self.fencing, self.incidents, runners, sleep, self.stopping
        )
        self.last_state: ClusterState | None = None
        self.last_probes: dict[str, ProbeResult] = {}
        self.cycles = 0
        # Another live controller registered as this host (the same current_host twice): set, this
        # controller stops acting and leaves the node's scheduler to that one (see check_identity).
        self.duplicate: ControllerInfo | None = None
        self.blind = Blindness(self.host, store, config.lease_ttl, monotonic)
        self.foreign = ForeignLog(log)  # logs each node's foreign schedulers once, when they appear
        self.identity = Identity(config, store, self.holder, self.pid, monotonic, sleep, self.stopping)
        self._pool = ThreadPoolExecutor(max_workers=min(16, max(1, len(config.nodes))), thread_name_prefix="probe")
        self._probes = ProbePool()  # a hung probe is abandoned: never a queue of probes behind it
        self.node_control = NodeControl(config, store)  # one value per cluster: refuse when it differs
        self.selfmode = SelfMode(self) if config.node_control == "self" else None  # other nodes: their reports

    # --- helpers ------------------------------------------------------------------------

    @property
    def ttl(self) -> float:
        return self.config.lease_ttl

    @property
    def margin(self) -> float:
        return self.config.safety_margin

    @property
    def local(self) -> NodeRunner:
        return self.runners[self.host]

    @property
    def role(self) -> Role:
        return self.term.role

    @property
    def epoch(self) -> int:
        return self.term.epoch

    @property
    def unreadable(self) -> str | None:
        """The record no valid write produces that the store last held (None: it reads fine)."""
        return self.term.unreadable

    def leads(self) -> bool:
        """Whether this controller may act as leader right now (lease held, margin left)."""
        return self.term.leads()

    @property
    def placement_deadline(self) -> float:
        """This node's placement deadline (local monotonic): its scheduler must be gone by then."""
        return self.term.placement_deadline

    @property
    def lookahead(self) -> float:
        """Longest time until the next renewal can land: one renewal interval plus its metastore calls."""
        return self.config.renew_interval + 2 * self.config.metastore_timeout

    def may_run_locally(self, lookahead: float = 0.0) -> bool:
        return self.term.may_run_locally(lookahead)

    def _look_local(self) -> ProbeResult:
        """Probe this node's scheduler; the heartbeat says whether it runs only leashed ones."""
        probe = self.local.probe()
        self._note_leashed(probe)
        self._note_foreign({self.host: probe})
        return probe

    def _note_leashed(self, probe: ProbeResult) -> None:
        """What the heartbeat says of this node's schedulers: from a look that saw them (else the last)."""
        self.blind.note(probe)  # and what the heartbeat says of them (``blind.leashed``)

    def _note_foreign(self, probes: dict[str, ProbeResult]) -> None:
        """Log foreign schedulers as they appear or go (a node not seen says nothing either way)."""
        for node, probe in probes.items():
            if probe.state is not SchedulerState.UNKNOWN:
                self.foreign.note(node, probe.foreign)

    def _heartbeat(self) -> None:
        """The registry row: the scheduler's controller writes it (one per host), for every service."""
        if not self.primary:
            return
        with self._shared:
            paused = self.paused
        self.identity.heartbeat(self.blind.role(self.role.value), paused, self.fleet.leashed())

    def other_live_controller(self) -> ControllerInfo | None:
        """Another controller that is alive and registered as this host, else None (at start-up)."""
        return self.identity.other_live_controller()

    def _check_identity(self) -> None:
        """Another controller with this current_host: stop acting, say so, leave the node to it."""
        other = self.identity.duplicate() if self.primary else None
        if other is not None:
            with self._shared:
                self.duplicate = other
            message = (
                f"another controller runs as {self.host!r} too (pid {other.pid}, holder {other.holder}): "
                f"current_host must be unique; this one (pid {self.pid}) stops"
            )
            log.error("%s", message)
            self._event(EventKind.DUPLICATE, message, node=self.host)

    # --- the cycle ----------------------------------------------------------------------

    def run_cycle(self) -> str:
        """Run one cycle and return its decision; never raises."""
        self.cycles += 1
        try:
            refusal = self.node_control.check()
            sentence = refusal or self._cycle()
            mine = self.selfmode if not refusal and not self.duplicate else None
            acted = mine.reconcile(self.paused) if mine else None
            return f"{sentence}; {acted}" if acted else sentence
        except Exception:
            log.exception(PLEASE_REPORT)
            return f"{PLEASE_REPORT}: the cycle failed; nothing more was done"

    def _cycle(self) -> str:
        t0 = self.monotonic()
        try:
            if self.unreadable is not None:
                self.store.read_state()  # still unreadable: take or renew no lease
            lease = None if self.role is not Role.ACTIVE and self.blind.abstains() else self.term.acquire()
            state = self.store.read_state()
        except CorruptRecord as exc:
            return self._unreadable(exc)
        except MetastoreError as exc:
            return self._metastore_down(exc)
        if self.unreadable is not None:
            log.warning("the metastore reads fine again (it held: %s); acting again", self.unreadable)
            self.term.unreadable = None
        self.store_answered = True
        self.last_state = state
        doubts = implausible_logged(state, self.config.nodes, self.ttl)
        with self._shared:
            self.paused = state.paused
        try:
            self._check_identity()
        except MetastoreError as exc:
            return self._metastore_down(exc)
        if self.duplicate is not None:
            other = self.duplicate.pid
            return f"stopping: another controller runs as {self.host} (pid {other}); current_host must be unique"
        if lease is not None:
            self._lead_term(lease, t0)
        else:
            if self.term.stand_by():
                log.warning("lost the leadership lease to %s (epoch %d)", state.lease.host, state.lease.epoch)
            self.renewals.drop_kept()
        self._heartbeat()
        if self.role is Role.ACTIVE and not state.paused:
            probes = self._probe_all()
            guard = self._guard(state, t0, probes[self.host])
            stepped = self.blind.step_down(state, self.holder, self.term.stand_by, self._event)
            if stepped:
                return f"{guard}; {stepped}" if guard else stepped
            if guard is None:
                return self._lead(state, probes)
            placement = state.placement
            if placement.valid and placement.node != self.host and self.leads():
                # A stray on this node was stopped: the placed node is still looked after.
                return f"{guard}; {self._lead(state, {**probes, self.host: self._look_local()})}"
            return guard
        guard = self._guard(state, t0, None)
        if guard:
            return guard
        if state.paused:
            return f"{self.role}: paused; acting on nothing"
        where = state.placement.node if state.placement.valid else "no node"
        leader = state.lease.host if state.lease.valid else "nobody"
        doubt = f"; not plausible: {'; '.join(doubts)}" if doubts else ""
        return f"standby: {leader} is active (epoch {state.lease.epoch}); scheduler placed on {where}{doubt}"

    def _lead_term(self, lease: Lease, t0: float) -> None:
        if self.term.hold(lease, t0):
            self.incidents.new_term()
            log.info("became active with epoch %d", lease.epoch)
            self.health.seed(self.store)
            self._event(EventKind.ELECTED, f"{self.host} became active (epoch {lease.epoch})", node=self.host)

    def _probe_all(self) -> dict[str, ProbeResult]:
        """Probe every node in parallel, and record what was seen under this term's epoch."""
        results = self.last_probes = self.health.probe_all(self.runners, self._probes)
        self._note_foreign(results)
        self._record(results)
        return results

    def _record(self, results: dict[str, ProbeResult]) -> None:
        record_looks(self.store, self.holder, self.epoch, self.host, results)

    # --- renewals, on their own clock ----------------------------------------------------

    def renew(self) -> bool:
        """Renew the lease and the placements this controller keeps, apart from the cycle: the renewal
        thread, every ``renew_interval``, so that no probe, start or stop (in the cycle) delays a
        renewal. True when the cycle should run now: the lease is free to take, or this one lost it."""
        with self._shared:
            duplicate, paused = self.duplicate, self.paused
        if duplicate is not None or self.node_control.refused:
            return False  # another controller has this identity (or the cluster another mode): renew nothing

        def requested(state: ClusterState) -> bool:  # an operator's request, or a lost node's placement run out
            drains = self.incidents.drained
            return unanswered(state, self.role, paused, drains) or self.renewals.lapses.due(state, self.role, paused)

        if self.selfmode is not None:  # this node's report goes with every renewal
            return self.selfmode.renewal(
                self._look_local, lambda look: self.renewals.renew(look, self._heartbeat), requested
            )
        return self.renewals.renew(self._look_local, self._heartbeat, requested)

    # --- shutdown -----------------------------------------------------------------------

    def shutdown(self) -> str:
        """Graceful exit: stop our node's scheduler (nobody would guard it), release everything."""
        return shut_down(self)
