"""This controller's term: its role, its epoch and the two deadlines it may act by.

Every lease and placement call that moves a deadline is here, and nowhere else: a deadline is
always the server's ``expires_at - server_now`` (returned by the very call that renewed it) added
to a ``time.monotonic()`` reading taken *before* that call, less the safety margin.

The cycle and the renewal thread share one ``Term``: every field of it is kept behind its one lock
(see the class), never held across a metastore call or a leash write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import NamedTuple

from ..exceptions import CorruptRecord, MetastoreError
from ..metastore.base import Lease, Metastore, Placement
from ..strenum import StrEnum

log = logging.getLogger(__name__)

NEVER = float("-inf")
#: How every decision that needs the lease's margin says that it is too short.
MARGIN_TOO_SMALL = "lease margin too small"


class Generation(NamedTuple):
    """Counts of the cycle's steps a late answer must not undo (see ``Term``)."""

    term: int
    placement: int
    reads: int


class Role(StrEnum):
    """A controller's role. Its value is what the registry, ``status --json`` and metrics show."""

    STARTING = "starting"
    ACTIVE = "active"
    STANDBY = "standby"
    STOPPED = "stopped"
    #: never registered by a controller: what ``status`` calls one whose heartbeat stopped
    SILENT = "silent"


class Term:
    """Who this controller is, whether it leads, and until when its node may run the scheduler.

    Shared by the cycle and the renewal thread: ``role``, ``epoch``, ``leader_deadline``, the lease's
    session, both placement deadlines, ``unreadable`` and the generation are read and written only under
    ``_lock``, which is never held across a store call or a leash write. A call reads what it
    needs under the lock, runs without it, and applies its answer under the lock only if the
    generation is still the one it began with. The cycle's steps (a new term, a step-down, a
    lapse, a placement written or forgotten, the store read fine again) each start a new
    generation, so a renewal's late answer never undoes them. A step-down also waits for the
    lease calls already in flight, so that none of them takes the lease again after it.
    """

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
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a lease call returned
        self._role = Role.STARTING
        self._epoch = 0
        self._leader_deadline = NEVER
        self._lease_session: int | None = None  # the store session the held lease lives on
        self._placement_deadline = NEVER
        self._leash_deadline = NEVER  # the deadline the local leash was last given (written)
        self._leash_lagging = False  # said once: this node's placement is not renewed for its leash
        # A record no valid write produces, as a call last found it (None: the store reads fine).
        # Until a cycle reads the store again, nothing is renewed: the store counts as down.
        self._unreadable: str | None = None
        self._written: tuple[int, int] | None = None  # (epoch, version) of the last placement this term wrote
        # Generations, bumped by the cycle's steps that a late answer must not undo: of the term
        # (a new term, a step-down, a lapse, the end), of this node's placement (written, forgotten),
        # and of the store's reads (it reads fine again).
        self._generation = Generation(0, 0, 0)
        self._lease_calls = 0  # lease calls in flight
        self.settling = False  # a step-down waits for the lease calls in flight (tests look)

    # --- the shared fields, read under the lock ---------------------------------------------

    @property
    def role(self) -> Role:
        with self._lock:
            return self._role

    @property
    def epoch(self) -> int:
        with self._lock:
            return self._epoch

    @property
    def leader_deadline(self) -> float:
        with self._lock:
            return self._leader_deadline

    @property
    def unreadable(self) -> str | None:
        with self._lock:
            return self._unreadable

    @unreadable.setter
    def unreadable(self, value: str | None) -> None:
        """Set by the cycle only (it read the store): a new generation when the store reads fine again."""
        with self._lock:
            if value is None and self._unreadable is not None:
                self._generation = self._generation._replace(reads=self._generation.reads + 1)
            self._unreadable = value

    def standing(self) -> tuple[Role, int]:
        """(role, epoch), read together."""
        with self._lock:
            return self._role, self._epoch

    def generation(self) -> Generation:
        """A token for a call about to start: pass it back to apply (or record) what it found."""
        with self._lock:
            return self._generation

    def _bump(self, term: int = 0, placement: int = 0) -> None:
        g = self._generation  # under the lock
        self._generation = Generation(g.term + term, g.placement + placement, g.reads)

    # --- deadlines ------------------------------------------------------------------------

    def deadline(self, t0: float, remaining: float) -> float:
        """A local monotonic deadline for a server-side expiry, measured from before the call."""
        return t0 + remaining - self.margin

    def leads(self) -> bool:
        """Whether this controller may act as leader right now (lease held, margin left, and on the
        store session it was taken on: a ZooKeeper session that expired took the lease with it, even
        when a new one is connected before the deadline runs out)."""
        with self._lock:
            deadline, session = self._leader_deadline, self._lease_session
        return self.monotonic() < deadline and self.store.usable() and self.store.session() == session

    @property
    def placement_deadline(self) -> float:
        """This node's placement deadline (local monotonic): its scheduler must be gone by then."""
        with self._lock:
            return self._placement_deadline

    def _hold_placement(self, deadline: float, generation: Generation) -> bool:
        """Take in this node's placement deadline from a call begun at ``generation``; False (nothing
        taken in, the leash not written) when the cycle wrote or forgot the placement in between."""
        with self._lock:
            if generation.placement != self._generation.placement:
                return False
            self._placement_deadline = deadline
        # The leash beside the local scheduler is renewed to the same deadline, never further:
        # it stops the scheduler at that deadline whatever becomes of this process.
        if self._renew_local_leash(deadline):
            with self._lock:
                if generation.placement == self._generation.placement:
                    self._leash_deadline = deadline
        return True

    def leash_behind(self) -> bool:
        """Whether the local leash holds less than this node's placement allows, even after one more
        try to give it that deadline. Then this node's placement is not renewed: a placement is
        renewed only as far as its leash was (at most one renewal ahead of it), so that it expires
        soon after the leash stops the scheduler, and the scheduler can move."""
        with self._lock:
            generation, placement, leash = self._generation, self._placement_deadline, self._leash_deadline
        if leash >= placement:
            return False
        if self._renew_local_leash(placement):
            with self._lock:
                if generation.placement == self._generation.placement:
                    self._leash_deadline = max(self._leash_deadline, placement)
                was, self._leash_lagging = self._leash_lagging, False
            if was:
                log.info("this node's leash was renewed again: renewing its placement again")
            return False
        with self._lock:
            was, self._leash_lagging = self._leash_lagging, True
        if not was:
            log.warning(
                "not renewing this node's placement while its leash cannot be renewed (the placement was last "
                "renewed to %.1fs from now, the leash to %.1fs)",
                placement - self.monotonic(),
                leash - self.monotonic(),
            )
        return True

    def forget_placement(self) -> None:
        """This node holds no placement (any more): its scheduler may not run."""
        with self._lock:
            self._bump(placement=1)
            self._placement_deadline = NEVER
            self._leash_deadline = NEVER

    def may_run_locally(self, lookahead: float = 0.0) -> bool:
        return self.monotonic() + lookahead < self.placement_deadline

    # --- the store's answers ----------------------------------------------------------------

    def wait_usable(self, limit: float, sleep: Callable[[float], None]) -> None:
        """Wait up to ``limit`` seconds for the store's connection to be usable again."""
        until = self.monotonic() + limit
        while not self.store.usable() and self.monotonic() < until:
            sleep(0.05)

    def failed(self, exc: MetastoreError, generation: Generation | None = None) -> None:
        """A call failed: when on a record no valid write produces, renew nothing until a cycle reads
        again. A call begun at an older ``generation`` than a read that went fine records nothing."""
        if isinstance(exc, CorruptRecord):
            with self._lock:
                if generation is None or generation.reads == self._generation.reads:
                    self._unreadable = str(exc)

    def readable(self) -> bool:
        """Whether the store held no record that no valid write produces, as the last call found it."""
        return self.unreadable is None

    # --- the leadership lease ----------------------------------------------------------------

    def acquire(self) -> Lease | None:
        """Ask for the lease (or renew it); None when another holds it. Raises MetastoreError."""
        return self.store.acquire_or_renew(self.holder, self.host, self.ttl)

    def hold(self, lease: Lease, t0: float) -> bool:
        """The cycle holds ``lease`` (asked for at ``t0``): active. True when it is a new term."""
        with self._lock:
            new = lease.epoch != self._epoch
            if new or self._role is not Role.ACTIVE:
                self._bump(term=1)
            self._leader_deadline = self.deadline(t0, lease.remaining)
            self._lease_session = lease.session
            self._epoch = lease.epoch
            self._role = Role.ACTIVE
        return new

    def stand_by(self) -> bool:
        """Another holds the lease, or this one leaves it: standby. True when this controller was
        active until now. Returns once no lease call begun before is still in flight (at most a
        lease: every call has a hard deadline well within it), so none takes the lease again later."""
        with self._lock:
            was_active = self._role is Role.ACTIVE
            if (self._role, self._epoch, self._leader_deadline) == (Role.STANDBY, 0, NEVER):
                return False  # nothing changes: a standby's every cycle
            self._bump(term=1)
            self._role, self._epoch, self._leader_deadline = Role.STANDBY, 0, NEVER
            self.settling = bool(self._lease_calls)
            self._changed.wait_for(lambda: not self._lease_calls, timeout=self.ttl)  # real seconds
            self.settling = False
        return was_active

    def lapse(self, now: float) -> None:
        """The store cannot be asked: an active controller whose lease ran out is a standby."""
        with self._lock:
            if self._role is Role.ACTIVE and now >= self._leader_deadline:
                self._bump(term=1)
                self._role = Role.STANDBY
                self._epoch = 0

    def end(self) -> None:
        """Shut down: nothing held any more."""
        with self._lock:
            self._bump(term=1)
            self._leader_deadline = NEVER
            self._role = Role.STOPPED

    def renew_lease(self) -> bool:
        """Renew the leadership lease now; False only if it is lost, or no longer held by this term
        (a failed call keeps the old deadline). Not asked for at all once this term is over."""
        with self._lock:
            if self._role is not Role.ACTIVE:
                return False
            epoch, generation = self._epoch, self._generation
            self._lease_calls += 1
        t0 = self.monotonic()
        try:
            lease = self.acquire()
        except MetastoreError as exc:
            self.failed(exc, generation)
            log.warning("lease renewal failed: %s", exc)
            return True
        finally:
            with self._lock:
                self._lease_calls -= 1
                self._changed.notify_all()
        with self._lock:
            if generation.term != self._generation.term:  # a newer step of the cycle: this answer is moot
                return self._role is Role.ACTIVE and self._epoch == epoch
            if lease is None or lease.epoch != epoch:
                self._leader_deadline = NEVER
                return False
            self._leader_deadline = self.deadline(t0, lease.remaining)
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
            with self._lock:  # a new placement: no renewal of the one before may be taken in after it
                self._bump(placement=1)
                generation = self._generation
            self._hold_placement(self.deadline(t0, placed.remaining), generation)
        return placed

    def renew_placement(self, node: str, t0: float | None = None) -> tuple[Placement | None, float]:
        """Renew ``node``'s placement under this term's epoch: (placement or None, its deadline).

        ``t0`` is a reading taken before the call (now, if not given). This node's own deadline
        (and its leash) moves with it. Raises MetastoreError.
        """
        t0 = self.monotonic() if t0 is None else t0
        generation = self.generation()
        if node == self.host and self.leash_behind():
            return None, NEVER
        placement = self.store.renew_placement(node, self.ttl, self.holder, self.epoch)
        if placement is None:
            return None, NEVER
        deadline = self.deadline(t0, placement.remaining)
        if node == self.host and not self._hold_placement(deadline, generation):
            return None, NEVER  # forgotten or placed anew meanwhile: this answer counts for nothing
        return placement, deadline

    def renew_own(self, t0: float) -> Placement | None:
        """Renew this node's placement as its own controller (no epoch: a standby does it too)."""
        generation = self.generation()
        if self.leash_behind():
            return None
        try:
            renewed = self.store.renew_placement(self.host, self.ttl)
        except MetastoreError as exc:
            self.failed(exc, generation)
            log.warning("placement renewal failed: %s", exc)
            return None
        if renewed is not None and not self._hold_placement(self.deadline(t0, renewed.remaining), generation):
            return None  # forgotten or placed anew meanwhile: this answer counts for nothing
        return renewed

    def reconfirm(self, fallback: Placement) -> tuple[bool, Placement]:
        """Read the placement afresh and renew it if it is this node's: (renewed, what was read).

        What was read is ``fallback`` when the store cannot be read; the caller names it in its
        sentence before it fences.
        """
        t1 = self.monotonic()
        generation = self.generation()
        try:
            fresh = self.store.read_state().placement
            if fresh.node == self.host and fresh.valid and not self.leash_behind():
                renewed = self.store.renew_placement(self.host, self.ttl)
                if renewed is not None and self._hold_placement(self.deadline(t1, renewed.remaining), generation):
                    return True, fresh
            return False, fresh
        except MetastoreError as exc:
            self.failed(exc, generation)
            log.warning("could not re-read the placement before fencing: %s", exc)
            return False, fallback
