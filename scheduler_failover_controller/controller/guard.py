"""Self-fencing (S2 in docs/design.md): this node's scheduler is stopped before its placement can expire.

A mixin of ``Controller``: ``_guard`` keeps this node's placement alive or makes sure its
scheduler is down; ``_metastore_down`` (and ``_unreadable``) decide what a cycle does when the
store cannot be reached or read: act on nothing, and fence this node when time runs out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..config import Config
from ..exceptions import CorruptRecord, MetastoreError
from ..metastore.base import ClusterState, Placement
from ..metastore.events import EventKind
from ..nodes.base import NodeRunner
from ..probe_result import ProbeResult
from .health import seen_running
from .renewals import Renewals
from .starts import stop
from .term import Role, Term

log = logging.getLogger("scheduler_failover_controller.controller")


class Guard:
    """This node's guard (``_guard``) and the cycle without a readable store (``_metastore_down``)."""

    config: Config
    host: str
    monotonic: Callable[[], float]
    sleep: Callable[[float], None]
    term: Term
    renewals: Renewals
    paused: bool
    store_answered: bool
    last_state: ClusterState | None

    @property
    def role(self) -> Role:
        raise NotImplementedError

    @property
    def local(self) -> NodeRunner:
        raise NotImplementedError

    @property
    def lookahead(self) -> float:
        raise NotImplementedError

    @property
    def placement_deadline(self) -> float:
        raise NotImplementedError

    def leads(self) -> bool:
        raise NotImplementedError

    def may_run_locally(self, lookahead: float = 0.0) -> bool:
        raise NotImplementedError

    def _event(
        self, kind: EventKind, message: str, request_id: str = "", *, node: str = "", from_node: str = ""
    ) -> None:
        raise NotImplementedError

    def _look_local(self) -> ProbeResult:
        raise NotImplementedError

    def _note_leashed(self, probe: ProbeResult) -> None:
        raise NotImplementedError

    def _unreadable(self, exc: CorruptRecord) -> str:
        """The store answers, but with a record no valid write produces: exactly as if it were down."""
        self.term.failed(exc)
        log.warning(
            "%s: no valid write produces that record; acting on nothing and renewing nothing "
            "(the lease lapses, this node fences itself as with the store down) until it is fixed",
            exc,
        )
        return self._metastore_down(exc, "unreadable")

    def _metastore_down(self, exc: MetastoreError, how: str = "unreachable") -> str:
        """The store cannot be reached (or read): act on nothing, and fence our node when time runs out."""
        now = self.monotonic()
        self.term.lapse(now)
        if self.paused:
            return f"{self.role}: metastore {how} ({exc}); paused, acting on nothing"
        if now + self.lookahead < self.placement_deadline:
            return (
                f"{self.role}: metastore {how} ({exc}); local scheduler may run "
                f"{self.placement_deadline - self.lookahead - now:.1f}s more before self-fencing"
            )
        probe = self._look_local()
        if probe.leashed and not self.store_answered:
            # Started with the store down: this process never learnt the placement, but the
            # leash holds the deadline the last renewal gave it and stops the scheduler then.
            return (
                f"{self.role}: metastore {how} ({exc}); the local scheduler ({probe.describe()}) "
                "is left to its leash, which stops it at its placement deadline unless the store answers first"
            )
        if seen_running(probe):
            # One failed call is not proof: e.g. a ZooKeeper client that was frozen finds its
            # session expired, and its first call fails while it reconnects. Ask once more. Only
            # when the deadline is already behind us (we were frozen) is that worth a short wait
            # for the connection; before it, the stop must not be delayed.
            if now >= self.placement_deadline:
                self.term.wait_usable(self.config.metastore_timeout, self.sleep)
            renewed, _ = self._reconfirm_placement()
            if renewed:
                return (
                    f"{self.role}: a metastore call failed ({exc}), but the store answered again and "
                    f"renewed this node's placement; local scheduler kept"
                )
            after = stop(self.local)
            return (
                f"{self.role}: metastore {how} ({exc}); self-fenced: stopped the local scheduler "
                f"({probe.describe()} -> {after.state.value}) before its placement could expire"
            )
        return f"{self.role}: metastore {how} ({exc}); no local scheduler, acting on nothing"

    def _guard(self, state: ClusterState, t0: float, probe: ProbeResult | None) -> str | None:
        """Keep this node's placement alive, or make sure its scheduler is down. S2."""
        placement = state.placement
        probe = probe or self._look_local()
        self._note_leashed(probe)
        renewed: Placement | None = None
        if placement.node == self.host and placement.valid:
            renewed = self.renewals.own(probe, t0)
        elif placement.node != self.host:
            self.term.forget_placement()
        # Not renewed now: the placement must outlive the next chance to renew it, or we fence.
        if self.paused or self.may_run_locally(0.0 if renewed is not None else self.lookahead):
            return None
        if not seen_running(probe):
            return None
        if self.role is Role.ACTIVE and self.leads() and not placement.valid:
            return None  # no placement anywhere: the active adopts it (or kills it as a stray) below
        # Re-read before killing: the active controller may have just placed the scheduler here.
        kept, fresh = self._reconfirm_placement()
        if kept:
            return None
        after = stop(self.local)
        if fresh.node == self.host and fresh.valid:  # ours as last read, but it could not be renewed in time
            why = "whose placement could not be renewed before it would expire"
        else:
            why = f"that holds no valid placement (placement is on {fresh.node if fresh.valid else 'no node'})"
        message = f"stopped a scheduler on {self.host} ({probe.describe()}) {why}; now {after.state.value}"
        self._event(EventKind.FENCE, message, node=self.host)
        return f"{self.role}: {message}"

    def _reconfirm_placement(self) -> tuple[bool, Placement]:
        """Read the placement afresh and renew it if it is this node's: (renewed, what was read; the
        last read when the store cannot be read)."""
        fallback = self.last_state.placement if self.last_state else Placement(None, 0, 0.0, 0, 0.0)
        return self.term.reconfirm(fallback)
