"""The cycle's decisions in the log: each change once, a steady state as a rare one-line summary.

Every cycle returns a sentence. Logged each time, an idle cluster writes a line per poll per
controller for ever; logged only when it changes, the log says what happened and nothing else.
A sentence changes *kind* when anything but its numbers changes (pids, ages, counts: a healthy
scheduler's sentence says its pid, a restart's sentence comes between two of them); the epoch
counts as words, so a new term is a change.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

# A number standing alone (not part of a name like "n1"), unless it is an epoch.
_NUMBER = re.compile(r"(?<!epoch )(?<![\w.])\d+(?:\.\d+)?")


def kind(sentence: str) -> str:
    """``sentence`` with its numbers (but the epoch) blanked: equal kinds are the same decision."""
    return _NUMBER.sub("#", sentence)


class CycleLog:
    """Logs cycle sentences: at INFO when the kind changes, at DEBUG otherwise, and at INFO a
    summary of an unchanged decision every ``interval`` seconds (0: never)."""

    def __init__(
        self, logger: logging.Logger, interval: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.log = logger
        self.interval = interval
        self.monotonic = monotonic
        self._kind: str | None = None
        self._since = 0.0  # when the current kind began
        self._summed = 0.0  # when it was last logged or summed up
        self._repeats = 0  # cycles of the current kind since it began

    def note(self, sentence: str) -> None:
        """Log one cycle's sentence as it deserves."""
        now = self.monotonic()
        current = kind(sentence)
        if current != self._kind:
            self._kind, self._since, self._summed, self._repeats = current, now, now, 0
            self.log.info("%s", sentence)
            return
        self._repeats += 1
        if self.interval and now - self._summed >= self.interval:
            self._summed = now
            self.log.info("unchanged for %.0fs (%d cycles): %s", now - self._since, self._repeats + 1, sentence)
        else:
            self.log.debug("%s", sentence)
