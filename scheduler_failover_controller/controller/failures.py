"""Each node's failed starts, kept in the metastore: how long the node is avoided, and when its
failures are forgotten (``failure_timeout``).

The store counts every failed start with the server's clock, so a new active controller inherits
the count (``load`` at the start of each term). Locally each count becomes two ``time.monotonic()``
deadlines: the end of the node's backoff (``move_backoff``, doubling with each failure up to 8x,
after the last one) and the moment its failures are forgotten, ``failure_timeout`` after the last
one (0: never). A store that cannot be reached costs nothing but the inheritance: the count goes
on in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Config
from ..exceptions import MetastoreError
from ..metastore.base import Metastore
from ..metastore.nodestate import NodeFailures, backoff_seconds

log = logging.getLogger(__name__)

NEVER = float("-inf")
FOREVER = float("inf")


@dataclass
class Backoff:
    """One node's failed starts (``strikes``) and the end of its backoff (local monotonic)."""

    strikes: int = 0
    until: float = NEVER
    forget_at: float = FOREVER  # local monotonic: when the strikes are forgotten


class FailureMemory:
    """The nodes' failed starts: counted in the store, judged by local deadlines."""

    def __init__(self, config: Config, store: Metastore | None, monotonic: Callable[[], float]) -> None:
        self.config = config
        self.store = store
        self.monotonic = monotonic
        self.nodes: dict[str, Backoff] = {}

    def _note(self, failures: NodeFailures, t0: float) -> Backoff:
        """``failures`` as read at local time ``t0`` (before the call): its local deadlines."""
        last = t0 - failures.age
        timeout = self.config.failure_timeout
        kept = Backoff(
            failures.strikes,
            last + backoff_seconds(failures.strikes, self.config.move_backoff),
            last + timeout if timeout > 0 else FOREVER,
        )
        self.nodes[failures.node] = kept
        return kept

    def load(self) -> None:
        """Take the store's counts (a new term inherits them); on failure keep what is known here."""
        if self.store is None:
            return
        t0 = self.monotonic()
        try:
            found = self.store.failures()
        except MetastoreError as exc:
            log.warning("failed starts not read from the metastore (%s); kept as this controller knows them", exc)
            return
        self.nodes.clear()
        for failures in found:
            self._note(failures, t0)
        self.expire()
        for node, kept in sorted(self.nodes.items()):
            log.info(
                "%s: %d failed start(s) kept from before; avoided for %.0fs more",
                node,
                kept.strikes,
                max(0.0, kept.until - t0),
            )

    def record(self, node: str) -> None:
        """One more failed start of ``node``: counted in the store (else here), its backoff begins."""
        t0 = self.monotonic()
        if self.store is not None:
            try:
                self._note(self.store.record_failure(node), t0)
                return
            except MetastoreError as exc:
                log.warning("failed start of %s not counted in the metastore (%s); counted here", node, exc)
        strikes = self.strikes(node) + 1
        self._note(NodeFailures(node, strikes, 0.0, 0.0), t0)

    def expire(self) -> None:
        """Forget the failures whose ``failure_timeout`` has passed, here and in the store."""
        now = self.monotonic()
        for node, kept in list(self.nodes.items()):
            if kept.forget_at > now:
                continue
            del self.nodes[node]
            log.info("%s: its %d failed start(s) are forgotten (failure_timeout)", node, kept.strikes)
            if self.store is not None:
                try:
                    self.store.forget_failures(node, kept.strikes)
                except MetastoreError as exc:
                    log.debug("failures of %s not forgotten in the metastore yet: %s", node, exc)

    def strikes(self, node: str) -> int:
        """``node``'s failed starts still remembered (0: none)."""
        kept = self.nodes.get(node)
        return 0 if kept is None or kept.forget_at <= self.monotonic() else kept.strikes

    def until(self, node: str) -> float:
        """When ``node``'s backoff ends (local monotonic; NEVER when it has none)."""
        kept = self.nodes.get(node)
        return NEVER if kept is None else min(kept.until, kept.forget_at)
