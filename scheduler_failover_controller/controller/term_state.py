"""The fields of this controller's term, behind their one lock, and this node's placement deadline.

The base of :class:`~.term.Term` (whose docstring says how the lock is kept): the role, the epoch,
the generation, the deadlines and the local leash's deadline. The calls that move the lease and
the placement are in ``term.py``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import NamedTuple

from ..exceptions import CorruptRecord, MetastoreError
from ..metastore.base import Metastore
from ..strenum import StrEnum
from .fleet import LeaseCalls

log = logging.getLogger(__name__.rpartition(".")[0] + ".term")  # the term's logger, as term.py's

NEVER = float("-inf")


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


class TermState:
    """The shared fields of a :class:`~.term.Term` and what reads or sets them under its one lock."""

    def __init__(
        self,
        host: str,
        holder: str,
        store: Metastore,
        ttl: float,
        margin: float,
        monotonic: Callable[[], float],
        renew_local_leash: Callable[[float], bool],
        lease_calls: LeaseCalls | None = None,
    ) -> None:
        self.host = host
        self.holder = holder
        self.store = store
        self.ttl = ttl
        self.margin = margin
        self.monotonic = monotonic
        self._renew_local_leash = renew_local_leash
        self.lease_calls = lease_calls or LeaseCalls()  # of this holder: every controller of this process
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
        # Told of every placement the cycle is about to write that names a node, before it asks (a
        # write whose answer is lost may have landed): a fence of that node proves nothing after it.
        self.placing: Callable[[str], None] = lambda node: None
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
