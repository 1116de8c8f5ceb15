"""The POSIX ``ps`` listing a node without this project is probed with, its parsing, and its probe.

The rows become :class:`ProcessEntry` values, to which :func:`probe_table` applies the same
matching, ownership and root rules as the psutil probe of this machine
(:func:`~scheduler_failover_controller.probe.probe_local`), the parents taken from the listing.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import psutil

from ...leash.records import LEASH_MODULE, LeashRecord, below_leashes, starting_leashes
from ...matching import matches
from ...ownership import counts, user_name
from ...probe import all_leashed, classify
from ...probe_result import ForeignProcess, ProbeResult
from ...process_tree import ancestors, below, descendant_levels, root_pids


@dataclass(frozen=True)
class ProcessEntry:
    """One row of a process table listed without psutil (e.g. ``ps`` on a remote node).

    ``status`` uses psutil's names (``running``, ``sleeping``, ``stopped``, ``zombie`` ...);
    ``create_time`` only orders the entries (oldest first).
    """

    pid: int
    ppid: int
    argv: tuple[str, ...]
    status: str = ""
    create_time: float = 0.0
    args: str = ""  # the arguments as listed, to check a pid's identity before signalling it
    uid: int | None = None  # effective uid (None: not listed)
    ruid: int | None = None  # real uid
    started: float | None = None  # seconds since the node's boot (None: its uptime was not listed)


#: The listing: POSIX ``ps`` fields plus ``uid``/``ruid`` (effective and real uid: whose process
#: it is, see :mod:`~scheduler_failover_controller.ownership`) and ``stat`` (procps, BSD) and
#: ``-ww`` (no truncation of the arguments).
PS_LISTING = "ps -A -ww -o pid=,ppid=,uid=,ruid=,stat=,etime=,args="

#: ``ps`` STAT letters to psutil's status names (the rest count as running).
_STAT_NAMES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk-sleep",
    "I": "idle",
    "Z": "zombie",
    "T": "stopped",
    "t": "tracing-stop",
    "X": "dead",
    "W": "waking",
    "P": "parked",
}


def parse_etime(text: str) -> float:
    """Seconds from ``ps`` etime: ``[[dd-]hh:]mm:ss``."""
    days = 0
    if "-" in text:
        head, text = text.split("-", 1)
        days = int(head)
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return float(days * 86400 + seconds)


def parse_ps(text: str, now: float | None = None, uptime: float | None = None) -> list[ProcessEntry]:
    """Rows of :data:`PS_LISTING`. Arguments are split on whitespace (ps joins them with spaces).

    ``now``: the listing host's clock (``time.time()`` here by default), start times are taken
    from it minus each row's elapsed time. ``uptime``: its seconds since boot, read just before
    the listing; each row's ``started`` is then that minus its elapsed time (``ps`` counts etime
    from boot too, so no step of the wall clock moves it).
    """
    now = time.time() if now is None else now
    rows = []
    for line in text.splitlines():
        parts = line.split(None, 6)
        if len(parts) < 6:
            continue
        try:
            pid, ppid, uid, ruid = int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3])
            elapsed = parse_etime(parts[5])
        except ValueError:
            continue
        args = parts[6] if len(parts) == 7 else ""
        status = _STAT_NAMES.get(parts[4][:1], "running")
        started = None if uptime is None else uptime - elapsed
        rows.append(
            ProcessEntry(pid, ppid, tuple(args.split()), status, now - elapsed, args, uid, ruid, started=started)
        )
    return rows


def lineage(pid: int, table: list[ProcessEntry]) -> set[int]:
    """``pid`` and its ancestors in ``table``: the listing's own shell and session."""
    parents = {e.pid: e.ppid for e in table}
    return {pid, *ancestors(pid, parents.get)}


def table_roots(table: Iterable[ProcessEntry], match: str, skip: Iterable[int] = ()) -> list[ProcessEntry]:
    """The same rules as :func:`~scheduler_failover_controller.matching.find_schedulers`, applied to
    a listed process table (``skip``: pids that are never schedulers, e.g. the listing's own shell
    and the node's leashes)."""
    words = shlex.split(match)
    rows = {entry.pid: entry for entry in table}
    skipped = set(skip)
    found = {pid: e for pid, e in rows.items() if pid not in skipped and matches(list(e.argv), words)}

    def ppid_of(pid: int) -> int | None:
        entry = rows.get(pid)
        return entry.ppid if entry is not None else None

    tops = root_pids(found, ppid_of)
    return sorted((e for pid, e in found.items() if pid in tops), key=lambda e: (e.create_time, e.pid))


def table_descendants(table: Iterable[ProcessEntry], pids: Iterable[int]) -> list[ProcessEntry]:
    """Every process of ``table`` below ``pids`` (children, grandchildren ...), deepest first."""
    rows = {e.pid: e for e in table}
    levels = descendant_levels({pid: e.ppid for pid, e in rows.items()}, pids)
    return [rows[pid] for level in reversed(levels) for pid in level]


#: seconds of slack when a leash's start time is known from ``ps`` etime (whole seconds)
LISTED_START_SLACK = 2.5


def listed_leashes(table: Iterable[ProcessEntry], records: Iterable[LeashRecord], boot: str) -> list[LeashRecord]:
    """The records of boot ``boot`` (the node's, as its listing printed it) backed by a live listed
    process: a leash's arguments, its pid and start (seconds since boot: ``ps`` etime against the
    node's uptime, so that no step of its wall clock moves it).
    """
    rows = {e.pid: e for e in table}
    live = []
    for record in records:
        entry = rows.get(record.pid)
        if (
            entry is not None
            and entry.started is not None
            and record.boot == boot
            and record.start > 0
            and LEASH_MODULE in entry.argv
            and entry.status not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
            and abs(entry.started - record.started) <= LISTED_START_SLACK
        ):
            live.append(record)
    return live


def table_leashed(table: Iterable[ProcessEntry], roots: Sequence[ProcessEntry], leashes: Sequence[LeashRecord]) -> bool:
    """:func:`~scheduler_failover_controller.probe.all_leashed` on a listed table (ancestors by the
    listed ppids)."""
    parents = {e.pid: e.ppid for e in table}
    return all_leashed([r.pid for r in roots], parents.get, leashes)


def table_owned(
    table: Iterable[ProcessEntry], roots: Sequence[ProcessEntry], expected: int, leashes: Sequence[LeashRecord]
) -> tuple[list[ProcessEntry], list[ForeignProcess]]:
    """``roots`` of a listed table as (those that count, those that are foreign): the
    :mod:`~scheduler_failover_controller.ownership` rule, ancestors by the listed ppids (``leashes``: live ones)."""
    parents = {e.pid: e.ppid for e in table}
    tree_leashes = below_leashes(leashes)
    owned: list[ProcessEntry] = []
    foreign: list[ForeignProcess] = []
    for root in roots:
        uids = None if root.ruid is None or root.uid is None else (root.ruid, root.uid)
        if counts(uids, expected, below(root.pid, parents.get, tree_leashes)):
            owned.append(root)
        else:
            foreign.append(ForeignProcess(root.pid, user_name(root.uid if root.ruid is None else root.ruid)))
    return owned, sorted(foreign)


def probe_table(
    node: str,
    table: Iterable[ProcessEntry],
    match: str,
    skip: Iterable[int] = (),
    leashes: Iterable[LeashRecord] = (),
    expected: int | None = None,
    boot: str = "",
) -> ProbeResult:
    """Like :func:`~scheduler_failover_controller.probe.probe_local`, on a listed process table;
    ``leashes``: the node's registrations, ``boot``: its boot id (the table's starts then in
    seconds since that boot); ``expected``: the uid whose processes count (None: this process's
    own)."""
    rows = list(table)
    live = listed_leashes(rows, leashes, boot)
    ignored = set(skip) | {r.pid for r in live} | {r.watcher for r in live if r.watcher}
    uid = os.geteuid() if expected is None else expected
    roots, foreign = table_owned(rows, table_roots(rows, match, ignored), uid, live)
    # The listing's newest row (its own ``ps``) started just now: the node's seconds since boot.
    now = max((e.started for e in rows if e.started is not None), default=None)
    leashed = table_leashed(rows, roots, live)
    result = classify(node, [(e.pid, e.status, e.create_time) for e in roots], leashed, starting_leashes(live, now))
    return replace(result, foreign=tuple(foreign))
