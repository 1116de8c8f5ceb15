"""The in-memory metastore of the unit tests.

``FakeStore`` keeps the contract written on :class:`Metastore` exactly (atomic compare-and-set,
epoch growth on a new term, fencing by holder and epoch), judging expiry by its own server
clock ``server_now``. That clock is a separate float: link it to a :class:`FakeClock` so that both
move together, then shift either one alone to make the controller and the server disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from scheduler_failover_controller.config.services import SCHEDULER
from scheduler_failover_controller.exceptions import MetastoreError
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
from tests.unit.fake_nodes import FakeNodes
from tests.unit.fake_reports import FakeReports
from tests.unit.fake_service import scoped_class
from tests.unit.fakes_clock import FakeClock

T = TypeVar("T")

# --- metastore ----------------------------------------------------------------------------


class FakeStore(FakeReports, FakeNodes, Metastore):
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
        self.drained: dict[str, str] = {}
        self.node_failures: dict[str, tuple[int, float]] = {}
        self.views: dict[str, FakeStore] = {}  # for_service: one view per service, kept

    def for_service(self, name: str) -> Metastore:
        """Service ``name``'s view (``tests.unit.fake_service``); the scheduler's is this store."""
        if name == SCHEDULER:
            return self
        if name not in self.views:
            self.views[name] = scoped_class(FakeStore)(self, name)
        return self.views[name]

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
            self.lease(),
            self.placement(),
            self.paused,
            self.server_now,
            self.switchover,
            self.switchover_id,
            dict(self.drained),
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
        self.drained.clear()
        self.node_failures.clear()
        # The epoch is kept: fencing tokens never go backwards.
        self.lease_holder, self.lease_host, self.lease_expires_at = None, None, 0.0
        self.placement_node, self.placement_expires_at = None, 0.0
        self.placement_version += 1
        self.paused = False
        self.switchover, self.switchover_id = None, ""

    def close(self) -> None:
        self.calls.append("close")
        self.closed = True
