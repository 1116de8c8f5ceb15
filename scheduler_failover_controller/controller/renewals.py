"""The placements and leashes this controller keeps alive between its cycles (docs/design.md, section 4).

The cycle says what to keep (``renewing``: remote schedulers seen healthy; ``starting``: starts
under way); the renewal thread and the cycle both renew them through here. A remote leash is
renewed in the background, over SSH, so that no renewal ever waits for a node. What the threads
share here is kept behind one lock (see ``Renewals``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from ..config import Config
from ..exceptions import MetastoreError
from ..metastore.base import ClusterState, Metastore, Placement
from ..nodes.base import NodeRunner
from ..probe_result import ProbeResult, SchedulerState
from .health import seen_running
from .term import NEVER, Role, Term

log = logging.getLogger(__name__)


def unanswered(state: ClusterState, role: Role, paused: bool, drained: frozenset[str] | None = None) -> bool:
    """Whether ``state`` holds an operator's request the active (``role``) has yet to take up: a
    switchover, or a paused flag or drained nodes other than those its cycle last acted on (``paused``,
    ``drained``). The renewal thread wakes the cycle for it: taken up within a renewal interval, not at
    the next poll."""
    drains = drained is not None and frozenset(state.drained) != drained
    return role is Role.ACTIVE and (state.switchover is not None or state.paused != paused or drains)


class Lapses:
    """Wakes the active's cycle once for each placement found expired by a renewal's read.

    A lost node's placement runs out between two cycles: woken for it, the active moves the
    scheduler within a renewal interval of the expiry rather than at its next poll. Once per
    placement (node, epoch, version), so a placement left expired (no node can take it) costs
    no more than one early cycle. Only the renewal thread calls it: nothing is shared.
    """

    def __init__(self) -> None:
        self._woke_for: tuple[str, int, int] | None = None

    def due(self, state: ClusterState, role: Role, paused: bool) -> bool:
        placement = state.placement
        if role is not Role.ACTIVE or paused or placement.node is None or placement.valid:
            return False
        key = (placement.node, placement.epoch, placement.version)
        if key == self._woke_for:
            return False
        self._woke_for = key
        return True


class Starting:
    """The nodes with a start under way: added and discarded by the cycle, read by the renewal
    thread; kept behind the lock of the ``Renewals`` that owns it."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._nodes: set[str] = set()

    def add(self, node: str) -> None:
        with self._lock:
            self._nodes.add(node)

    def discard(self, node: str) -> None:
        with self._lock:
            self._nodes.discard(node)

    def __contains__(self, node: object) -> bool:
        with self._lock:
            return node in self._nodes

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(sorted(self._nodes))  # a copy: never iterated while the cycle edits it

    def __sub__(self, other: set[str]) -> set[str]:
        with self._lock:
            return self._nodes - other


class Renewals:
    """What is renewed apart from the cycle, and the renewals of it.

    The cycle, the renewal thread and the leash threads share ``starting``, ``renewing``,
    ``leash_pending`` and ``leash_owed``: each is read and written only under ``_lock``, never held
    across a store call or an SSH call. ``renewing`` is the cycle's: a renewal drops a node from
    it (its placement is not ours any more) only if the cycle has not set it anew since that
    renewal began (``_kept``, bumped by ``drop_kept``).
    """

    def __init__(
        self,
        config: Config,
        store: Metastore,
        term: Term,
        runners: dict[str, NodeRunner],
        pool: ThreadPoolExecutor,
    ) -> None:
        self.config = config
        self.store = store
        self.term = term
        self.host = config.current_host
        self.runners = runners
        self.pool = pool  # remote leash renewals
        self._lock = threading.Lock()
        self._kept = 0  # how often the cycle set ``renewing`` anew
        self.starting = Starting(self._lock)  # nodes with a start under way (their placement is renewed)
        self.renewing: dict[str, bool] = {}  # remote node -> also renew its leash: healthy there, renewed apart
        self.leash_pending: set[str] = set()  # remote leash renewals not returned yet
        # remote node -> the placement deadline its leash must still be given (its last renewal
        # failed): that node's placement is not renewed until it has it
        self.leash_owed: dict[str, float] = {}
        self.lapses = Lapses()  # the renewal thread's alone

    def renew(
        self,
        look_local: Callable[[], ProbeResult],
        heartbeat: Callable[[], None],
        requested: Callable[[ClusterState], bool] | None = None,
    ) -> bool:
        """One round of the renewal thread: the lease (when active), the placements kept, this
        node's placement and leash, the heartbeat. True when the cycle should run now, also when
        the active finds an operator's request pending (``requested``, given the state it reads)."""
        if not self.term.readable():
            return self._renew_nothing(heartbeat)
        t0 = self.term.monotonic()
        generation = self.term.generation()
        wake = False
        role, epoch = self.term.standing()
        if role is Role.ACTIVE:
            if not self.term.renew_lease():
                wake = True
            elif self.term.standing() == (role, epoch) and self.term.leads() and self.term.readable():
                self.others()
        probe = look_local()
        held = self.term.placement_deadline != NEVER
        if not self.term.readable():  # found by the lease renewal just now
            return self._renew_nothing(heartbeat)
        starting = self.host in self.starting
        if (held or starting) and self.own(probe, t0) is None:
            # Not ours any more, or its scheduler is gone: the cycle decides what follows.
            # (not when it cannot see it: the cycle could do no more than its leash does)
            wake = wake or (seen_running(probe) and self.host not in self.starting)
        if self.term.role is not Role.ACTIVE:
            try:
                wake = wake or not self.store.read_state().lease.valid
            except MetastoreError as exc:
                self.term.failed(exc, generation)
                log.warning("renewal: cannot read the lease: %s", exc)
        elif requested is not None:
            try:
                wake = requested(self.store.read_state()) or wake
            except MetastoreError as exc:
                log.debug("renewal: cannot read the state for requests: %s", exc)
        heartbeat()
        return wake

    def _renew_nothing(self, heartbeat: Callable[[], None]) -> bool:
        """Renewals while the store holds a record no valid write produces: none, as with the store down.

        The lease lapses (another controller may take over once the record is fixed) and this
        node's placement runs out (the cycle fences its scheduler first, the leash at the latest).
        The heartbeat still says this controller is alive. True (run the cycle now) once the
        store reads fine again: the cycle then takes up the renewals.
        """
        try:
            self.store.read_state()
            readable = True
        except MetastoreError:
            readable = False
        heartbeat()
        return readable

    def own(self, probe: ProbeResult, t0: float) -> Placement | None:
        """Renew this node's placement, but only while its scheduler is seen running, or stopped
        with a start under way; and only as far as its leash was renewed (``Term.leash_behind``).

        A placement kept alive for a dead scheduler, or by a node that cannot see its own (its
        probe UNKNOWN: e.g. out of file descriptors), would make an active controller that cannot
        reach this node wait for it to expire for ever.
        """
        if probe.state is SchedulerState.UNKNOWN:
            return None
        if not probe.state.maybe_running and self.host not in self.starting:
            return None
        return self.term.renew_own(t0)

    def keep(self, node: str) -> None:
        """Renew the placement of ``node``'s healthy scheduler now and between cycles, and its leash
        too when the node's own controller is not there to renew it."""
        leash_too = not self._has_live_controller(node)
        with self._lock:
            self.renewing[node] = leash_too
        self.remote(node)

    def drop_kept(self) -> None:
        """The cycle starts over what it keeps: nothing until ``keep`` says so again."""
        with self._lock:
            self.renewing = {}
            self._kept += 1

    def _has_live_controller(self, node: str) -> bool:
        """Whether ``node``'s own controller heartbeats (it then renews its leash itself)."""
        try:
            registry = self.store.controllers()
        except MetastoreError:
            return False
        return any(c.host == node and c.age < 2 * self.config.renew_interval for c in registry)

    def others(self) -> None:
        """Renew every remote placement kept, and those of starts under way (the active, between cycles)."""
        with self._lock:
            kept = list(self.renewing)
        for node in kept:
            self.remote(node)
        for node in sorted(self.starting - {self.host}):
            self.while_waiting(node)

    def remote(self, node: str) -> None:
        """Renew another node's placement under our epoch, and its leash when asked to: not while
        that leash still owes a deadline (its last renewal failed; it is tried again instead)."""
        generation = self.term.generation()
        with self._lock:
            kept, leash_too, owed = self._kept, self.renewing.get(node), self.leash_owed.get(node)
        if leash_too is False and not self._has_live_controller(node):
            # Its own controller went quiet since the cycle looked: take its leash over at the
            # renewals' pace, not the cycle's (a cycle slowed by strays must not let it lapse).
            with self._lock:
                if kept == self._kept and node in self.renewing:
                    self.renewing[node] = leash_too = True
        if leash_too and owed is not None:
            self.remote_leash(node, owed)
            return
        try:
            placement, deadline = self.term.renew_placement(node)
        except MetastoreError as exc:
            self.term.failed(exc, generation)
            log.warning("placement renewal for %s failed: %s", node, exc)
            return
        with self._lock:
            if placement is None and kept == self._kept:  # else the cycle has said anew what to keep
                self.renewing.pop(node, None)
                self.leash_owed.pop(node, None)
            leash_too = placement is not None and self.renewing.get(node)
        if leash_too:
            self.remote_leash(node, deadline)

    def while_waiting(self, node: str) -> bool:
        """Renew the lease and ``node``'s placement during a start (only as far as its leash); False
        when either is lost."""
        t0 = self.term.monotonic()
        generation = self.term.generation()
        if not self.term.renew_lease() or not self.term.readable():
            return False
        with self._lock:
            owed = self.leash_owed.get(node) if node != self.host else None
        if owed is not None:
            # Its leash missed a deadline: not renewed further until the leash has it; the start
            # goes on only while the placement it already has lasts.
            self.remote_leash(node, owed)
            return self.term.monotonic() < owed
        try:
            placement, deadline = self.term.renew_placement(node, t0)
        except MetastoreError as exc:
            self.term.failed(exc, generation)
            log.warning("renewal while waiting for the scheduler failed: %s", exc)
            return self.term.leads() and self.term.readable()
        if placement is not None and node != self.host:  # this node's own deadline moved with it
            self.remote_leash(node, deadline)
        return placement is not None

    def remote_leash(self, node: str, deadline: float) -> None:
        """Renew ``node``'s leash in the background (over SSH): renewals never wait for a node."""
        with self._lock:
            if node in self.leash_pending:
                return  # the last one has not returned yet; its deadline is the safe one anyway
            self.leash_pending.add(node)

        def renew() -> None:
            renewed = False
            try:
                renewed = self.runners[node].renew_leash(deadline)  # over SSH: never under the lock
            finally:
                with self._lock:
                    if renewed:
                        if self.leash_owed.get(node, deadline) <= deadline:
                            self.leash_owed.pop(node, None)
                    else:
                        self.leash_owed[node] = max(deadline, self.leash_owed.get(node, deadline))
                    self.leash_pending.discard(node)

        try:
            self.pool.submit(renew)
        except RuntimeError:  # shut down
            with self._lock:
                self.leash_pending.discard(node)
