"""Loaded (via PYTHONPATH) only into a lab controller that runs under libfaketime.

libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC=1 (the wall clock off, CLOCK_MONOTONIC
left alone, as on a host whose clock is wrong) breaks clock_nanosleep(TIMER_ABSTIME), which
Python's time.sleep() uses: every sleep fails with EINVAL. Faking CLOCK_MONOTONIC as well is
worse: Python's timed waits (sem_clockwait, not intercepted) then never end. So the lab keeps
the monotonic clock real, turns off libfaketime's "monotonic fix" (FAKETIME_FORCE_MONOTONIC_FIX=0:
it makes CPython's GIL waits expire at once, and every waiting thread spin) and sleeps with
select() instead, which libfaketime leaves alone.
Nothing else changes: time.time(), datetime and every child process see the skewed wall clock.
"""

import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    select.select([], [], [], seconds)


time.sleep = _sleep  # type: ignore[assignment,unused-ignore]  # needed on some Pythons only
