"""Failures of the scheduler, counted: the restart budget, each node's backoff (and so which node
may take the scheduler next), and alerts once per incident.

Three counts with three meanings (L2 in docs/design.md: one failed probe is not a failover):

- ``restarts``: restarts in place since the scheduler last ran stably (the budget
  ``max_restart_attempts`` before a move);
- ``faults``: deaths and failed starts since it last ran stably (``retry_count_before_alerting``);
- ``Backoff.strikes``: failed starts of one node, which double how long it is kept out of moves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..alerts import Alerter
from ..config import Config
from ..metastore.events import EventKind
from ..probe_result import ProbeResult, SchedulerState

log = logging.getLogger(__name__)

NEVER = float("-inf")


@dataclass
class Backoff:
    """One node kept out of moves and retries until ``until`` (local monotonic)."""

    strikes: int = 0
    until: float = NEVER


class Incidents:
    """The failure counts, the backoffs and the alert of the current incident."""

    def __init__(
        self,
        config: Config,
        alerter: Alerter,
        event: Callable[..., None],  # Controller._event
        monotonic: Callable[[], float],
    ) -> None:
        self.config = config
        self.alerter = alerter
        self._event = event
        self.monotonic = monotonic
        self.restarts = 0
        self.faults = 0
        self.backoff: dict[str, Backoff] = {}
        self.reported = False  # the current incident has been alerted on
        self.last_start = NEVER

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

    def back_off(self, node: str) -> None:
        """Keep ``node`` out of moves and retries for a while, doubling with each failure (up to 8x)."""
        backoff = self.backoff.setdefault(node, Backoff())
        backoff.strikes += 1
        backoff.until = self.monotonic() + self.config.move_backoff * min(8, 2 ** (backoff.strikes - 1))

    def until(self, node: str) -> float:
        """When ``node``'s backoff ends (local monotonic; NEVER when it has none)."""
        return self.backoff.get(node, Backoff()).until

    def pick_target(self, probes: dict[str, ProbeResult], exclude: str | None, prefer: str | None) -> str | None:
        """The next node, in list order after ``exclude``, that is reachable, empty and not backing off
        (``prefer`` first, then this controller's own node)."""
        now = self.monotonic()
        nodes = list(self.config.nodes)
        if exclude in nodes:
            i = nodes.index(exclude)
            nodes = nodes[i + 1 :] + nodes[:i]
        order = [n for n in (prefer, self.config.current_host) if n in nodes] + nodes
        for node in dict.fromkeys(order):
            if node == exclude or probes[node].state is not SchedulerState.STOPPED:
                continue
            if self.until(node) > now:
                continue
            return node
        return None

    def why_no_target(self, probes: dict[str, ProbeResult]) -> str:
        """Why ``pick_target`` found no node: each node's backoff or state."""
        now = self.monotonic()
        parts = []
        for node, probe in probes.items():
            wait = self.until(node) - now
            parts.append(f"{node} backing off {wait:.0f}s" if wait > 0 else f"{node} {probe.state.value}")
        return ", ".join(parts)

    def started(self) -> None:
        """A scheduler came up just now."""
        self.last_start = self.monotonic()

    def healthy(self) -> None:
        """The scheduler was seen healthy: once it has run stably, the incident is over."""
        stable = self.monotonic() - self.last_start >= 3 * self.config.poll_frequency
        if stable and (self.restarts or self.reported):
            self.restarts = 0
            self.faults = 0
            self.reported = False
            self.backoff.clear()
