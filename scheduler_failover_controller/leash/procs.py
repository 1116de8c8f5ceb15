"""Processes as the leash sees them: read from /proc, identified by (pid, start ticks), and prctl(2).

:class:`ProcessTable` is all the supervisor reads of and does to the machine's processes;
:class:`LiveProcesses` is the real one, and a test gives the supervisor a fake.
"""

from __future__ import annotations

import ctypes
import os
import pwd
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..boot import stat_fields
from ..matching import find_schedulers, split_title
from ..process_tree import descendant_levels

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36


# --- processes, read from /proc -------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    ppid: int
    session: int
    start: int  # start time in clock ticks since boot: with the pid, the process's identity
    state: str


def proc_stat(pid: int) -> Proc | None:
    rest = stat_fields(pid)
    if rest is None:
        return None
    try:
        return Proc(int(rest[1]), int(rest[3]), int(rest[19]), rest[0].decode())
    except (IndexError, ValueError):
        return None


def proc_table() -> dict[int, Proc]:
    """Every process of this machine (one read of /proc/PID/stat each; live ones only)."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = proc_stat(int(name))
            if info is not None and info.state not in ("Z", "X", "x"):
                table[int(name)] = info
    return table


def descendants(table: Mapping[int, Proc], roots: Sequence[int], exclude: set[int]) -> list[int]:
    """The live descendants of ``roots`` (not the roots), pruning the subtrees of ``exclude``."""
    levels = descendant_levels({pid: info.ppid for pid, info in table.items()}, roots, exclude)
    return [pid for level in levels for pid in level]


def proc_argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    return split_title([a.decode(errors="replace") for a in raw.split(b"\0")[:-1]])


SENT, GONE, DENIED = "sent", "gone", "denied"


def signal_same(pid: int, start: int, signum: int) -> str:
    """Signal ``pid`` only while it is the process that started at ``start`` (never a recycled pid):
    SENT, GONE (not that process any more), or DENIED (EPERM: another user's process). Signal 0
    only checks."""
    info = proc_stat(pid)
    if info is None or info.start != start or info.state in ("Z", "X", "x"):
        return GONE
    try:
        os.kill(pid, signum)
    except PermissionError:
        return DENIED
    except OSError:
        return GONE
    return SENT


def signal_if_same(pid: int, start: int, signum: int) -> bool:
    """:func:`signal_same`, True when sent."""
    return signal_same(pid, start, signum) == SENT


def proc_uids(pid: int) -> tuple[int, int] | None:
    """``pid``'s (real, effective) uid, None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            words = next(line for line in handle if line.startswith("Uid:")).split()
        return int(words[1]), int(words[2])
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def owned(pid: int, uid: int) -> bool:
    """Whether ``pid`` runs as ``uid`` (real and effective: a set-uid program another user ran
    does not pass), the rule by which a watching leash's processes count (see ``ownership``)."""
    return proc_uids(pid) == (uid, uid)


def proc_user(pid: int) -> str:
    """The name of ``pid``'s (real) user, else ``uid N``, else ``unknown user``."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as handle:
            uid = next(int(line.split()[1]) for line in handle if line.startswith("Uid:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return "unknown user"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


_libc: ctypes.CDLL | None = None


def prctl(option: int, value: int | bytes) -> bool:
    """prctl(2) through ctypes (Linux); False when it failed or is not there."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        arg: ctypes.c_char_p | ctypes.c_ulong = (
            ctypes.c_char_p(value) if isinstance(value, bytes) else ctypes.c_ulong(value)
        )
        zero = ctypes.c_ulong(0)
        return int(_libc.prctl(ctypes.c_int(option), arg, zero, zero, zero)) == 0
    except (OSError, AttributeError):
        return False


# --- the supervisor's view ------------------------------------------------------------------------


class ProcessTable(Protocol):
    """The machine's processes, as the supervisor reads and signals them."""

    def table(self) -> dict[int, Proc]:
        """Every live process, by pid."""

    def argv(self, pid: int) -> list[str]:
        """``pid``'s arguments (empty when gone)."""

    def signal(self, pid: int, start: int, signum: int) -> str:
        """:func:`signal_same`: SENT, GONE or DENIED."""

    def user(self, pid: int) -> str:
        """:func:`proc_user`."""

    def owned(self, pid: int, uid: int) -> bool:
        """:func:`owned`."""

    def schedulers(self, match: str) -> list[int]:
        """The roots of the machine's scheduler trees by ``match`` (OSError and the like on trouble)."""


class LiveProcesses:
    """:class:`ProcessTable` on this machine's /proc."""

    def table(self) -> dict[int, Proc]:
        return proc_table()

    def argv(self, pid: int) -> list[str]:
        return proc_argv(pid)

    def signal(self, pid: int, start: int, signum: int) -> str:
        return signal_same(pid, start, signum)

    def user(self, pid: int) -> str:
        return proc_user(pid)

    def owned(self, pid: int, uid: int) -> bool:
        return owned(pid, uid)

    def schedulers(self, match: str) -> list[int]:
        return [proc.pid for proc in find_schedulers(match)]
