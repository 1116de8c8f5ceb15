"""A fake metastore with service views, for the operations' tests (status, switchover, drain,
history, HTTP, metrics) until every backend has its own: ``ServicesStore.for_service(name)`` is a
``FakeStore`` whose lease, registry, pause, node_control, drained nodes, server clock and event log
are its parent's, and whose placement, switchover request, observations, reports and failed
starts are its own; its events are stamped with ``name``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from scheduler_failover_controller.config.services import SCHEDULER
from scheduler_failover_controller.metastore.base import Metastore
from scheduler_failover_controller.metastore.events import EventKind
from tests.unit.fakes_clock import FakeClock
from tests.unit.fakes_store import FakeStore

SHARED = (
    "server_now",
    "clock",
    "fail",
    "failing",
    "fail_delay",
    "calls",
    "hooks",
    "ready",
    "schema_version",
    "lease_holder",
    "lease_host",
    "lease_epoch",
    "lease_expires_at",
    "session_id",
    "paused",
    "registry",
    "_events",
    "node_control",
    "drained",
)


class ServicesStore(FakeStore):
    """A FakeStore whose ``for_service`` gives each service a view (made once, then kept)."""

    def __init__(self, server_now: float = 1_700_000_000.0, clock: FakeClock | None = None) -> None:
        super().__init__(server_now, clock)
        self.service_views: dict[str, ServiceView] = {}

    def for_service(self, name: str) -> Metastore:
        if name == SCHEDULER:
            return self
        if name not in self.service_views:
            self.service_views[name] = ServiceView(self, name)
        return self.service_views[name]


class ServiceView(FakeStore):
    """One service's view of a ``ServicesStore`` (see the module's docstring)."""

    parent: FakeStore

    def __init__(self, parent: FakeStore, name: str) -> None:
        object.__setattr__(self, "parent", parent)
        kept = {field: getattr(parent, field) for field in SHARED}
        super().__init__(parent.server_now)  # writes fresh shared fields through to the parent ...
        for field, value in kept.items():  # ... which get their own back
            setattr(parent, field, value)
        self.service = name

    def add_event(self, host: str, kind: EventKind, message: str, epoch: int = 0, request_id: str = "") -> None:
        super().add_event(host, kind, message, epoch, request_id)
        self._events[-1] = replace(self._events[-1], service=self.service)

    def close(self) -> None:
        """A view closes nothing."""


def _shared(field: str) -> Any:
    def get(self: ServiceView) -> Any:
        return getattr(self.parent, field)

    def put(self: ServiceView, value: Any) -> None:
        setattr(self.parent, field, value)

    return property(get, put)


for _field in SHARED:
    setattr(ServiceView, _field, _shared(_field))
