"""A controller that cannot look at its own node leaves the leadership to one that can.

Such a controller (out of file descriptors, its process table unreadable) cannot renew its own
placement (see :mod:`.renewals`), so its leash stops the scheduler there at the deadline; as the
active it could then place nothing either: every look of it fails alike. So, while another
controller is alive, it does not ask for the lease, and as the active it releases it once its
own placement has expired. Releasing is always safe: a new active starts nothing while a
placement is valid, nor past a node it cannot see that may run an unleashed scheduler.

A blind standby heartbeats the role ``blind``, and an active placing the scheduler anew does not
prefer such a node: whatever brought its controller down (a process table it cannot read) may
ail the node too, and nothing there would guard it but its leash.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..exceptions import MetastoreError
from ..metastore.base import ClusterState, Metastore
from ..metastore.events import EventKind
from ..probe_result import ProbeResult, SchedulerState
from .fencing import only_leashed

log = logging.getLogger(__name__)

#: the role a blind controller that holds no lease heartbeats (``status`` shows it)
BLIND_ROLE = "blind"


class Blindness:
    """Whether this controller's last look at its own node failed, and what follows from it.

    Also what the heartbeat says of this node's schedulers (``leashed``). Both threads take their
    looks in (``note``): ``why``, ``leashed`` and the time of the newest look are kept behind
    ``_lock``, and a look older than one taken in changes nothing.
    """

    def __init__(
        self, host: str, store: Metastore, ttl: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.host = host
        self.store = store
        self.ttl = ttl
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._why = ""  # the detail of the last look at the own node that failed ("": it saw)
        self._leashed = True  # the node runs no scheduler, or only leashed ones (as the last look that saw it)
        self._looked_at = 0.0  # the newest look taken in
        self._latest: tuple[float, ProbeResult] | None = None  # (monotonic, that look): for the HTTP API

    @property
    def latest(self) -> tuple[float, ProbeResult] | None:
        """When (monotonic) this node was last looked at, and what was seen; None: not yet."""
        with self._lock:
            return self._latest

    @property
    def why(self) -> str:
        with self._lock:
            return self._why

    @property
    def leashed(self) -> bool:
        """Whether the node runs only leashed schedulers, from a look that saw them (a look that could
        not keeps the last: it knows nothing new, and its placement is not renewed meanwhile)."""
        with self._lock:
            return self._leashed

    def note(self, probe: ProbeResult) -> None:
        """Take in a look at this controller's own node."""
        why = probe.detail or "unknown" if probe.state is SchedulerState.UNKNOWN else ""
        with self._lock:
            if probe.looked_at and probe.looked_at < self._looked_at:
                return  # older than a look the other thread took in
            self._looked_at = max(self._looked_at, probe.looked_at)
            self._latest = (self.monotonic(), probe)
            was, self._why = self._why, why
            if probe.state is not SchedulerState.UNKNOWN:
                self._leashed = only_leashed(probe)
        if why and not was:
            log.warning("%s: cannot see this node's own processes (%s)", self.host, why)
        elif was and not why:
            log.info("%s: this node's own processes can be seen again", self.host)

    def peers(self) -> list[str]:
        """The other controllers alive by their heartbeat (none when the store cannot tell)."""
        try:
            return sorted({c.host for c in self.store.controllers() if c.host != self.host and c.age <= self.ttl})
        except MetastoreError:
            return []

    def abstains(self) -> bool:
        """Whether this controller, blind, leaves the lease to another live controller."""
        return bool(self.why) and bool(self.peers())

    def steps_down(self, state: ClusterState) -> list[str]:
        """The live controllers an active one leaves the lease to: blind, with no valid placement
        of its own node left (its leash has stopped the scheduler there); else none."""
        why = self.why
        if not why or (state.placement.valid and state.placement.node == self.host):
            return []
        return self.peers()

    def role(self, role: str) -> str:
        """The role to heartbeat for ``role`` (a standby's or stopped one's is ``blind`` while blind)."""
        return BLIND_ROLE if self.why and role != "active" else role

    def preferred(self, node: str | None) -> str | None:
        """``node`` as the node to place on first, unless its controller is alive and blind."""
        if node is None:
            return None
        try:
            blind = any(c.host == node and c.role == BLIND_ROLE and c.age <= self.ttl for c in self.store.controllers())
        except MetastoreError:
            return node
        return None if blind else node

    def step_down(
        self, state: ClusterState, holder: str, stand_by: Callable[[], object], event: Callable[[EventKind, str], None]
    ) -> str:
        """As the active ``holder``, blind at this cycle's look: release the lease to a live
        controller that may see (``stand_by`` first, so that no renewal takes it again meanwhile);
        what was done ("": nothing)."""
        peers = self.steps_down(state)
        if not peers:
            return ""
        message = f"cannot see {self.host} ({self.why}): left the lease to {', '.join(peers)}"
        log.warning("%s", message)
        event(EventKind.STEP_DOWN, message)
        stand_by()
        try:
            self.store.release(holder)
        except MetastoreError as exc:
            return f"standby: {message}, but its release failed ({exc}): it runs out instead"
        return f"standby: {message}"
