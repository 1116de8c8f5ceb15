"""The leash's log lines: one per event, on its stderr (the start command's log)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Protocol


class Say(Protocol):
    """Where the leash's parts say what happened: a :class:`Voice`, or a test's list."""

    def __call__(self, message: str, level: int = logging.INFO) -> None: ...


class Voice:
    """Writes ``STAMP sfc-leash[PID] NODE: MESSAGE``; a warning or an error says so first
    (``WARNING: ...``, ``ERROR: ...``). The leash has no logging setup of its own: its stderr is
    the scheduler's log, and a line that cannot be written is dropped."""

    def __init__(self, pid: int, node: str) -> None:
        self.pid = pid
        self.node = node

    def __call__(self, message: str, level: int = logging.INFO) -> None:
        if level < logging.INFO:
            return
        prefix = f"{logging.getLevelName(level)}: " if level >= logging.WARNING else ""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"{stamp} sfc-leash[{self.pid}] {self.node}: {prefix}{message}\n")
            sys.stderr.flush()
