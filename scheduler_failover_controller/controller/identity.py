"""One controller per node name (docs/design.md, section 6): the registry heartbeat, and a second
controller registered as the same ``current_host``, found at start-up or while running."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .. import __version__
from ..config import Config
from ..exceptions import MetastoreError
from ..metastore.base import ControllerInfo, Metastore

log = logging.getLogger(__name__)


class Identity:
    """This controller's row in the registry, and whether another holder writes it too."""

    def __init__(
        self,
        config: Config,
        store: Metastore,
        holder: str,
        pid: int,
        monotonic: Callable[[], float],
        sleep: Callable[[float], None],
        stopping: threading.Event,
    ) -> None:
        self.config = config
        self.store = store
        self.host = config.current_host
        self.holder = holder
        self.pid = pid
        self.monotonic = monotonic
        self.sleep = sleep
        self.stopping = stopping
        self._lock = threading.Lock()  # both threads heartbeat: ``heartbeats`` is counted under it
        self.heartbeats = 0  # heartbeats recorded by this process

    def heartbeat(self, role: str, paused: bool, leashed: bool) -> None:
        """Say that this controller is alive: its role, the pause it acts on, and whether its node
        runs only leashed schedulers (what an active controller needs to know of an unreachable node)."""
        info = ControllerInfo(
            self.host, self.holder, self.pid, __version__, role, 0.0, 0.0, paused=paused, leashed=leashed
        )
        try:
            self.store.heartbeat(info)
            with self._lock:
                self.heartbeats += 1
        except MetastoreError as exc:
            log.warning("heartbeat not recorded: %s", exc)

    def other_live_controller(self) -> ControllerInfo | None:
        """Another controller that is alive and registered as this host, else None.

        At start-up a registry entry of this host under another holder may be a predecessor
        (crashed, restarted within the lease): it is alive only if its heartbeat moves while this
        controller writes none (for two renewal intervals, within the lease).
        """
        ttl = self.config.lease_ttl
        first = self._registered_other()
        if first is None or first.age > ttl:
            return None
        until = self.monotonic() + min(ttl, 2 * self.config.renew_interval + self.config.metastore_timeout)
        while self.monotonic() < until and not self.stopping.is_set():
            self.sleep(min(0.2, self.config.renew_interval / 2))
            now = self._registered_other()
            if now is None or now.holder != first.holder:
                return None
            if now.last_seen > first.last_seen:
                return now
        return None

    def duplicate(self) -> ControllerInfo | None:
        """Once this controller has registered, another holder in its row is a second controller
        with the same current_host (both write it). Of the two, the one whose holder sorts first
        steps aside: each may see the other (their heartbeats overwrite the row in turn), and
        exactly one must be left. Raises MetastoreError."""
        with self._lock:
            if self.heartbeats == 0:
                return None
        other = self._registered_other()
        if other is None or other.age > self.config.lease_ttl or other.holder < self.holder:
            return None
        return other

    def _registered_other(self) -> ControllerInfo | None:
        for info in self.store.controllers():
            if info.host == self.host and info.holder != self.holder:
                return info
        return None
