"""The metastore contract: leadership lease, scheduler placement and cluster records.

Every implementation keeps the same promises, written once on the abstract methods below.
Times that decide safety (lease and placement expiry) are the metastore server's clock,
returned together with the server's "now" so callers can turn them into local monotonic
deadlines without ever comparing two hosts' clocks.

Error channels: a lost race returns ``None``/``False``; a store that cannot be reached or does
not answer within ``metastore_timeout`` raises :class:`MetastoreError`, always within that timeout
(plus scheduling slack) by the client's clock, whatever the server or the network does (see
:mod:`.deadline`; :class:`~.deadline.MetastoreTimeout` when the time ran out). A write that raised
has an unknown outcome: it may still have been applied, and callers must re-read rather than
assume it was not. Every fenced write and compare-and-set is built so that such a write is
harmless: it is evaluated against the server's current state whenever it lands.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import MetastoreError
from . import deadline as dl
from . import rows
from .events import EventKind
from .nodestate import NodeStateStore
from .reports import ReportStore

LEADER = "leader"
SCHEDULER = "scheduler"
EVENTS_KEPT = 1000
SCHEMA_VERSION = 1  # of every backend's records; a store marked newer is refused (see Metastore.setup)
TEXT_LIMIT = 1024  # characters of free text kept (a probe's detail, an event's message): the SQL column size


def capped(text: str) -> str:
    """``text`` cut to what a record keeps (:data:`TEXT_LIMIT`), so that no write fails on length."""
    return text[:TEXT_LIMIT]


FOREIGN_LIMIT = 8  # foreign processes kept per observation (a JSON list within TEXT_LIMIT)
USER_LIMIT = 32  # characters of a foreign process's user kept


def foreign_rows(foreign: tuple[tuple[int, str], ...]) -> list[tuple[int, str]]:
    """An observation's foreign processes as kept (JSON ``[[pid, user], ...]``), capped."""
    return [(pid, user[:USER_LIMIT]) for pid, user in foreign[:FOREIGN_LIMIT]]


@dataclass(frozen=True)
class Lease:
    """The leadership lease as the server saw it. ``epoch`` is the fencing token."""

    holder: str | None
    host: str | None
    epoch: int
    expires_at: float
    server_now: float
    #: The connection the lease lives on, where it lives on one (a ZooKeeper session): once the
    #: store's :meth:`Metastore.session` differs, this lease is gone whatever its time says.
    session: int | None = None

    @property
    def remaining(self) -> float:
        """Seconds of validity left, by the server's clock (negative when expired)."""
        return self.expires_at - self.server_now

    @property
    def valid(self) -> bool:
        return self.holder is not None and self.remaining > 0


@dataclass(frozen=True)
class Placement:
    """Which node should run the scheduler, written under leader ``epoch``.

    ``version`` grows on every change of node (the compare-and-set key); renewals only
    push ``expires_at``. A node may run the scheduler only while its placement is unexpired.
    """

    node: str | None
    epoch: int
    expires_at: float
    version: int
    server_now: float

    @property
    def remaining(self) -> float:
        return self.expires_at - self.server_now

    @property
    def valid(self) -> bool:
        return self.node is not None and self.remaining > 0


@dataclass(frozen=True)
class ClusterState:
    """One consistent read of what a cycle needs."""

    lease: Lease
    placement: Placement
    paused: bool
    server_now: float
    switchover: tuple[str, str] | None = None  # (target node, "controlled" | "forced") requested
    switchover_id: str = ""  # the pending request's id ('' when none, or asked by a release without ids)
    drained: dict[str, str] = field(default_factory=dict)  # drained node -> the id of the drain that asked


@dataclass(frozen=True)
class ControllerInfo:
    """A controller's registry entry."""

    host: str
    holder: str
    pid: int
    version: str
    role: str
    last_seen: float
    started_at: float
    server_now: float = 0.0
    # The paused flag this controller last acted on. Cut off from the metastore, it keeps acting
    # on it: a controller last seen paused does not fence its own node (see Controller).
    paused: bool = False
    # Whether this controller's local scheduler (if any) runs under the leash supervisor, by its own report.
    leashed: bool = False

    @property
    def age(self) -> float:
        return max(0.0, self.server_now - self.last_seen)


@dataclass(frozen=True)
class Observation:
    """The active controller's latest look at one node's scheduler."""

    node: str
    state: str
    pids: tuple[int, ...]
    detail: str
    observed_at: float = 0.0
    by_host: str = ""
    server_now: float = 0.0
    leashed: bool = False  # every scheduler process of the node runs under the leash supervisor
    #: (pid, user) of matching processes that do not count as the scheduler (see ownership)
    foreign: tuple[tuple[int, str], ...] = ()

    @property
    def age(self) -> float:
        return max(0.0, self.server_now - self.observed_at)


@dataclass(frozen=True)
class Event:
    """One entry of the bounded event history."""

    at: float
    host: str
    kind: EventKind | str  # a kind this release does not know (a newer one wrote it): as written
    message: str
    epoch: int = 0
    request_id: str = ""  # the switchover request a request or outcome event answers ('' for others)
    service: str = SCHEDULER  # the service the event is of (a release with one service wrote the scheduler's)


class Metastore(ReportStore, NodeStateStore, abc.ABC):
    """Shared state of the controllers. Implementations must be safe across processes/hosts.

    The plumbing every backend shares lives here, as template methods: each public call runs
    inside :meth:`_call` (one deadline of ``timeout`` seconds, lazy setup on first use, the
    backend's failures turned into MetastoreError), and :meth:`setup` creates the records through
    the backend's :meth:`_prepare` and refuses a schema newer than :data:`SCHEMA_VERSION`.
    Setup is idempotent, so two threads that both find the store not ready yet may both run it.
    """

    kind: str = "abstract"
    timeout: float = 0.0  # metastore_timeout: every public call's deadline, in seconds
    _ready = False  # set once setup succeeded: the first call of each new client sets up

    def setup(self) -> None:
        """Create the schema if missing; idempotent and safe when many controllers start at once.

        Raises MetastoreError if the store is unreachable or its schema is newer than ours.
        """
        with dl.scope(self.timeout) as d, self._failures(d):
            self._setup(d)

    def _setup(self, d: dl.Deadline) -> None:
        """Setup within the deadline ``d`` of the call it is part of."""
        self._check_schema(*self._prepare(d))
        self._upgrade(d)
        self._ready = True

    @staticmethod
    def _check_schema(where: str, stored: object) -> None:
        """Refuse a store whose schema version (``stored`` at ``where``; None: none) is newer than ours."""
        if stored is not None and rows.integer_text(where, stored) > SCHEMA_VERSION:
            version = stored.decode() if isinstance(stored, bytes) else stored
            raise MetastoreError(
                f"metastore schema version {version} is newer than this controller's ({SCHEMA_VERSION}); upgrade it"
            )

    @abc.abstractmethod
    def _prepare(self, d: dl.Deadline) -> tuple[str, object]:
        """Create whatever records are missing; return where the schema version is kept, and its value.

        Another controller may be doing the same at the same moment: what it created counts.
        """

    def _upgrade(self, d: dl.Deadline) -> None:
        """Bring records of an older release up to date, after the version check (nothing by default)."""

    @contextlib.contextmanager
    def _failures(self, d: dl.Deadline) -> Iterator[None]:
        """Turn the backend's own failures inside a call into MetastoreError (none by default)."""
        yield

    @contextlib.contextmanager
    def _call(self) -> Iterator[dl.Deadline]:
        """One public call: its deadline, setup first if needed, and failures as MetastoreError.

        A call refuses to start while the store is not :meth:`usable`.
        """
        with dl.scope(self.timeout) as d, self._failures(d):
            if not self._ready:
                self._setup(d)
            if not self.usable():
                raise MetastoreError(f"{self.kind} connection is suspended or lost")
            yield d

    @abc.abstractmethod
    def acquire_or_renew(self, holder: str, host: str, ttl: float) -> Lease | None:
        """Take or extend the leadership lease in ONE atomic compare-and-set.

        Succeeds when the lease is free, expired (server clock) or already ``holder``'s; then it
        expires ``ttl`` seconds after the server's now. The epoch grows by one whenever a new
        term starts (a new holder, or the same holder after expiry); a renewal keeps it.
        Returns the lease held by ``holder``, or None if another holder's lease is still valid.
        """

    @abc.abstractmethod
    def release(self, holder: str) -> bool:
        """End ``holder``'s lease now, keeping the epoch. False if it did not hold it."""

    @abc.abstractmethod
    def read_state(self) -> ClusterState:
        """Lease, placement and paused flag, with the server's now."""

    @abc.abstractmethod
    def set_placement(
        self, node: str | None, holder: str, epoch: int, expected_version: int, ttl: float
    ) -> Placement | None:
        """Point the scheduler at ``node`` (None: nowhere), fenced by the leader epoch.

        One atomic compare-and-set: it applies only if ``holder`` holds an unexpired lease with
        exactly ``epoch`` and the placement's version is still ``expected_version``. The new
        placement is stamped with ``epoch``, expires ``ttl`` after the server's now, and its
        version grows by one. Returns it, or None when the epoch is stale or the version moved.
        """

    @abc.abstractmethod
    def renew_placement(
        self, node: str, ttl: float, holder: str | None = None, epoch: int | None = None
    ) -> Placement | None:
        """Extend an unexpired placement on ``node`` to ``ttl`` after the server's now.

        Called by the node's own controller (no leader check) or, with ``holder`` and ``epoch``,
        by the active controller (then also fenced by its lease). An expired placement is never
        revived. Returns the placement, or None if it is not ``node``'s or has expired.
        """

    @abc.abstractmethod
    def release_placement(self, node: str) -> bool:
        """Clear the placement if it points at ``node`` (after its scheduler was stopped)."""

    @abc.abstractmethod
    def heartbeat(self, info: ControllerInfo) -> None:
        """Insert or refresh this controller's registry entry (``paused`` and ``leashed`` included).

        The entry is stamped with the server's now.
        """

    @abc.abstractmethod
    def deregister(self, host: str, holder: str) -> None:
        """Remove ``host``'s registry entry if it is still ``holder``'s."""

    @abc.abstractmethod
    def controllers(self) -> list[ControllerInfo]:
        """Every registered controller, with ``server_now`` set for ages."""

    @abc.abstractmethod
    def record_observations(self, holder: str, epoch: int, observations: list[Observation]) -> bool:
        """Replace the per-node observations; only the holder of ``epoch`` may. False if stale."""

    @abc.abstractmethod
    def observations(self) -> list[Observation]:
        """The latest observation of each node, with ``server_now`` set for ages."""

    @abc.abstractmethod
    def set_paused(self, paused: bool) -> None:
        """Set maintenance mode: controllers keep their lease but start and stop nothing."""

    @abc.abstractmethod
    def request_switchover(self, node: str, mode: str, request_id: str = "") -> None:
        """Ask the active controller to move the scheduler to ``node`` (replaces any pending ask).

        ``request_id`` is written with the request in the same write, and read back with it as
        ``ClusterState.switchover_id``; the outcome's event carries it. A controller of a release
        without ids still carries the request out (and its outcome carries no id).
        """

    @abc.abstractmethod
    def clear_switchover(self) -> None:
        """Drop the pending switchover request (done or refused)."""

    @abc.abstractmethod
    def add_event(self, host: str, kind: EventKind, message: str, epoch: int = 0, request_id: str = "") -> None:
        """Append to the history, keeping only the newest ``EVENTS_KEPT`` entries.

        ``request_id`` names the switchover request the event asks for or answers.
        """

    @abc.abstractmethod
    def events(self, limit: int = 50) -> list[Event]:
        """The newest ``limit`` events, oldest first; a kind this release does not know as written."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Wipe every record (lease, placement, registry, observations, events, paused)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""

    def for_service(self, name: str) -> Metastore:
        """The store as service ``name``'s controller uses it (the scheduler's: this one).

        The view keeps its own placement, switchover request, observations, node reports, failed
        starts, and stamps its events with ``name``; the lease, the registry, the paused flag,
        ``node_control`` and the drained nodes are the fleet's, shared with every view. A view
        uses its parent's connection: closing it closes nothing. The scheduler's records stay
        where a release with one service keeps them, so both can run side by side.
        """
        if name == SCHEDULER:
            return self
        raise MetastoreError(f"the {self.kind} metastore keeps no service but the scheduler")

    def session(self) -> int | None:
        """The connection a lease taken now would live on (a ZooKeeper session id); None where a
        lease lives on no connection (SQL: it lasts its time). A lease of another session is lost."""
        return None

    def usable(self) -> bool:
        """False while the store knows its connection cannot be trusted (ZooKeeper SUSPENDED/LOST).

        The controller then acts on nothing, whatever its deadlines say.
        """
        return True

    def describe(self) -> str:
        """Where the store lives, with secrets masked."""
        return self.kind

    def exposure(self) -> str | None:
        """Why other users could rewrite the records, when the store knows they could (else None)."""
        return None

    def dump(self) -> dict[str, Any]:
        """Everything in the store as plain values, for ``metadata``."""
        state = self.read_state()
        return {
            "metastore": self.describe(),
            "server_time": state.server_now,
            "lease": {
                "holder": state.lease.holder,
                "host": state.lease.host,
                "epoch": state.lease.epoch,
                "expires_in_s": round(state.lease.remaining, 3),
            },
            "placement": {
                "node": state.placement.node,
                "epoch": state.placement.epoch,
                "version": state.placement.version,
                "expires_in_s": round(state.placement.remaining, 3),
            },
            "paused": state.paused,
            "switchover_requested": (
                {"to": state.switchover[0], "mode": state.switchover[1], "id": state.switchover_id}
                if state.switchover
                else None
            ),
            "drained": sorted(state.drained),
            "failures": [
                {"node": f.node, "strikes": f.strikes, "last_age_s": round(f.age, 3)} for f in self.failures()
            ],
            **self._dump_records(),
            "node_control": self.read_node_control(),
            **self._dump_reports(),
        }

    def _dump_records(self) -> dict[str, Any]:
        """The controller registry and the observations, for ``dump``."""
        return {
            "controllers": [
                {
                    "host": c.host,
                    "holder": c.holder,
                    "pid": c.pid,
                    "version": c.version,
                    "role": c.role,
                    "heartbeat_age_s": round(c.age, 3),
                    "paused": c.paused,
                    "leashed": c.leashed,
                }
                for c in self.controllers()
            ],
            "observations": [
                {
                    "node": o.node,
                    "state": o.state,
                    "pids": list(o.pids),
                    "detail": o.detail,
                    "by": o.by_host,
                    "leashed": o.leashed,
                    "foreign": [{"pid": pid, "user": user} for pid, user in o.foreign],
                    "observed_age_s": round(o.age, 3),
                }
                for o in self.observations()
            ],
        }

    def _dump_reports(self) -> dict[str, Any]:
        """The nodes' own reports and the recent events, for ``dump``."""
        return {
            "reports": [
                {
                    "node": r.node,
                    "state": r.state,
                    "pids": list(r.pids),
                    "detail": r.detail,
                    "leashed": r.leashed,
                    "answers": r.answers,
                    "started_for": r.started_for,
                    "age_s": round(r.age, 3),
                }
                for r in self.reports()
            ],
            "events": [
                {
                    "at": e.at,
                    "host": e.host,
                    "kind": str(e.kind),
                    "epoch": e.epoch,
                    "message": e.message,
                    "request_id": e.request_id,
                    "service": e.service,
                }
                for e in self.events(20)
            ],
        }
