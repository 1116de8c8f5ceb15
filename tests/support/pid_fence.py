"""A ``fence_command`` for tests on one host: it "powers off" a node by SIGKILLing the processes
the test recorded as that node's (its controller, its leash and everything below it).

    python tests/support/pid_fence.py DIR NODE

``DIR/NODE.json`` lists ``[pid, start ticks]`` pairs (see :func:`record`); a process whose start
differs is another one that reused the pid, and is left alone. Exit 0 only once every one of them
is gone (a zombie is: it runs nothing), as the contract of ``fence_command`` asks; exit 1 for a
node without a record, or when one survives. On success it writes ``DIR/NODE.fenced``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil

from scheduler_failover_controller.boot import start_ticks


def record(directory: Path, node: str, pids: list[int]) -> None:
    """Write what fencing ``node`` ends: these processes, each with its start."""
    entries = [[pid, start_ticks(pid)] for pid in pids]
    (directory / f"{node}.json").write_text(json.dumps([e for e in entries if e[1] is not None]))


def alive(pid: int, ticks: int) -> bool:
    """Whether the process ``pid`` that started at ``ticks`` still runs (a zombie does not)."""
    if start_ticks(pid) != ticks:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def main(argv: list[str]) -> int:
    directory, node = Path(argv[1]), argv[2]
    path = directory / f"{node}.json"
    if not path.is_file():
        print(f"no record of {node}: cannot fence it")
        return 1
    entries = [(int(pid), int(ticks)) for pid, ticks in json.loads(path.read_text())]
    for pid, ticks in entries:
        if alive(pid, ticks):
            os.kill(pid, signal.SIGKILL)
    until = time.monotonic() + 10
    while any(alive(pid, ticks) for pid, ticks in entries):
        if time.monotonic() > until:
            print(f"{node}: a process survived SIGKILL")
            return 1
        time.sleep(0.02)
    (directory / f"{node}.fenced").write_text(f"{len(entries)} processes\n")
    print(f"{node} fenced: {len(entries)} processes killed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
