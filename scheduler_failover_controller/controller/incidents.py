"""Failures of the scheduler, counted: the restart budget, each node's backoff (and so which node
may take the scheduler next), and alerts once per incident.

Three counts with three meanings (L2 in docs/design.md: one failed probe is not a failover):

- ``restarts``: restarts in place since the scheduler last ran stably (the budget
  ``max_restart_attempts`` before a move);
- ``faults``: deaths and failed starts since it last ran stably (``retry_count_before_alerting``);
- ``Backoff.strikes``: failed starts of one node, which double how long it is kept out of moves;
  kept in the metastore and forgotten ``failure_timeout`` after the last one (``failures``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..alerts import Alerter
from ..config import Config
from ..exceptions import MetastoreError
from ..metastore.base import Metastore
from ..metastore.events import EventKind
from ..probe_result import ProbeResult, SchedulerState
from .failback import Failback
from .failures import Backoff, FailureMemory

log = logging.getLogger(__name__)

NEVER = float("-inf")


class Incidents:
    """The failure counts, the backoffs and the alert of the current incident."""

    def __init__(
        self,
        config: Config,
        alerter: Alerter,
        event: Callable[..., None],  # Controller._event
        monotonic: Callable[[], float],
        store: Metastore | None = None,
    ) -> None:
        self.config = config
        self.alerter = alerter
        self._event = event
        self.monotonic = monotonic
        self.restarts = 0
        self.faults = 0
        self.memory = FailureMemory(config, store, monotonic)  # each node's failed starts, kept in the store
        self.failback = Failback(config, monotonic)  # preference by list order; moving back when healthy
        self.reported = False  # the current incident has been alerted on
        self.last_start = NEVER
        self.drained: frozenset[str] = frozenset()  # as the cycle last read them: never a target
        # node -> why: barred by the other services' placements (colocation.py), as the cycle last read them
        self.barred: dict[str, str] = {}

    def alert(self, summary: str, body: str, always: bool = False) -> None:
        """One alert per incident (plus every ``always`` one), so failures never storm."""
        if self.reported and not always:
            log.info("alert suppressed (incident already reported): %s", summary)
            return
        self.reported = True
        self._event(EventKind.ALERT, summary)
        self.alerter.notify(summary, body)

    def failed(self, node: str, detail: str, start_failed: bool) -> None:
        """Count a scheduler death or failed start; back the node off; alert once per incident."""
        self.faults += 1
        if start_failed:
            self.back_off(node)
            self._event(EventKind.START_FAILED, f"scheduler start on {node} failed: {detail}", node=node)
        if self.faults >= max(1, self.config.retry_count_before_alerting):
            self.alert(
                f"scheduler failed {self.faults} times",
                f"The scheduler keeps failing (last on {node}): {detail}",
            )

    def new_term(self) -> None:
        """This controller became active: no restarts yet; the failed starts as the last term left them."""
        self.restarts = 0
        self.memory.load()

    @property
    def backoff(self) -> dict[str, Backoff]:
        """The nodes with failed starts remembered, and their backoffs."""
        return self.memory.nodes

    def back_off(self, node: str) -> None:
        """Keep ``node`` out of moves and retries for a while, doubling with each failure (up to 8x)."""
        self.memory.record(node)

    def until(self, node: str) -> float:
        """When ``node``'s backoff ends (local monotonic; NEVER when it has none)."""
        return self.memory.until(node)

    def pick_target(self, probes: dict[str, ProbeResult], exclude: str | None, prefer: str | None) -> str | None:
        """The most preferred node other than ``exclude`` that is reachable, empty, not drained and not
        backing off: ``prefer`` first, then the nodes whose own controller is alive (they guard their
        own scheduler), then the rest, each in the order of ``scheduler_nodes_in_cluster``."""
        now = self.monotonic()
        nodes = list(self.config.nodes)
        order = [n for n in (prefer,) if n in nodes] + nodes
        eligible = [
            node
            for node in dict.fromkeys(order)
            if node != exclude
            and node not in self.drained
            and node not in self.barred
            and probes[node].state is SchedulerState.STOPPED
            and self.until(node) <= now
        ]
        if len(eligible) < 2 or eligible[0] == prefer:
            return eligible[0] if eligible else None
        guarded = self._guarded()
        return next((n for n in eligible if guarded is None or n in guarded), eligible[0])

    def _guarded(self) -> set[str] | None:
        """The nodes whose own controller was seen within ``lease_ttl`` (None: not known)."""
        store = self.memory.store
        if store is None:
            return None
        try:
            return {c.host for c in store.controllers() if c.age <= self.config.lease_ttl}
        except MetastoreError:
            return None

    def why_no_target(self, probes: dict[str, ProbeResult]) -> str:
        """Why ``pick_target`` found no node: each node's backoff or state."""
        now = self.monotonic()
        parts = []
        for node, probe in probes.items():
            wait = self.until(node) - now
            if node in self.drained:
                parts.append(f"{node} drained")
            elif node in self.barred:
                parts.append(f"{node} barred: {self.barred[node]}")
            else:
                parts.append(f"{node} backing off {wait:.0f}s" if wait > 0 else f"{node} {probe.state.value}")
        return ", ".join(parts)

    def started(self) -> None:
        """A scheduler came up just now."""
        self.last_start = self.monotonic()

    def healthy(self) -> None:
        """The scheduler was seen healthy: once it has run stably, the incident is over."""
        stable = self.monotonic() - self.last_start >= 3 * self.config.poll_frequency
        if stable and (self.restarts or self.reported):  # failed starts stay: failure_timeout forgets them
            self.restarts = 0
            self.faults = 0
            self.reported = False
