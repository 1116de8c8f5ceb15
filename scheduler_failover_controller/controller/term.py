"""This controller's term: its role, its epoch and the two deadlines it may act by.

Every lease and placement call that moves a deadline is here, and nowhere else: a deadline is
always the server's ``expires_at - server_now`` (returned by the very call that renewed it) added
to a ``time.monotonic()`` reading taken *before* that call, less the safety margin.

The cycle and the renewal thread share one ``Term``: every field of it is kept behind its one lock
(see the class), never held across a metastore call or a leash write.
"""

from __future__ import annotations

import logging

from ..exceptions import MetastoreError
from ..metastore.base import Lease, Placement
from .term_state import NEVER, Generation, Role, TermState

log = logging.getLogger(__name__)

__all__ = ["MARGIN_TOO_SMALL", "NEVER", "Generation", "Role", "Term"]

#: How every decision that needs the lease's margin says that it is too short.
MARGIN_TOO_SMALL = "lease margin too small"


class Term(TermState):
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

    # --- the leadership lease ----------------------------------------------------------------

    def acquire(self) -> Lease | None:
        """Ask for the lease (or renew it); None when another holds it. Raises MetastoreError.

        Every controller of this process asks under the same holder (see ``fleet.LeaseCalls``)."""
        return self.lease_calls.acquire(self.store, self.holder, self.host, self.ttl)

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
        if node is not None:
            self.placing(node)
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
