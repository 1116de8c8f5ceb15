"""Preference and failback: the order of ``scheduler_nodes_in_cluster`` is the preference, and with
``failback`` on the scheduler moves back to a more preferred node once that node has been healthy
for ``failback_delay`` seconds without a break.

Healthy means seen reachable and empty (its probe STOPPED), not drained, and with no failed start
remembered (``failures``: a node that failed a start, or that the scheduler had to be moved off,
is not healthy until ``failure_timeout`` forgets it). A flapping node starts its delay again at each
break. So a node that keeps failing is tried at most once per ``failure_timeout`` (never again with
0), never in a loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import Config
from ..probe_result import ProbeResult, SchedulerState

if TYPE_CHECKING:
    from .incidents import Incidents


class Failback:
    """Since when each node has been healthy (local monotonic), and the failback target it makes."""

    def __init__(self, config: Config, monotonic: Callable[[], float]) -> None:
        self.config = config
        self.monotonic = monotonic
        self.since: dict[str, float] = {}
        self.last = float("-inf")  # the last look (local monotonic)

    def observe(self, probes: dict[str, ProbeResult], incidents: Incidents) -> None:
        """One cycle's look: each node healthy now keeps (or starts) its streak; any other loses it.
        A gap in the looks (paused, standby, a stalled cycle) ends every streak: unseen is not healthy."""
        now = self.monotonic()
        if now - self.last > 3 * self.config.poll_frequency:
            self.since.clear()
        self.last = now
        for node in self.config.nodes:
            probe = probes.get(node)
            healthy = (
                probe is not None
                and probe.state is SchedulerState.STOPPED
                and node not in incidents.drained
                and incidents.memory.strikes(node) == 0
                and incidents.until(node) <= now
            )
            if healthy:
                self.since.setdefault(node, now)
            else:
                self.since.pop(node, None)

    def target(self, placed: str) -> str | None:
        """The most preferred node before ``placed`` that has been healthy for ``failback_delay``; None
        when failback is off or there is none."""
        if not self.config.failback:
            return None
        now = self.monotonic()
        for node in self.config.nodes:
            if node == placed:
                return None
            since = self.since.get(node)
            if since is not None and now - since >= self.config.failback_delay:
                return node
        return None

    def tried(self, node: str) -> None:
        """A failback to ``node`` was tried: its streak starts again (whatever came of it)."""
        self.since.pop(node, None)
