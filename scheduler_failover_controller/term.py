"""This controller's term: its role, its epoch and the two deadlines it may act by.

Every lease and placement call that moves a deadline is here, and nowhere else: a deadline is
always the server's ``expires_at - server_now`` (returned by the very call that renewed it) added
to a ``time.monotonic()`` reading taken *before* that call, less the safety margin. The cycle and
the renewal thread share one ``Term``; as before the split, they share its plain attributes
without a lock (each write is a single assignment, and a deadline only ever comes from a call's
own answer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .exceptions import CorruptRecord, MetastoreError
from .metastore.base import Lease, Metastore, Placement
from .strenum import StrEnum

log = logging.getLogger(__name__)

NEVER = float("-inf")
#: How every decision that needs the lease's margin says that it is too short.
MARGIN_TOO_SMALL = "lease margin too small"


class Role(StrEnum):
    """A controller's role. Its value is what the registry, ``status --json`` and metrics show."""

    STARTING = "starting"
    ACTIVE = "active"
    STANDBY = "standby"
    STOPPED = "stopped"
    #: never registered by a controller: what ``status`` calls one whose heartbeat stopped
    SILENT = "silent"


class Term:
    """Who this controller is, whether it leads, and until when its node may run the scheduler."""

    def __init__(
        self,
        host: str,
        holder: str,
        store: Metastore,
        ttl: float,
        margin: float,
        monotonic: Callable[[], float],
        renew_local_leash: Callable[[float], bool],
    ) -> None:
        self.host = host
        self.holder = holder
        self.store = store
        self.ttl = ttl
        self.margin = margin
        self.monotonic = monotonic
        self._renew_local_leash = renew_local_leash
        self.role = Role.STARTING
        self.epoch = 0
        self.leader_deadline = NEVER
        self._lease_session: int | None = None  # the store session the held lease lives on
        self._placement_deadline = NEVER
        self._leash_deadline = NEVER  # the deadline the local leash was last given (written)
        self._leash_lagging = False  # said once: this node's placement is not renewed for its leash
        # A record no valid write produces, as a call last found it (None: the store reads fine).
        # Until a cycle reads the store again, nothing is renewed: the store counts as down.
        self.unreadable: str | None = None
        self._written: tuple[int, int] | None = None  # (epoch, version) of the last placement this term wrote

    # --- deadlines ------------------------------------------------------------------------

    def deadline(self, t0: float, remaining: float) -> float:
        """A local monotonic deadline for a server-side expiry, measured from before the call."""
        return t0 + remaining - self.margin

    def leads(self) -> bool:
        """Whether this controller may act as leader right now (lease held, margin left, and on the
        store session it was taken on: a ZooKeeper session that expired took the lease with it, even
        when a new one is connected before the deadline runs out)."""
        return (
            self.monotonic() < self.leader_deadline
            and self.store.usable()
            and self.store.session() == self._lease_session
        )

    @property
    def placement_deadline(self) -> float:
        """This node's placement deadline (local monotonic): its scheduler must be gone by then."""
        return self._placement_deadline

    def _hold_placement(self, deadline: float) -> None:
        # The leash beside the local scheduler is renewed to the same deadline, never further:
        # it stops the scheduler at that deadline whatever becomes of this process.
        self._placement_deadline = deadline
        if self._renew_local_leash(deadline):
            self._leash_deadline = deadline

    def leash_behind(self) -> bool:
        """Whether the local leash holds less than this node's placement allows, even after one more
        try to give it that deadline. Then this node's placement is not renewed: a placement is
        renewed only as far as its leash was (at most one renewal ahead of it), so that it expires
        soon after the leash stops the scheduler, and the scheduler can move."""
        if self._leash_deadline >= self._placement_deadline:
            return False
        if self._renew_local_leash(self._placement_deadline):
            self._leash_deadline = self._placement_deadline
            if self._leash_lagging:
                self._leash_lagging = False
                log.info("this node's leash was renewed again: renewing its placement again")
            return False
        if not self._leash_lagging:
            self._leash_lagging = True
            log.warning(
                "not renewing this node's placement while its leash cannot be renewed (the placement was last "
                "renewed to %.1fs from now, the leash to %.1fs)",
                self._placement_deadline - self.monotonic(),
                self._leash_deadline - self.monotonic(),
            )
        return True

    def forget_placement(self) -> None:
        """This node holds no placement (any more): its scheduler may not run."""
        self._placement_deadline = NEVER
        self._leash_deadline = NEVER

    def may_run_locally(self, lookahead: float = 0.0) -> bool:
        return self.monotonic() + lookahead < self._placement_deadline

    # --- the store's answers ----------------------------------------------------------------

    def wait_usable(self, limit: float, sleep: Callable[[float], None]) -> None:
        """Wait up to ``limit`` seconds for the store's connection to be usable again."""
        until = self.monotonic() + limit
        while not self.store.usable() and self.monotonic() < until:
            sleep(0.05)

    def failed(self, exc: MetastoreError) -> None:
        """A call failed: when on a record no valid write produces, renew nothing until a cycle reads again."""
        if isinstance(exc, CorruptRecord):
            self.unreadable = str(exc)

    def readable(self) -> bool:
        """Whether the store held no record that no valid write produces, as the last call found it."""
        return self.unreadable is None

    # --- the leadership lease ----------------------------------------------------------------

    def acquire(self) -> Lease | None:
        """Ask for the lease (or renew it); None when another holds it. Raises MetastoreError."""
        return self.store.acquire_or_renew(self.holder, self.host, self.ttl)

    def hold(self, lease: Lease, t0: float) -> bool:
        """The cycle holds ``lease`` (asked for at ``t0``): active. True when it is a new term."""
        self.leader_deadline = self.deadline(t0, lease.remaining)
        self._lease_session = lease.session
        new = lease.epoch != self.epoch
        self.epoch = lease.epoch
        self.role = Role.ACTIVE
        return new

    def stand_by(self) -> bool:
        """Another holds the lease: standby. True when this controller was active until now."""
        was_active = self.role is Role.ACTIVE
        self.role, self.epoch, self.leader_deadline = Role.STANDBY, 0, NEVER
        return was_active

    def lapse(self, now: float) -> None:
        """The store cannot be asked: an active controller whose lease ran out is a standby."""
        if self.role is Role.ACTIVE and now >= self.leader_deadline:
            self.role = Role.STANDBY
            self.epoch = 0

    def end(self) -> None:
        """Shut down: nothing held any more."""
        self.leader_deadline = NEVER
        self.role = Role.STOPPED

    def renew_lease(self) -> bool:
        """Renew the leadership lease now; False only if it is lost (a failed call keeps the old deadline)."""
        t0 = self.monotonic()
        try:
            lease = self.acquire()
        except MetastoreError as exc:
            self.failed(exc)
            log.warning("lease renewal failed: %s", exc)
            return True
        if lease is None or lease.epoch != self.epoch:
            self.leader_deadline = NEVER
            return False
        self.leader_deadline = self.deadline(t0, lease.remaining)
        self._lease_session = lease.session
        return True

    # --- placements ---------------------------------------------------------------------------

    def place(self, current: Placement, node: str | None) -> Placement | None:
        """Move the placement from ``current`` to ``node`` (None: nowhere, a stop order in self mode)
        under this term's epoch; None if not done.

        When this term wrote a newer version since ``current`` was read (a stop order of this very
        cycle), that version is the one expected: the write is still a compare-and-set on it.
        """
        if not self.leads():
            return None
        expected = current.version
        if self._written is not None and self._written[0] == self.epoch:
            expected = max(expected, self._written[1])
        t0 = self.monotonic()
        try:
            placed = self.store.set_placement(node, self.holder, self.epoch, expected, self.ttl)
        except MetastoreError as exc:
            log.warning("could not write the placement: %s", exc)
            return None
        if placed is not None:
            self._written = (self.epoch, placed.version)
        if placed is not None and node == self.host:
            self._hold_placement(self.deadline(t0, placed.remaining))
        return placed

    def renew_placement(self, node: str, t0: float | None = None) -> tuple[Placement | None, float]:
        """Renew ``node``'s placement under this term's epoch: (placement or None, its deadline).

        ``t0`` is a reading taken before the call (now, if not given). This node's own deadline
        (and its leash) moves with it. Raises MetastoreError.
        """
        t0 = self.monotonic() if t0 is None else t0
        if node == self.host and self.leash_behind():
            return None, NEVER
        placement = self.store.renew_placement(node, self.ttl, self.holder, self.epoch)
        if placement is None:
            return None, NEVER
        deadline = self.deadline(t0, placement.remaining)
        if node == self.host:
            self._hold_placement(deadline)
        return placement, deadline

    def renew_own(self, t0: float) -> Placement | None:
        """Renew this node's placement as its own controller (no epoch: a standby does it too)."""
        if self.leash_behind():
            return None
        try:
            renewed = self.store.renew_placement(self.host, self.ttl)
        except MetastoreError as exc:
            self.failed(exc)
            log.warning("placement renewal failed: %s", exc)
            return None
        if renewed is not None:
            self._hold_placement(self.deadline(t0, renewed.remaining))
        return renewed

    def reconfirm(self, fallback: Placement) -> tuple[bool, Placement]:
        """Read the placement afresh and renew it if it is this node's: (renewed, what was read).

        What was read is ``fallback`` when the store cannot be read; the caller names it in its
        sentence before it fences.
        """
        t1 = self.monotonic()
        try:
            fresh = self.store.read_state().placement
            if fresh.node == self.host and fresh.valid and not self.leash_behind():
                renewed = self.store.renew_placement(self.host, self.ttl)
                if renewed is not None:
                    self._hold_placement(self.deadline(t1, renewed.remaining))
                    return True, fresh
            return False, fresh
        except MetastoreError as exc:
            self.failed(exc)
            log.warning("could not re-read the placement before fencing: %s", exc)
            return False, fallback
