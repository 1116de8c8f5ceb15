"""In-memory fakes for unit tests: an injectable clock, a metastore and node runners.

``FakeStore`` keeps the contract written on :class:`Metastore` exactly (atomic compare-and-set,
epoch growth on a new term, fencing by holder and epoch), judging expiry by its own server
clock ``server_now``. That clock is a separate float: link it to a :class:`FakeClock` so that both
move together, then shift either one alone to make the controller and the server disagree.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from scheduler_failover_controller.airflow_job import SchedulerJobReader
from scheduler_failover_controller.alerts import Alerter
from scheduler_failover_controller.config import ENV_PREFIX, Config, load_config
from scheduler_failover_controller.controller.cycle import Controller
from scheduler_failover_controller.exceptions import CommandFailed, MetastoreError, NodeUnreachable
from scheduler_failover_controller.metastore.base import (
    EVENTS_KEPT,
    SCHEMA_VERSION,
    ClusterState,
    ControllerInfo,
    Event,
    Lease,
    Metastore,
    Observation,
    Placement,
    capped,
    foreign_rows,
)
from scheduler_failover_controller.metastore.events import EventKind, event_kind
from scheduler_failover_controller.metastore.reports import NodeReport
from scheduler_failover_controller.nodes.base import NodeRunner
from scheduler_failover_controller.probe_result import ForeignProcess, ProbeResult, SchedulerState
from tests.unit.fake_reports import FakeReports

T = TypeVar("T")

# --- time ---------------------------------------------------------------------------------


class FakeClock:
    """A monotonic clock that only moves when told to; ``sleep`` moves it instead of waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._followers: list[Callable[[float], None]] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move this clock, and every linked clock, forward by ``seconds``."""
        with self._lock:
            self.now += seconds
            followers = list(self._followers)
        for follow in followers:
            follow(seconds)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def link(self, follow: Callable[[float], None]) -> None:
        """Call ``follow(seconds)`` on every advance (e.g. a store's server clock)."""
        self._followers.append(follow)


# --- metastore ----------------------------------------------------------------------------


class FakeStore(FakeReports, Metastore):
    """The whole Metastore contract in memory, with its own server clock and injectable faults.

    Faults: ``fail = True`` makes every call raise MetastoreError; ``failing`` names the methods
    that raise; ``fail_delay`` seconds pass on the linked clock before a failing call raises (a
    store that times out). ``on(name, fn)`` runs ``fn`` just before the named method runs.
    """

    kind = "fake"

    def __init__(self, server_now: float = 1_700_000_000.0, clock: FakeClock | None = None) -> None:
        self.server_now = server_now
        self.clock = clock
        if clock is not None:
            clock.link(self.advance)
        self.fail = False
        self.failing: set[str] = set()
        self.fail_delay = 0.0
        self.calls: list[str] = []
        self.hooks: dict[str, list[tuple[Callable[[], object], bool]]] = {}
        self.closed = False
        self.ready = False
        self.schema_version = str(SCHEMA_VERSION)  # as a newer release may have marked it
        # leadership lease
        self.lease_holder: str | None = None
        self.lease_host: str | None = None
        self.lease_epoch = 0
        self.lease_expires_at = 0.0
        self.session_id: int | None = None  # as a ZooKeeper session: see expire_session
        # scheduler placement
        self.placement_node: str | None = None
        self.placement_epoch = 0
        self.placement_version = 0
        self.placement_expires_at = 0.0
        self.paused = False
        self.switchover: tuple[str, str] | None = None
        self.switchover_id = ""
        self.registry: dict[str, ControllerInfo] = {}
        self._observations: dict[str, Observation] = {}
        self._events: list[Event] = []
        self.node_reports: dict[str, NodeReport] = {}
        self.node_control: str | None = None

    # --- test controls ---

    def advance(self, seconds: float) -> None:
        """Move the server clock alone (linked clocks call this too)."""
        self.server_now += seconds

    def unreachable_for(self, fn: Callable[[], T]) -> T:
        """``fn()`` while every call fails: what one controller cut off from the store sees."""
        self.fail = True
        try:
            return fn()
        finally:
            self.fail = False

    def on(self, name: str, fn: Callable[[], object], once: bool = True) -> None:
        """Run ``fn`` just before the next (``once``) or every call of method ``name``."""
        self.hooks.setdefault(name, []).append((fn, once))

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        hooks = self.hooks.get(name, [])
        if hooks:
            self.hooks[name] = [(fn, once) for fn, once in hooks if not once]
            for fn, _once in hooks:
                fn()
        if self.fail or name in self.failing:
            if self.fail_delay and self.clock is not None:
                self.clock.advance(self.fail_delay)
            raise MetastoreError(f"fake metastore unreachable ({name})")

    def _leader_is(self, holder: str, epoch: int) -> bool:
        return self.lease_holder == holder and self.lease_epoch == epoch and self.lease_expires_at > self.server_now

    def lease(self) -> Lease:
        holder, host, epoch = self.lease_holder, self.lease_host, self.lease_epoch
        return Lease(holder, host, epoch, self.lease_expires_at, self.server_now, self.session_id)

    def expire_session(self) -> None:
        """As ZooKeeper expiring the session and the client connecting a new one at once: the lease
        (an ephemeral node of the old session) is gone."""
        self.session_id = (self.session_id or 0) + 1
        self.lease_holder = self.lease_host = None
        self.lease_expires_at = self.server_now

    def session(self) -> int | None:
        return self.session_id

    def placement(self) -> Placement:
        return Placement(
            self.placement_node,
            self.placement_epoch,
            self.placement_expires_at,
            self.placement_version,
            self.server_now,
        )

    def force_placement(self, node: str | None, ttl: float, epoch: int | None = None) -> Placement:
        """Write a placement directly (a test's set-up, not a controller's call)."""
        self.placement_node = node
        self.placement_epoch = self.lease_epoch if epoch is None else epoch
        self.placement_version += 1
        self.placement_expires_at = self.server_now + ttl
        return self.placement()

    def register(
        self, host: str, holder: str = "", role: str = "standby", paused: bool = False, leashed: bool = True
    ) -> None:
        """Put a controller in the registry directly (a controller elsewhere)."""
        holder = holder or f"{host}:1:fake"
        now = self.server_now
        self.registry[host] = ControllerInfo(host, holder, 1, "0", role, now, now, paused=paused, leashed=leashed)

    def kinds(self) -> list[EventKind | str]:
        return [e.kind for e in self._events]

    def events_of(self, kind: EventKind | str) -> list[Event]:
        return [e for e in self._events if e.kind == kind]

    # --- the contract ---

    def setup(self) -> None:
        self._enter("setup")
        self._check_schema(*self._prepare())
        self.ready = True

    def _prepare(self, d: object = None) -> tuple[str, object]:
        return "fake schema_version", self.schema_version

    def acquire_or_renew(self, holder: str, host: str, ttl: float) -> Lease | None:
        self._enter("acquire_or_renew")
        now = self.server_now
        still_mine = self.lease_holder == holder and self.lease_expires_at > now
        if self.lease_holder == holder or self.lease_holder is None or self.lease_expires_at <= now:
            if not still_mine:
                self.lease_epoch += 1
            self.lease_holder, self.lease_host, self.lease_expires_at = holder, host, now + ttl
        current = self.lease()
        return current if current.holder == holder else None

    def release(self, holder: str) -> bool:
        self._enter("release")
        if self.lease_holder == holder and self.lease_expires_at > self.server_now:
            self.lease_expires_at = self.server_now - 0.001
            return True
        return False

    def read_state(self) -> ClusterState:
        self._enter("read_state")
        return ClusterState(
            self.lease(), self.placement(), self.paused, self.server_now, self.switchover, self.switchover_id
        )

    def set_placement(
        self, node: str | None, holder: str, epoch: int, expected_version: int, ttl: float
    ) -> Placement | None:
        self._enter("set_placement")
        if self.placement_version != expected_version or not self._leader_is(holder, epoch):
            return None
        self.placement_node = node
        self.placement_epoch = epoch
        self.placement_version += 1
        self.placement_expires_at = self.server_now + ttl
        return self.placement()

    def renew_placement(
        self, node: str, ttl: float, holder: str | None = None, epoch: int | None = None
    ) -> Placement | None:
        self._enter("renew_placement")
        if self.placement_node != node or self.placement_expires_at <= self.server_now:
            return None
        if holder is not None and epoch is not None and not self._leader_is(holder, epoch):
            return None
        self.placement_expires_at = self.server_now + ttl
        return self.placement()

    def release_placement(self, node: str) -> bool:
        self._enter("release_placement")
        if self.placement_node != node:
            return False
        self.placement_node = None
        self.placement_version += 1
        self.placement_expires_at = self.server_now
        return True

    def heartbeat(self, info: ControllerInfo) -> None:
        self._enter("heartbeat")
        old = self.registry.get(info.host)
        started = old.started_at if old is not None else self.server_now
        self.registry[info.host] = replace(info, last_seen=self.server_now, started_at=started, server_now=0.0)

    def deregister(self, host: str, holder: str) -> None:
        self._enter("deregister")
        entry = self.registry.get(host)
        if entry is not None and entry.holder == holder:
            del self.registry[host]

    def controllers(self) -> list[ControllerInfo]:
        self._enter("controllers")
        return [replace(self.registry[h], server_now=self.server_now) for h in sorted(self.registry)]

    def record_observations(self, holder: str, epoch: int, observations: list[Observation]) -> bool:
        self._enter("record_observations")
        if not self._leader_is(holder, epoch):
            return False
        self._observations = {
            o.node: replace(
                o,
                detail=capped(o.detail),
                foreign=tuple(foreign_rows(o.foreign)),
                observed_at=self.server_now,
                server_now=0.0,
            )
            for o in observations
        }
        return True

    def observations(self) -> list[Observation]:
        self._enter("observations")
        return [replace(self._observations[n], server_now=self.server_now) for n in sorted(self._observations)]

    def set_paused(self, paused: bool) -> None:
        self._enter("set_paused")
        self.paused = paused

    def request_switchover(self, node: str, mode: str, request_id: str = "") -> None:
        self._enter("request_switchover")
        self.switchover, self.switchover_id = (node, mode), request_id

    def clear_switchover(self) -> None:
        self._enter("clear_switchover")
        self.switchover, self.switchover_id = None, ""

    def add_event(self, host: str, kind: EventKind, message: str, epoch: int = 0, request_id: str = "") -> None:
        self._enter("add_event")
        # Stored and read back as text, like every backend: a kind this release does not know stays as written.
        self._events.append(Event(self.server_now, host, event_kind(str(kind)), capped(message), epoch, request_id))
        del self._events[:-EVENTS_KEPT]

    def events(self, limit: int = 50) -> list[Event]:
        self._enter("events")
        return list(self._events[-limit:]) if limit > 0 else []

    def clear(self) -> None:
        self._enter("clear")
        self.registry.clear()
        self._observations.clear()
        self._events.clear()
        self.node_reports.clear()
        self.node_control = None
        # The epoch is kept: fencing tokens never go backwards.
        self.lease_holder, self.lease_host, self.lease_expires_at = None, None, 0.0
        self.placement_node, self.placement_expires_at = None, 0.0
        self.placement_version += 1
        self.paused = False
        self.switchover, self.switchover_id = None, ""

    def close(self) -> None:
        self.calls.append("close")
        self.closed = True


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


# --- config and alerts --------------------------------------------------------------------

NODES = ("n1", "n2", "n3")
TEST_HOME = "/nonexistent/sfc-unit-tests"  # never created: load_config only names paths in it
DEFAULTS: dict[str, object] = {
    "node_control": "ssh",  # the fakes' runners reach every node; self mode's tests say so
    "poll_frequency": 1,
    "lease_ttl": 5,
    "metastore_timeout": 0.5,
    "scheduler_start_timeout": 3,
    "max_restart_attempts": 3,
    "retry_count_before_alerting": 5,
    # Never connected (the tests use FakeStore); a shared URL because the nodes are separate hosts.
    "metadata_service_sql_conn": "mysql+pymysql://sfc@metastore.invalid/sfc",
}


def make_config(host: str = "n1", nodes: Iterable[str] = NODES, **settings: object) -> Config:
    """A validated Config built by ``load_config`` from ``AIRFLOW__SCHEDULER_FAILOVER__*`` variables.

    Defaults: nodes n1,n2,n3, poll_frequency 1, lease_ttl 5, metastore_timeout 0.5,
    scheduler_start_timeout 3 (any key of config.KEYS can be overridden).
    """
    values = {**DEFAULTS, **settings, "scheduler_nodes_in_cluster": ",".join(nodes), "current_host": host}
    env = {"AIRFLOW_HOME": TEST_HOME}
    env.update({ENV_PREFIX + key.upper(): str(value) for key, value in values.items()})
    return load_config(None, env=env, hostname=lambda: host)


class RecordingAlerter(Alerter):
    """Records alerts instead of sending them."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.sent: list[tuple[str, str]] = []

    def notify(self, summary: str, body: str) -> None:
        self.sent.append((summary, body))

    @property
    def summaries(self) -> list[str]:
        return [summary for summary, _body in self.sent]


# --- a small cluster: shared store, clock and runners; one controller per host -------------


@dataclass
class Cluster:
    """Nodes with fake runners, one fake store and one clock; ``controller(host)`` adds a controller."""

    nodes: tuple[str, ...] = NODES
    server_now: float = 1_700_000_000.0
    settings: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clock = FakeClock()
        self.store = FakeStore(self.server_now, clock=self.clock)
        self.actions: list[tuple[str, str]] = []
        self.runners: dict[str, FakeRunner] = {n: FakeRunner(n, actions=self.actions) for n in self.nodes}
        self.controllers: dict[str, Controller] = {}
        self.alerters: dict[str, RecordingAlerter] = {}

    def controller(
        self,
        host: str = "n1",
        *,
        clock_offset: float = 0.0,
        job_reader: SchedulerJobReader | None = None,
        **settings: object,
    ) -> Controller:
        """A controller on ``host``; ``clock_offset`` shifts its monotonic clock (another host's);
        ``job_reader`` stands in for Airflow's job table (with ``scheduler_job_heartbeat_timeout``)."""
        config = make_config(host, self.nodes, **{**self.settings, **settings})
        alerter = RecordingAlerter(config)
        clock = self.clock

        def monotonic() -> float:
            return clock.monotonic() + clock_offset

        runners: dict[str, NodeRunner] = dict(self.runners)
        controller = Controller(
            config,
            self.store,
            runners,
            alerter,
            monotonic=monotonic,
            sleep=clock.sleep,
            pid=len(self.controllers) + 1,
            job_reader=job_reader,
        )
        self.controllers[host] = controller
        self.alerters[host] = alerter
        return controller

    def running(self) -> list[str]:
        """The nodes where a scheduler process exists (the truth)."""
        return [n for n, r in self.runners.items() if r.running]

    def close(self) -> None:
        for controller in self.controllers.values():
            controller._pool.shutdown(wait=True)
            controller._renewal_pool.shutdown(wait=True)
