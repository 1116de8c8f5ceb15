"""Which boot of this machine a record belongs to, and process identities no clock step can move.

``CLOCK_MONOTONIC`` and process start times restart at every boot, so a deadline or a pid written
before a reboot means nothing after it: records that hold them carry the boot id
(``/proc/sys/kernel/random/boot_id``) and are ignored under another. A process is identified by
its pid with its start time in clock ticks since boot (``/proc/PID/stat`` field 22): unlike
psutil's ``create_time()`` (boot time + ticks, the boot time re-derived from the wall clock on
every call), a step of the wall clock does not move it.
"""

from __future__ import annotations

import functools
import os
import time

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


@functools.lru_cache(maxsize=1)
def boot_id() -> str:
    """This boot's id; "" where the kernel does not say (then every record counts as this boot's)."""
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as handle:
            return handle.read(64).strip()
    except (OSError, UnicodeDecodeError):
        return ""


@functools.lru_cache(maxsize=1)
def clock_ticks() -> int:
    """Clock ticks per second (``SC_CLK_TCK``), the unit of process start times."""
    try:
        return int(os.sysconf("SC_CLK_TCK")) or 100
    except (ValueError, OSError):
        return 100


def stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (``state`` first, so field N of
    proc(5) is index N - 3); None when the process is not there."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return data.rpartition(b")")[2].split()


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot; None when it is not there."""
    fields = stat_fields(pid)
    try:
        return int(fields[19]) if fields is not None else None
    except (IndexError, ValueError):
        return None


def since_boot(pid: int) -> float:
    """When ``pid`` started, in seconds since boot (0.0 when it is gone): unlike psutil's create
    time, which adds the boot time the kernel derives from the wall clock, no clock step moves it."""
    ticks = start_ticks(pid)
    return 0.0 if ticks is None else ticks / clock_ticks()


def uptime() -> float | None:
    """Seconds since boot (``/proc/uptime``, the clock process start times count on)."""
    try:
        with open("/proc/uptime", encoding="ascii") as handle:
            return float(handle.read(64).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def started_monotonic(pid: int, now: float, window: float = 5.0) -> float:
    """When ``pid`` started, on ``time.monotonic()`` (``now`` is a reading of it), never earlier than
    ``now - window``; ``now`` when it cannot be told.

    Start ticks count on the boot clock (``CLOCK_BOOTTIME``, which goes on during a suspend), so
    they are moved onto the monotonic clock by the two clocks' difference now. The end of the
    start's tick: what was written in the tick it started in counts as written before.
    """
    ticks = start_ticks(pid)
    if ticks is None:
        return now
    try:
        offset = time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()
    except (AttributeError, OSError):
        offset = 0.0
    return min(now, max(now - window, (ticks + 1) / clock_ticks() - offset))
