"""A new controller incarnation of a node, and the one before it that may still run a scheduler
this one cannot see (docs/design.md, 5a, "A new incarnation").

A report proves what runs on a node only when its writer sees everything the node's previous
writer may have started. A controller that finds its node's stored report written by another
holder cannot tell a restart on the same host from a second copy elsewhere (a force-deleted pod's
replacement, a restored snapshot) by looking for nothing: only by seeing. So until it SEES the
predecessor's scheduler (running, leashed: the same host's processes, which it then adopts), or
every placement the predecessor could have renewed has expired by the server's clock, its look
at its node is UNKNOWN: exactly what the active makes of a node whose controller is dead.
"""

from __future__ import annotations

import logging
import math
import threading

from ..exceptions import CommandFailed
from ..metastore.base import Placement
from ..metastore.reports import NodeReport
from ..nodes.base import NodeRunner
from ..probe_result import ProbeResult, SchedulerState
from .health import seen_running

log = logging.getLogger("scheduler_failover_controller.controller")


def predecessor_may_run(prior: NodeReport, placement: Placement, host: str) -> bool:
    """Whether the holder of ``prior`` (this node's stored report) may still run a scheduler here.

    It cannot only when it last reported nothing running, for the current placement version, and
    that placement gives it nothing to start for (a start needs a valid placement naming the node).
    """
    placed_here = placement.valid and placement.node == host
    return prior.state != SchedulerState.STOPPED.value or prior.answers < placement.version or placed_here


class Succession:
    """Whether a previous incarnation of this node's controller may still run a scheduler unseen.

    Shared by the cycle and the renewal thread: every field is read and moved under ``_lock``.
    """

    def __init__(self, host: str, holder: str, ttl: float) -> None:
        self.host = host
        self.holder = holder
        self.ttl = ttl  # lease_ttl: how far one renewal moves a placement's expiry
        self._lock = threading.Lock()
        self._predecessor: str | None = None  # its holder id, while it may run
        self._leashed = True  # what it last said of its schedulers
        self._until = math.inf  # server time by which every placement it could renew expired

    @property
    def pending(self) -> str | None:
        """The predecessor's holder id while it may still run a scheduler here, else None."""
        with self._lock:
            return self._predecessor

    def begin(self, prior: NodeReport | None, placement: Placement) -> None:
        """Take over from ``prior``, the stored report of this node, read with ``placement``."""
        if prior is None or prior.holder == self.holder or not predecessor_may_run(prior, placement, self.host):
            return
        with self._lock:
            self._predecessor = prior.holder
            self._leashed = prior.leashed or prior.state == SchedulerState.STOPPED.value
        log.warning(
            "this node's last report is of another controller (%s, %s%s): until this one sees that "
            "scheduler here or its placements expire, this node reads as unknown",
            prior.holder,
            prior.state,
            ", leashed" if prior.leashed else "",
        )
        self.placement(placement)

    def placement(self, placement: Placement) -> None:
        """What a read of the placement bounds: once it no longer names this node validly, the
        predecessor can renew nothing placed before the read; the bound passes by the server's clock."""
        with self._lock:
            if self._predecessor is None:
                return
            if not (placement.valid and placement.node == self.host):
                if placement.node is None or placement.node == self.host:
                    bound = placement.expires_at  # the latest renewal of anything before it, or its own
                else:
                    # written before this read, after the predecessor's last renewal here
                    bound = placement.server_now + self.ttl
                self._until = min(self._until, bound)
            if placement.server_now < self._until:
                return
            predecessor, self._predecessor = self._predecessor, None
        log.info(
            "the previous controller of this node (%s) can no longer run a scheduler: its placements expired",
            predecessor,
        )

    def look(self, probe: ProbeResult) -> ProbeResult:
        """This node's look as its reports and decisions must take it."""
        with self._lock:
            predecessor = self._predecessor
            if predecessor is None:
                return probe
            if seen_running(probe) and probe.leashed:
                self._predecessor = None  # seen here: this host's own processes, adopted
            else:
                return ProbeResult(
                    probe.node,
                    SchedulerState.UNKNOWN,
                    detail=f"a previous controller of this node ({predecessor}) may still run a scheduler unseen",
                    leashed=self._leashed,
                )
        log.info("the previous controller's scheduler runs here (%s): adopted", probe.describe())
        return probe


class SuccessionRunner(NodeRunner):
    """This node's runner, with its looks taken through :class:`Succession` and no start while a
    predecessor may run."""

    def __init__(self, inner: NodeRunner, succession: Succession) -> None:
        super().__init__(inner.node)
        self.inner = inner
        self.succession = succession

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def probe(self) -> ProbeResult:
        return self.succession.look(self.inner.probe())

    def start(self, deadline: float) -> None:
        predecessor = self.succession.pending
        if predecessor is not None:
            raise CommandFailed(f"a previous controller of this node ({predecessor}) may still run a scheduler here")
        self.inner.start(deadline)

    def renew_leash(self, deadline: float) -> bool:
        return self.inner.renew_leash(deadline)

    def stop(self, grace: float | None = None) -> ProbeResult:
        return self.succession.look(self.inner.stop(grace))

    def close(self) -> None:
        self.inner.close()
