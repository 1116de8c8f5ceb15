"""A service's view of the in-memory metastore (``FakeStore.for_service``), with base.py's contract.

The view keeps its own placement, switchover request (and id), observations, node reports and
failed starts, and stamps its events with the service's name; the lease, the registry, the paused
flag, ``node_control``, the drained nodes, the history, the server clock and the injected faults
are its parent's, shared with every view. Closing a view closes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from scheduler_failover_controller.metastore.base import EVENTS_KEPT, Event, Metastore, Observation, capped
from scheduler_failover_controller.metastore.events import EventKind, event_kind
from scheduler_failover_controller.metastore.reports import NodeReport

if TYPE_CHECKING:
    from tests.unit.fakes_store import FakeStore

#: the parent's fields a view reads and writes as they are (the fleet's, and the test controls)
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
    "node_control",
    "drained",
    "_events",
)


def _shared(name: str) -> property:
    def get(self: Any) -> Any:
        return getattr(self.parent, name)

    def put(self: Any, value: Any) -> None:
        setattr(self.parent, name, value)

    return property(get, put)


def scoped_class(base: type[FakeStore]) -> Callable[[FakeStore, str], FakeStore]:
    """The view class over ``base``: its own records, the fleet's shared through properties."""

    class ServiceView(base):  # type: ignore[valid-type,misc]
        def __init__(self, parent: FakeStore, service: str) -> None:  # no base __init__: it would reset the fleet's
            self.parent = parent
            self.service = service
            self.closed = False
            self.placement_node: str | None = None
            self.placement_epoch = 0
            self.placement_version = 0
            self.placement_expires_at = 0.0
            self.switchover: tuple[str, str] | None = None
            self.switchover_id = ""
            self._observations: dict[str, Observation] = {}
            self.node_reports: dict[str, NodeReport] = {}
            self.node_failures: dict[str, tuple[int, float]] = {}

        def for_service(self, name: str) -> Metastore:
            return self.parent.for_service(name)

        def add_event(self, host: str, kind: EventKind, message: str, epoch: int = 0, request_id: str = "") -> None:
            self._enter("add_event")
            at, text = self.server_now, capped(message)
            event = Event(at, host, event_kind(str(kind)), text, epoch, request_id, self.service)
            self._events.append(event)
            del self._events[:-EVENTS_KEPT]

        def close(self) -> None:
            self.closed = True  # the parent's connection stays open

    for name in SHARED:
        setattr(ServiceView, name, _shared(name))
    return ServiceView
