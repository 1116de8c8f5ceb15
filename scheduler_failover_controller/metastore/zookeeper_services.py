"""Services beside the scheduler in the ZooKeeper metastore: one view of the store per service.

A service's own records sit under ``<root>/services/<NAME>/``, in the scheduler's formats:

    placement, switchover, observations, reports/<node>, failures/<node>

The scheduler's own stay where a release with one service keeps them (directly under the root),
so both releases can run side by side. Everything else is the fleet's and is read and written at
the root by every view: the leader znode and epoch counter (one lease, one epoch), the controller
registry, paused, node_control, drained, the clock and the event history (an event of a service
carries its name in a ``service`` member; none: the scheduler's).

A view is the store's own code with its service's paths: every fenced write of a view is the same
transaction as the scheduler's, checking the shared leader znode and epoch counter. It shares its
parent's kazoo client, session and state, so it is usable exactly while the parent is, and its
``close`` closes nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any

from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from ..exceptions import MetastoreError
from . import deadline as dl
from . import rows
from .base import SCHEDULER, Metastore
from .rows import service_name, service_name_problem
from .service_dump import dump_service
from .zookeeper import ZooKeeperMetastore
from .zookeeper_records import dump

#: A service's own records, with what a new one holds (the scheduler's formats).
SERVICE_RECORDS = {
    "placement": dump({"node": None, "epoch": 0, "version": 0, "ttl": 0}),
    "switchover": b"",
    "observations": b"{}",
    "reports": b"",
    "failures": b"",
}


class ZooKeeperServiceView(ZooKeeperMetastore):
    """Service ``name``'s view of ``parent`` (see the module docstring)."""

    def __init__(self, parent: ZooKeeperMetastore, name: str) -> None:
        # Not ZooKeeperSession.__init__: the client, the session and its state are the parent's.
        self._parent = parent
        self.service = name
        self.hosts, self.root, self.acl = parent.hosts, parent.root, parent.acl
        self.lease_ttl, self.timeout = parent.lease_ttl, parent.timeout
        self.client = parent.client  # the parent never replaces its client: closed, it restarts the same one
        self._warned_open = True  # an open ACL is the parent's warning, said once

    def _p(self, *parts: str) -> str:
        if parts and parts[0] in SERVICE_RECORDS:
            return "/".join([self.root, "services", self.service, *parts])
        return super()._p(*parts)

    def _prepare(self, d: dl.Deadline) -> tuple[str, object]:
        """The fleet's setup (once per client), then this service's znodes, each created if missing."""
        if not self._parent._ready:
            self._parent._setup(d)
        directory = self._p("services", self.service)
        try:
            for path in (self._p("services"), directory):  # the parents first: a create needs its parent
                with contextlib.suppress(NodeExistsError):  # created by another controller, or earlier
                    self._wait(self.client.create_async(path, b"", acl=self.acl))
            creates = [
                self.client.create_async(self._p(name), data, acl=self.acl) for name, data in SERVICE_RECORDS.items()
            ]
            for created in creates:
                with contextlib.suppress(NodeExistsError):
                    self._wait(created)
            self._check_acls([self._p("services"), directory, *(self._p(name) for name in SERVICE_RECORDS)])
            found, _ = self._get(self._p("schema"))
        except KazooTimeoutError:
            raise d.timeout() from None
        except (KazooException, OSError) as exc:
            raise MetastoreError(self._error(exc, f" during the setup of service {self.service}")) from None
        return f"znode {self._p('schema')}", found

    # --- the parent's connection and session ------------------------------------------------

    def _connect(self, d: dl.Deadline) -> None:
        self._parent._connect(d)

    def usable(self) -> bool:
        return self._parent.usable()

    def session(self) -> int | None:
        return self._parent.session()

    @property
    def session_timeout(self) -> float:
        return self._parent.session_timeout

    def close(self) -> None:
        """Nothing: the connection is the parent's."""

    # --- what is the fleet's, whichever view asks -------------------------------------------

    def for_service(self, name: str) -> Metastore:
        return self._parent.for_service(name)

    def clear(self) -> None:
        """Wipe every record, the fleet's and every service's (see Metastore.clear)."""
        self._parent.clear()

    def dump(self) -> dict[str, Any]:
        return self._parent.dump()


def service_view(parent: ZooKeeperMetastore, name: str) -> ZooKeeperServiceView:
    """Service ``name``'s view of ``parent``: one per name and store, set up on its first call."""
    problem = service_name_problem(name) if isinstance(name, str) else "is not text"
    if problem is not None:
        raise MetastoreError(f"service {name!r} {problem}")
    views: dict[str, ZooKeeperServiceView] = parent.__dict__.setdefault("_service_views", {})
    if name not in views:
        views[name] = ZooKeeperServiceView(parent, name)
    return views[name]


def stored_services(store: ZooKeeperMetastore) -> list[str]:
    """The services with records under ``<root>/services`` (called within a call's deadline)."""
    path = store._p("services")
    try:
        names = sorted(store._children(path))
    except NoNodeError:  # a store set up by a release without services
        return []
    found = [service_name(f"znode {path}/{name}", name, scheduler=True) for name in names]
    if SCHEDULER in found:  # the scheduler's records are at the root: no write makes this one
        raise rows.corrupt(f"znode {path}/{SCHEDULER}", "is not another service's", SCHEDULER)
    return found


def dump_services(store: ZooKeeperMetastore) -> list[dict[str, Any]]:
    """Each stored service's own records, as ``dump`` shows the scheduler's."""
    names = store._run(lambda: stored_services(store))
    return [dump_service(store.for_service(name), name) for name in names]
