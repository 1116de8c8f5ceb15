"""Bounded waits for tests: until something is true, or that it stays true for a while."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll ``predicate`` until true; return the monotonic instant it was seen true, fail naming ``what``."""
    until = time.monotonic() + timeout
    while True:
        if predicate():
            return time.monotonic()
        if time.monotonic() > until:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll ``predicate`` until true; return the seconds it took, fail naming ``what``."""
    began = time.monotonic()
    return wait_until(predicate, timeout, what, interval) - began


def holds_for(predicate: Callable[[], object], seconds: float, what: str, interval: float = 0.05) -> None:
    """Check ``predicate`` all through ``seconds``; fail at the first look it is false, naming ``what``.

    Unlike ``sleep(seconds); assert predicate()``, a failure that comes and goes in between is seen.
    """
    began = time.monotonic()
    while True:
        if not predicate():
            raise AssertionError(f"{what} stopped holding after {time.monotonic() - began:.2f}s of {seconds:g}s")
        if time.monotonic() - began >= seconds:
            return
        time.sleep(interval)
