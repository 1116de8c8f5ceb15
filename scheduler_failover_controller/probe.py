"""Scheduler health: which processes are a node's scheduler, and in what state.

Which command lines are a scheduler's is :mod:`.matching`'s rule; whose processes count,
:mod:`.ownership`'s (below a live leash of the node, or of the expected user); the leash
registrations that tell a leashed scheduler are :mod:`.leash.records`'.
"""

from __future__ import annotations

import enum
import os
import shlex
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

from .boot import since_boot, uptime
from .leash.records import LEASH_MODULE, LeashRecord, below_leashes, live_leashes, starting_detail, starting_leashes

# Re-exported (``X as X``) for the callers that import them from here.
from .matching import LEASH_NAMES as LEASH_NAMES
from .matching import find_schedulers as find_schedulers
from .matching import matches as matches
from .matching import parent_lookup as parent_lookup
from .matching import program_index as program_index
from .matching import root_pids as root_pids
from .matching import scan_schedulers as scan_schedulers
from .matching import split_title as split_title
from .ownership import ForeignProcess, below, counts, describe_foreign, expected_uid, split_procs, user_name

# Carries the process match to ``probe``/``kill_local`` run on another node over SSH, so that the
# match words never appear in a command line there (a concurrent listing would see them).
MATCH_ENV = "SFC_PROCESS_MATCH"
# Carries ``state_dir`` to ``probe``/``kill_local`` run over SSH: where the node's leashes register.
STATE_DIR_ENV = "SFC_STATE_DIR"


class SchedulerState(str, enum.Enum):
    """What a probe saw. UNKNOWN means "could not look": never read it as running or stopped."""

    RUNNING = "running"
    STOPPED = "stopped"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"

    @property
    def maybe_running(self) -> bool:
        """True unless the node is known to run no scheduler process."""
        return self is not SchedulerState.STOPPED


@dataclass(frozen=True)
class ProbeResult:
    """One node's scheduler state with the pids of its process-tree roots."""

    node: str
    state: SchedulerState
    pids: tuple[int, ...] = ()
    detail: str = ""
    #: when each root started, in seconds since boot (no step of the wall clock moves it)
    create_times: tuple[float, ...] = field(default=(), compare=False)
    #: every scheduler root found runs under a live leash for this node (it stops them at the
    #: node's placement deadline whatever becomes of any controller); False when none runs
    leashed: bool = False
    #: (pid, start in seconds since boot) of every matching process below a root at this look: a scheduler's
    #: forks, which keep its command line (see :class:`OrphanWatch`)
    hidden: frozenset[tuple[int, float]] = field(default=frozenset(), compare=False)
    #: ``time.monotonic()`` just before the processes were listed (0: not known)
    looked_at: float = field(default=0.0, compare=False)
    #: matching processes that do not count (another user's, not leashed): reported only
    foreign: tuple[ForeignProcess, ...] = field(default=(), compare=False)

    def describe(self) -> str:
        pids = f" (pid {', '.join(map(str, self.pids))})" if self.pids else ""
        extra = f": {self.detail}" if self.detail and self.state is not SchedulerState.RUNNING else ""
        foreign = f"; foreign, not counted: {describe_foreign(self.foreign)}" if self.foreign else ""
        return f"{self.state.value}{pids}{extra}{foreign}"

    def to_json(self) -> dict[str, object]:
        return {
            "node": self.node,
            "state": self.state.value,
            "pids": list(self.pids),
            "detail": self.detail,
            "leashed": self.leashed,
            "foreign": [f.to_json() for f in self.foreign],
        }


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


def table_roots(table: Iterable[ProcessEntry], match: str, skip: Iterable[int] = ()) -> list[ProcessEntry]:
    """The same rules as :func:`find_schedulers`, applied to a listed process table (``skip``:
    pids that are never schedulers, e.g. the listing's own shell and the node's leashes)."""
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
    children: dict[int, list[ProcessEntry]] = {}
    for entry in table:
        children.setdefault(entry.ppid, []).append(entry)
    out: list[ProcessEntry] = []
    seen: set[int] = set(pids)
    level = list(pids)
    while level:
        below = [c for pid in level for c in children.get(pid, []) if c.pid not in seen]
        seen.update(c.pid for c in below)
        out = below + out
        level = [c.pid for c in below]
    return out


_UNHEALTHY = (psutil.STATUS_ZOMBIE, psutil.STATUS_STOPPED, psutil.STATUS_DEAD, "tracing-stop")


def classify(
    node: str, roots: Sequence[tuple[int, str, float]], leashed: bool = False, starting: Sequence[LeashRecord] = ()
) -> ProbeResult:
    """The probe result for the (pid, status, create time) of each scheduler tree's root.

    With no root, a leash still ``starting`` its scheduler (see :func:`.leash.records.starting_leashes`)
    makes the node UNHEALTHY, never STOPPED: whatever reads it as empty would start a second one.
    """
    if not roots and starting:
        return ProbeResult(node, SchedulerState.UNHEALTHY, detail=starting_detail(starting), leashed=True)
    if not roots:
        return ProbeResult(node, SchedulerState.STOPPED)
    pids = tuple(pid for pid, _status, _created in roots)
    times = tuple(created for _pid, _status, created in roots)
    bad = [f"pid {pid} is {status}" for pid, status, _created in roots if status in _UNHEALTHY]
    if bad:
        return ProbeResult(node, SchedulerState.UNHEALTHY, pids, "; ".join(bad), times, leashed)
    detail = "" if len(pids) == 1 else f"{len(pids)} scheduler processes"
    return ProbeResult(node, SchedulerState.RUNNING, pids, detail, times, leashed)


#: seconds of slack when a leash's start time is known from ``ps`` etime (whole seconds)
LISTED_START_SLACK = 2.5


def leashed_roots(roots: Sequence[psutil.Process], leashes: Sequence[LeashRecord]) -> bool:
    """Whether every root runs under one of ``leashes`` (an ancestor, or a watch-mode leash)."""
    if not roots:
        return False
    if any(r.mode == "watch" for r in leashes):
        return True
    tree_leashes = {r.pid for r in leashes if r.mode == "tree"}
    for root in roots:
        try:
            if not tree_leashes & {p.pid for p in root.parents()}:
                return False
        except psutil.Error:
            return False
    return True


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
    """:func:`leashed_roots` on a listed table (ancestors by the listed ppids)."""
    if not roots:
        return False
    if any(r.mode == "watch" for r in leashes):
        return True
    parents = {e.pid: e.ppid for e in table}
    tree_leashes = {r.pid for r in leashes if r.mode == "tree"}
    for root in roots:
        pid, depth, found = parents.get(root.pid, 0), 0, False
        while pid and depth < 256:
            if pid in tree_leashes:
                found = True
                break
            pid, depth = parents.get(pid, 0), depth + 1
        if not found:
            return False
    return True


def table_owned(
    table: Iterable[ProcessEntry], roots: Sequence[ProcessEntry], expected: int, leashes: Sequence[LeashRecord]
) -> tuple[list[ProcessEntry], list[ForeignProcess]]:
    """``roots`` of a listed table as (those that count, those that are foreign): the
    :mod:`.ownership` rule, ancestors by the listed ppids (``leashes``: live ones)."""
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
    """Like :func:`probe_local`, on a listed process table; ``leashes``: the node's registrations,
    ``boot``: its boot id (the table's starts then in seconds since that boot); ``expected``: the
    uid whose processes count (None: this process's own)."""
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


def _state_dir(state_dir: Path | None) -> Path | None:
    if state_dir is None and os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    return state_dir


def owned_schedulers(
    node: str, match: str, state_dir: Path | None = None, uid: int | None = None
) -> tuple[list[psutil.Process], list[ForeignProcess], frozenset[tuple[int, float]], list[LeashRecord]]:
    """This machine's scheduler roots of ``node`` that count (oldest first), the foreign ones,
    what was below a root (see :func:`scan_schedulers`), and the node's live leashes.

    ``state_dir`` (default ``$SFC_STATE_DIR``): where the node's leashes register; ``uid``: the
    expected user (default: ``$SFC_SCHEDULER_USER``, else this process's own; ValueError when
    that names no user).
    """
    expected = expected_uid() if uid is None else uid
    roots, hidden = scan_schedulers(match)
    where = _state_dir(state_dir)
    leashes = live_leashes(where, node) if where is not None else []
    owned, foreign = split_procs(roots, expected, below_leashes(leashes))
    return owned, foreign, hidden, leashes


def stop_targets(node: str, match: str, state_dir: Path | None = None, uid: int | None = None) -> list[psutil.Process]:
    """What a stop of ``node`` ends (arguments: see :func:`owned_schedulers`): its scheduler roots
    that count, and its leashes still starting one (ended, a leash stops its tree), so that no
    scheduler comes up after the stop found the node empty."""
    roots, _foreign, _hidden, leashes = owned_schedulers(node, match, state_dir, uid)
    out = list(roots)
    for record in starting_leashes(leashes, uptime()):
        try:
            out.append(psutil.Process(record.pid))
        except psutil.Error:
            continue
    return out


def probe_local(node: str, match: str, state_dir: Path | None = None, uid: int | None = None) -> ProbeResult:
    """Look at this machine's processes for ``node``'s scheduler (arguments: see
    :func:`owned_schedulers`); without a ``state_dir`` no scheduler counts as leashed."""
    looked_at = time.monotonic()
    try:
        roots, foreign, hidden, leashes = owned_schedulers(node, match, state_dir, uid)
    except (psutil.Error, OSError) as exc:
        return ProbeResult(node, SchedulerState.UNKNOWN, detail=f"cannot list processes: {exc}")
    except ValueError as exc:
        return ProbeResult(node, SchedulerState.UNKNOWN, detail=f"scheduler_user: {exc}")
    seen: list[tuple[int, str, float]] = []
    alive: list[psutil.Process] = []
    for proc in roots:
        status: str
        try:
            status = proc.status()
            created = since_boot(proc.pid)
        except psutil.NoSuchProcess:
            continue
        except psutil.Error:
            status, created = "?", 0.0
        seen.append((proc.pid, status, created))
        alive.append(proc)
    leashed = bool(alive) and leashed_roots(alive, leashes)
    result = classify(node, seen, leashed, starting_leashes(leashes, uptime()))
    return replace(result, hidden=hidden, looked_at=looked_at, foreign=tuple(foreign))


class OrphanWatch:
    """Tells a scheduler's orphaned child from a scheduler, across consecutive probes of a node.

    A process forked by a scheduler keeps its command line, so while the scheduler lives it is
    hidden under it (only tree roots count). When the scheduler dies hard, that child becomes a
    root and would pass for a live scheduler. It is recognised by identity, not by time: a root
    whose (pid, start since boot) a look saw below a scheduler is an orphan, so the node is
    UNHEALTHY and gets cleaned up and restarted. (Comparing start times with the time of a look is
    not exact: a look is listed before it is checked, and a scheduler started just after a look
    passed for an orphan. psutil's create times would not do either: they move with the wall clock.)

    An orphan stays one until it is gone, whoever probes next (the cycle, or the renewal thread),
    and a look in between (the dying scheduler as a zombie, nothing at all) forgets nothing. A
    look listed before one already taken in (two threads probing at once) updates nothing.
    """

    def __init__(self) -> None:
        self.roots: tuple[int, ...] = ()  # the scheduler's roots at the last look that saw it running
        self.hidden: frozenset[tuple[int, float]] = frozenset()  # what was below them then
        self.looked_at = 0.0  # the newest look taken in
        self.orphans: dict[int, tuple[int, ...]] = {}  # orphan pid -> the roots it outlived
        self._lock = threading.Lock()

    def check(self, result: ProbeResult) -> ProbeResult:
        with self._lock:
            fresh = result.looked_at == 0.0 or result.looked_at >= self.looked_at
            if fresh:
                self.looked_at = max(self.looked_at, result.looked_at)
                self.orphans = {pid: dead for pid, dead in self.orphans.items() if pid in result.pids}
            if result.state is SchedulerState.RUNNING:
                below = dict(self.hidden)
                for pid, created in zip(result.pids, result.create_times):
                    # Starts in clock ticks since boot: exact, and no step of the wall clock moves them.
                    if pid not in self.orphans and pid in below and created == below[pid]:
                        self.orphans[pid] = self.roots
                live = tuple(pid for pid in result.pids if pid not in self.orphans)
                if live and fresh:
                    self.roots, self.hidden = live, result.hidden
            found = [pid for pid in result.pids if pid in self.orphans]
        if not found:
            return result
        dead = sorted({p for pid in found for p in self.orphans.get(pid, ())})
        detail = f"pid {', '.join(map(str, found))} outlived its scheduler (pid {', '.join(map(str, dead))})"
        return replace(result, state=SchedulerState.UNHEALTHY, detail=detail)
