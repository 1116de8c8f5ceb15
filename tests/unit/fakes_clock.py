"""An injectable monotonic clock for unit tests: it moves only when told to, and moves linked clocks."""

from __future__ import annotations

import threading
from collections.abc import Callable

# --- time ---------------------------------------------------------------------------------


class FakeClock:
    """A monotonic clock that only moves when told to; ``sleep`` moves it instead of waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._followers: list[Callable[[float], None]] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move this clock, and every linked clock, forward by ``seconds``."""
        with self._lock:
            self.now += seconds
            followers = list(self._followers)
        for follow in followers:
            follow(seconds)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def link(self, follow: Callable[[float], None]) -> None:
        """Call ``follow(seconds)`` on every advance (e.g. a store's server clock)."""
        self._followers.append(follow)
