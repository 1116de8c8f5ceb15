"""How long a frozen scheduler runs once its container thaws: ``python -m tests.containers.thaw_watch ID PID``.

A process of its own (no GIL shared with the lab's observer) at a raised priority (nice -10, as
root) that polls every ~0.2 ms: once it printed ``ready`` it waits for the container's freezer to
read THAWED, then for ``PID`` to be gone or a zombie, and prints both instants (CLOCK_MONOTONIC)
as JSON. The difference is the time the scheduler ran after the thaw, give or take one poll.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from tests.containers.observer import frozen

POLL = 0.0002
TIMEOUT = 180.0


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def cpu_ns(pid: int) -> int | None:
    """Nanoseconds ``pid`` has run on a CPU (``/proc/PID/schedstat``), None once it is gone."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def main(argv: list[str]) -> int:
    container, pid = argv[0], int(argv[1])
    leash = parent(pid)
    with contextlib.suppress(OSError):
        os.nice(-10)
    print("ready", flush=True)
    until = time.monotonic() + TIMEOUT
    while frozen(container) and time.monotonic() < until:
        time.sleep(POLL)
    thawed = time.monotonic()
    leash_before, cpu_before = cpu_ns(leash), cpu_ns(pid)
    leash_woke = None
    cpu_last = cpu_before
    while not gone(pid) and time.monotonic() < until:
        if leash_woke is None and cpu_ns(leash) != leash_before:
            leash_woke = time.monotonic()
        cpu_last = cpu_ns(pid) or cpu_last
        time.sleep(POLL)
    ended = time.monotonic() if gone(pid) else None
    found = {
        "thawed": thawed,
        "ended": ended,
        # when the leash was first seen on a CPU after the thaw, and the CPU time the scheduler
        # root itself got after it (its last reading before it ended)
        "leash_woke": leash_woke,
        "scheduler_cpu": None if cpu_before is None or cpu_last is None else (cpu_last - cpu_before) / 1e9,
    }
    print(json.dumps(found), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
