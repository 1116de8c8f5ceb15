"""When the controller's cycle and its renewals last showed life: what ``/health`` answers from.

One owner for these times: the daemon's loop writes the cycle's, the renewal thread the renewals',
each under this object's lock; the HTTP thread only reads them through :meth:`Liveness.problems`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .config import Config


class Liveness:
    """The last cycle's begin and end and the last renewal that reached the store (monotonic).

    Alive: the last cycle ended within two polls (or the one under way began within two polls plus
    the longest start and stop it may wait for), and a renewal wrote this controller's heartbeat
    within two renewal intervals. Both count from the start until they happen first.
    """

    def __init__(self, config: Config, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.poll = config.poll_frequency
        self.renew_interval = config.renew_interval
        # a cycle may wait for a start and a stop; it is stuck only past those
        self.cycle_allowance = config.scheduler_start_timeout + config.scheduler_stop_timeout
        self.monotonic = monotonic
        self._lock = threading.Lock()
        began = monotonic()
        self._cycle_began: float | None = None  # set while a cycle runs
        self._cycle_ended = began
        self._renewed = began

    def cycle_began(self) -> None:
        with self._lock:
            self._cycle_began = self.monotonic()

    def cycle_ended(self) -> None:
        with self._lock:
            self._cycle_began = None
            self._cycle_ended = self.monotonic()

    def renewed(self) -> None:
        """A renewal round wrote this controller's heartbeat: the store answered it."""
        with self._lock:
            self._renewed = self.monotonic()

    def ages(self) -> tuple[float, float | None, float]:
        """(seconds since the last cycle ended, since the running one began or None, since the last renewal)."""
        with self._lock:
            began, ended, renewed = self._cycle_began, self._cycle_ended, self._renewed
        now = self.monotonic()
        return now - ended, None if began is None else now - began, now - renewed

    def problems(self) -> list[str]:
        """Why this controller is not alive now; empty when it is."""
        ended, running, renewed = self.ages()
        problems = []
        if running is not None:
            if running > 2 * self.poll + self.cycle_allowance:
                problems.append(f"the cycle under way began {running:.1f}s ago")
        elif ended > 2 * self.poll:
            problems.append(f"the last cycle ended {ended:.1f}s ago (poll {self.poll:g}s)")
        if renewed > 2 * self.renew_interval:
            problems.append(f"the last renewal was {renewed:.1f}s ago (every {self.renew_interval:g}s)")
        return problems
