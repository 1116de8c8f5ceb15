"""Leash registrations: who registered as a leash of a node, and whether it still lives.

Every leash registers itself in ``state_dir/leash/NODE.leash-PID``: one JSON line with its pid,
its start in clock ticks since boot, the boot id, its mode, watcher and start time. A probe counts
a scheduler as leashed only when such a record is of this boot and backed by a live process of
that identity (pid and start ticks: no wall-clock step moves them): in "tree" mode a scheduler
below it (the leash is a subreaper: whatever its start command forks or daemonizes stays below
it), in "watch" mode (the start command handed the scheduler to e.g. systemd) every matching
scheduler of the node.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..boot import boot_id, clock_ticks, start_ticks

_RECORD_MAX = 4096

#: The module the leash runs as (``python -m ...``): how a ``ps`` listing tells a leash.
LEASH_MODULE = "scheduler_failover_controller.leash"


@dataclass(frozen=True)
class LeashRecord:
    """One leash's registration (see above)."""

    pid: int
    create_time: float  # psutil's create time on the leash's host (for readers of older versions)
    mode: str  # "tree", "watch", or "denied" (it may not signal a scheduler: none counts as leashed)
    token: str = ""  # the start that launched it
    watcher: int = 0  # pid of its watcher child
    start: int = 0  # its start in clock ticks since boot (/proc/PID/stat): with the pid, its identity
    boot: str = ""  # the boot id of its host when it registered
    hz: int = 100  # clock ticks per second there
    linger: float = 0.0  # its scheduler_start_timeout: how long a tree of it may take to show a scheduler
    shown: bool = False  # a scheduler has shown below it (its start is over)

    @property
    def started(self) -> float:
        """Its start in seconds since boot."""
        return self.start / self.hz

    def to_json(self) -> str:
        return json.dumps(
            {
                "pid": self.pid,
                "create_time": self.create_time,
                "mode": self.mode,
                "token": self.token,
                "watcher": self.watcher,
                "start": self.start,
                "boot": self.boot,
                "hz": self.hz,
                "linger": self.linger,
                "shown": self.shown,
            }
        )


def own_leash_record(mode: str, token: str, watcher: int, linger: float = 0.0, shown: bool = False) -> LeashRecord:
    """The registration of this process as a leash."""
    pid = os.getpid()
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = 0.0
    return LeashRecord(
        pid, created, mode, token, watcher, start_ticks(pid) or 0, boot_id(), clock_ticks(), linger, shown
    )


def leash_alive(record: LeashRecord) -> bool:
    """Whether ``record`` is of this boot and its process still runs: same pid, same start ticks."""
    return record.boot == boot_id() and record.start > 0 and start_ticks(record.pid) == record.start


def leash_dir(state_dir: Path) -> Path:
    """The directory of the deadline files and leash registrations (0700)."""
    return Path(state_dir) / "leash"


def leash_record_prefix(node: str) -> str:
    return f"{node}.leash-"


def parse_leash_record(text: str) -> LeashRecord | None:
    """A registration line, or None when it is not one."""
    try:
        data = json.loads(text)
        record = LeashRecord(
            int(data["pid"]),
            float(data["create_time"]),
            str(data["mode"]),
            str(data.get("token", "")),
            int(data.get("watcher", 0)),
            int(data.get("start", 0)),
            str(data.get("boot", "")),
            int(data.get("hz", 100)),
            float(data.get("linger", 0.0)),
            data.get("shown", False) is True,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if record.pid <= 0 or record.mode not in ("tree", "watch", "denied") or not math.isfinite(record.create_time):
        return None
    if record.start < 0 or record.hz <= 0 or not (math.isfinite(record.linger) and record.linger >= 0):
        return None
    return record


def read_leash_records(state_dir: Path, node: str) -> list[LeashRecord]:
    """The registrations of ``node``'s leashes: regular files owned by this user only."""
    directory = leash_dir(state_dir)
    prefix = leash_record_prefix(node)
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix) and n[len(prefix) :].isdigit()]
    except OSError:
        return []
    records = []
    for name in names:
        try:
            fd = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                continue
            text = os.read(fd, _RECORD_MAX).decode(errors="replace")
        except OSError:
            continue
        finally:
            os.close(fd)
        record = parse_leash_record(text)
        if record is not None and name == prefix + str(record.pid):
            records.append(record)
    return records


def live_leashes(state_dir: Path, node: str) -> list[LeashRecord]:
    """``node``'s registered leashes of this boot whose process is alive with that identity."""
    live = []
    for record in read_leash_records(state_dir, node):
        try:
            proc = psutil.Process(record.pid)
            if (
                leash_alive(record)
                and proc.name() == "sfc-leash"  # the supervisor itself (not its watcher)
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                live.append(record)
        except psutil.Error:
            continue
    return live


def below_leashes(leashes: Iterable[LeashRecord]) -> set[int]:
    """The leashes whose tree counts as the node's scheduler, whatever its user: tree mode, and a
    leash that may not signal its tree (its scheduler is not leashed, but it is the node's: left
    out, it would read as foreign and the node as stopped, and a second one could be started)."""
    return {r.pid for r in leashes if r.mode in ("tree", "denied")}


#: seconds added to a leash's start time before its tree no longer counts as starting
STARTING_SLACK = 2.5


def starting_leashes(leashes: Iterable[LeashRecord], now: float | None) -> list[LeashRecord]:
    """The leashes (live ones) whose tree may still be bringing up its scheduler: tree mode,
    started less than its start timeout ago, no scheduler shown below it yet (a "denied" record may
    be a watching leash's). ``now``: the
    node's seconds since boot (None: not known, none counts). A record without its start timeout
    (an older leash's) claims none.

    While nothing of the node's matches yet, such a tree is a start under way: the node is not
    empty, and a second start there would make two schedulers once the first execs.
    """
    if now is None:
        return []
    return [
        r
        for r in leashes
        if r.mode == "tree" and not r.shown and r.linger > 0 and now - r.started < r.linger + STARTING_SLACK
    ]


def starting_detail(leashes: Iterable[LeashRecord]) -> str:
    """The probe detail of a node whose scheduler is still on its way below ``leashes``."""
    pids = ", ".join(str(r.pid) for r in leashes)
    return f"starting: the leash (pid {pids}) has not shown its scheduler yet"
