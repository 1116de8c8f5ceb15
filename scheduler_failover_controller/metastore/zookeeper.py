"""ZooKeeper metastore through kazoo: the same contract as the SQL one.

Layout under ``metadata_service_zookeeper_root`` (itself under any chroot of the hosts string):

    leader        EPHEMERAL, JSON {holder, host}: the leadership lease IS this ZooKeeper session
    epoch         counter; its znode version is the epoch (one ``set`` per new term, in the same
                  transaction that creates ``leader``), so a stale leader's fenced writes fail
    placement     JSON {node, epoch, version, ttl}; expires ``ttl`` after its mtime (server clock)
    clock         rewritten to read the ZooKeeper leader's clock (its mtime) when expiry is judged
    paused, schema, observations (JSON), controllers/<host> (JSON, mtime = last seen),
    reports/<node> and node_control (self mode: :mod:`.zookeeper_reports`),
    events/e-NNNNNNNNNN (sequential, JSON; a service's carries its name as ``service``)
    services/<NAME>/...   each other service's own placement, switchover, observations, reports
                  and failures (:mod:`.zookeeper_services`); the rest is the fleet's, shared

Leadership is valid while the session is: a renewal is a round trip that confirms the leader
znode is still owned by *this* session (``ephemeralOwner``); its lease then lasts the negotiated
session timeout from before the call. While the connection is SUSPENDED nothing may act
(:meth:`usable` is False and every call fails); after a LOST session the old ephemeral node is
gone, so the controller contends again and gets a new epoch.

The session, and every request held to the call's deadline: :mod:`.zookeeper_session`.
The controller registry and the observations: :mod:`.zookeeper_registry`.
Wiping every record, the services' too (``clear``): :mod:`.zookeeper_wipe`.

A request that timed out is not withdrawn: kazoo has sent it, and a frozen or cut-off server may
still apply it later (on the same session, in order; a server the session has moved away from
rejects it). That is safe, because every write is built to be harmless whenever it lands:

* fenced writes (placement, observations) are transactions that check the epoch counter's version
  (= the epoch) and the leader znode, so in any later term they fail as a whole; in the same term
  the write is the leader's own, and it also checks the version of the znode it read, so it lands
  only if nothing changed since, exactly as a slow write would have;
* taking the lease creates the ephemeral leader znode in the same transaction that bumps the
  epoch from the version read: landing late, it makes this session the leader it asked to be,
  which the next renewal finds (the caller acted on nothing meanwhile);
* releasing the lease checks the epoch too, and deleting or clearing a record checks the version
  it read, so neither can touch a newer term's or a newer writer's node;
* the rest (heartbeat, events, pause and switchover requests) are records of what the caller
  said, whose late arrival only makes that statement late.

The caller was told "failed": a MetastoreError means the outcome is unknown, and the controller
re-reads rather than assume it was not applied. One thing a late apply can do that a quick one
cannot: a node's own renew_placement read an unexpired placement, and lands after it expired while
nothing else wrote it; the placement is then pushed out again for that node. Nobody else can have
been given the scheduler meanwhile (that would have changed the znode's version), so there is still
never more than one placement.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kazoo.exceptions import (
    BadVersionError,
    KazooException,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
    RuntimeInconsistency,
)
from kazoo.handlers.threading import KazooTimeoutError

from ..exceptions import MetastoreError
from . import deadline as dl
from . import rows
from .base import (
    EVENTS_KEPT,
    SCHEDULER,
    SCHEMA_VERSION,
    ClusterState,
    Event,
    Lease,
    Metastore,
    Placement,
    capped,
)
from .events import EventKind
from .zookeeper_records import (
    decode_event,
    decode_placement,
    decode_switchover,
    dump,
    field,
)
from .zookeeper_registry import ZooKeeperRegistry
from .zookeeper_reports import ZooKeeperReports
from .zookeeper_session import ZooKeeperSession
from .zookeeper_wipe import ZooKeeperWipe

T = TypeVar("T")


#: The record znodes under the root, with what a new one holds.
RECORDS = {
    "schema": str(SCHEMA_VERSION).encode(),
    "epoch": b"0",
    "placement": dump({"node": None, "epoch": 0, "version": 0, "ttl": 0}),
    "paused": b"0",
    "switchover": b"",
    "clock": b"",
    "observations": b"{}",
    "controllers": b"",
    "events": b"",
    "reports": b"",
    "node_control": b"",
    "drained": b"{}",
    "failures": b"",
    "services": b"",
}


class ZooKeeperMetastore(ZooKeeperRegistry, ZooKeeperReports, ZooKeeperWipe, ZooKeeperSession, Metastore):
    """The metastore in a ZooKeeper ensemble."""

    kind = "zookeeper"
    service = SCHEDULER  # the service whose records this store reads and writes (see for_service)

    def _run(self, fn: Callable[[], T]) -> T:
        """One public call (see Metastore._call): ``fn`` within the timeout."""
        with self._call():
            return fn()

    # --- the contract -------------------------------------------------------------------

    def _prepare(self, d: dl.Deadline) -> tuple[str, object]:
        """Connect, and create every znode that is missing (see Metastore.setup)."""
        self._connect(d)
        try:
            self._wait(self.client.ensure_path_async(self.root or "/", acl=self.acl))
            creates = [
                self.client.create_async(self._p(name), data, acl=self.acl) for name, data in RECORDS.items()
            ]  # sent at once: one round trip's wait, not nine
            for created in creates:
                with contextlib.suppress(NodeExistsError):  # created by another controller, or earlier
                    self._wait(created)
            self._check_acls([self.root or "/", *(self._p(name) for name in RECORDS)])
            found, _ = self._get(self._p("schema"))
        except KazooTimeoutError:
            raise d.timeout() from None
        except (KazooException, OSError) as exc:
            raise MetastoreError(self._error(exc, " during setup")) from None
        return f"znode {self._p('schema')}", found

    def _epoch(self) -> tuple[int, int]:
        """(epoch, znode version of the counter)."""
        _, stat = self._get(self._p("epoch"))
        return int(stat.version), int(stat.version)

    def _leader(self) -> tuple[dict[str, Any], Any] | None:
        """The leader znode's {holder, host, ttl}, checked, and its stat; None if there is none."""
        path = self._p("leader")
        try:
            data, stat = self._get(path)
        except NoNodeError:
            return None
        where = f"znode {path}"
        value = rows.json_object(where, data)
        leader = {
            "holder": rows.holder(f"{where} field holder", field(where, value, "holder")),
            "host": rows.optional_name(f"{where} field host", field(where, value, "host", None)),
            "ttl": rows.duration(f"{where} field ttl", field(where, value, "ttl", 0)),
        }
        return leader, stat

    def acquire_or_renew(self, holder: str, host: str, ttl: float) -> Lease | None:
        def go() -> Lease | None:
            t0 = time.monotonic()
            session = self.client.client_id[0] if self.client.client_id else None
            current = self._leader()
            if current is not None:
                data, stat = current
                if stat.ephemeralOwner != session or data.get("holder") != holder:
                    return None  # another session leads; its node lives exactly as long as it does
                epoch, _ = self._epoch()
                return self._lease(holder, host, epoch, t0, session)
            epoch, version = self._epoch()
            tx = self.client.transaction()
            tx.create(
                self._p("leader"), dump({"holder": holder, "host": host, "ttl": ttl}), acl=self.acl, ephemeral=True
            )
            tx.set_data(self._p("epoch"), str(epoch + 1).encode(), version=version)
            results = self._wait(tx.commit_async())
            if any(isinstance(r, Exception) for r in results):
                return None  # lost the race: someone else created the leader node or bumped the epoch
            return self._lease(holder, host, epoch + 1, t0, session)

        return self._run(go)

    def _lease(self, holder: str | None, host: str | None, epoch: int, t0: float, session: int | None) -> Lease:
        # The session outlives the round trip we just made by at least its timeout, counted
        # from before we sent it: report that as the lease's remaining time.
        remaining = self.session_timeout - (time.monotonic() - t0)
        return Lease(holder, host, epoch, remaining, 0.0, session)

    def session(self) -> int | None:
        """The current session's id: a lease taken on an earlier one ended with it."""
        client_id = self.client.client_id
        return client_id[0] if client_id else None

    def release(self, holder: str) -> bool:
        def go() -> bool:
            current = self._leader()
            session = self.client.client_id[0] if self.client.client_id else None
            if current is None or current[1].ephemeralOwner != session or current[0].get("holder") != holder:
                return False
            # Within this term only: landing late, the delete must not remove a newer term's node.
            _, epoch_version = self._epoch()
            tx = self.client.transaction()
            tx.check(self._p("epoch"), epoch_version)
            tx.delete(self._p("leader"), current[1].version)
            return self._commit(tx)

        return self._run(go)

    def _placement(self, now: float) -> tuple[Placement, Any]:
        path = self._p("placement")
        data, stat = self._get(path)
        return decode_placement(path, data, stat, now), stat

    def read_state(self) -> ClusterState:
        def go() -> ClusterState:
            now = self._server_now()
            current = self._leader()
            epoch, _ = self._epoch()
            if current is None:
                lease = Lease(None, None, epoch, 0.0, now)
            else:
                data, _ = current
                lease = Lease(data["holder"], data["host"], epoch, now + data["ttl"], now)
            placement, _ = self._placement(now)
            paused = rows.paused(f"znode {self._p('paused')}", self._get(self._p("paused"))[0])
            path = self._p("switchover")
            raw = self._get(path)[0]
            switchover, key = decode_switchover(path, raw)
            return ClusterState(lease, placement, paused, now, switchover, key, self.read_drained())

        return self._run(go)

    def _fence(self, tx: Any, holder: str, epoch: int) -> bool:
        """Add checks that ``holder`` still leads in ``epoch`` to ``tx``; False if it does not now."""
        current = self._leader()
        session = self.client.client_id[0] if self.client.client_id else None
        if current is None or current[0].get("holder") != holder or current[1].ephemeralOwner != session:
            return False
        if self._epoch()[0] != epoch:
            return False
        tx.check(self._p("leader"), current[1].version)
        tx.check(self._p("epoch"), epoch)  # the counter's version is the epoch
        return True

    def _commit(self, tx: Any) -> bool:
        """Commit ``tx``: False when one of its checks or versions lost a race, True when applied.

        In a failed transaction the operations before the failing one answer RolledBackError and
        those after it RuntimeInconsistency: neither is a failure of its own.
        """
        results = self._wait(tx.commit_async())
        failed = [r for r in results if isinstance(r, Exception)]
        lost = [r for r in failed if not isinstance(r, (RolledBackError, RuntimeInconsistency))]
        if any(not isinstance(r, (BadVersionError, NoNodeError, NodeExistsError)) for r in lost) or (
            failed and not lost
        ):
            raise MetastoreError(f"zookeeper transaction failed: {failed}")
        return not failed

    def set_placement(
        self, node: str | None, holder: str, epoch: int, expected_version: int, ttl: float
    ) -> Placement | None:
        def go() -> Placement | None:
            for _ in range(3):  # retry when only a renewal (not a change of node) moved the znode
                now = self._server_now()
                placement, stat = self._placement(now)
                if placement.version != expected_version:
                    return None
                tx = self.client.transaction()
                if not self._fence(tx, holder, epoch):
                    return None
                data = {"node": node, "epoch": epoch, "version": expected_version + 1, "ttl": ttl}
                tx.set_data(self._p("placement"), dump(data), version=stat.version)
                if self._commit(tx):
                    return self._placement(self._server_now())[0]
            return None

        return self._run(go)

    def renew_placement(
        self, node: str, ttl: float, holder: str | None = None, epoch: int | None = None
    ) -> Placement | None:
        def go() -> Placement | None:
            now = self._server_now()
            placement, stat = self._placement(now)
            if placement.node != node or not placement.valid:
                return None  # not ours, or expired: never revived
            tx = self.client.transaction()
            if holder is not None and epoch is not None and not self._fence(tx, holder, epoch):
                return None
            data = {"node": node, "epoch": placement.epoch, "version": placement.version, "ttl": ttl}
            tx.set_data(self._p("placement"), dump(data), version=stat.version)
            if not self._commit(tx):
                return None
            return self._placement(self._server_now())[0]

        return self._run(go)

    def release_placement(self, node: str) -> bool:
        def go() -> bool:
            placement, stat = self._placement(0.0)
            if placement.node != node:
                return False
            data = {"node": None, "epoch": placement.epoch, "version": placement.version + 1, "ttl": 0}
            try:
                self._set(self._p("placement"), dump(data), stat.version)
            except BadVersionError:
                return False
            return True

        return self._run(go)

    def set_paused(self, paused: bool) -> None:
        self._run(lambda: self._set(self._p("paused"), b"1" if paused else b"0"))

    def request_switchover(self, node: str, mode: str, request_id: str = "") -> None:
        self._run(lambda: self._set(self._p("switchover"), dump({"node": node, "mode": mode, "id": request_id})))

    def clear_switchover(self) -> None:
        self._run(lambda: self._set(self._p("switchover"), b""))

    def add_event(self, host: str, kind: EventKind, message: str, epoch: int = 0, request_id: str = "") -> None:
        def go() -> None:
            value = {
                "host": host,
                "kind": str(kind),
                "message": capped(message),
                "epoch": epoch,
                "request_id": request_id,
            }
            if self.service != SCHEDULER:  # the scheduler's events stay as a release with one service wrote them
                value["service"] = self.service
            created = self._wait(
                self.client.create_async(self._p("events", "e-"), dump(value), acl=self.acl, sequence=True)
            )
            sequence = int(created.rsplit("-", 1)[1])
            if sequence >= EVENTS_KEPT and sequence % 20 == 0:  # trim now and then, not on every event
                names = sorted(self._children(self._p("events")))
                deletes = [
                    self.client.delete_async(self._p("events", n)) for n in names[: max(0, len(names) - EVENTS_KEPT)]
                ]
                for deleted in deletes:
                    with contextlib.suppress(NoNodeError):
                        self._wait(deleted)

        self._run(go)

    def events(self, limit: int = 50) -> list[Event]:
        def go() -> list[Event]:
            names = sorted(self._children(self._p("events")))
            out = []
            for name in names[-min(limit, EVENTS_KEPT) :]:
                try:
                    data, stat = self._get(self._p("events", name))
                except NoNodeError:
                    continue
                out.append(decode_event(self._p("events", name), data, stat))
            return out

        return self._run(go)

    # --- services beside the scheduler (see zookeeper_services) --------------------------------

    def for_service(self, name: str) -> Metastore:
        if name == SCHEDULER:
            return self
        from .zookeeper_services import service_view

        return service_view(self, name)

    def dump(self) -> dict[str, Any]:
        """The fleet's records and each service's own ones (``services``), for ``metadata``."""
        from .zookeeper_services import dump_services

        found = super().dump()
        found["services"] = dump_services(self)
        return found
