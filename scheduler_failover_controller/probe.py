"""Scheduler health on the local machine: which processes are schedulers, and in what state.

A scheduler is a process whose arguments contain the words of ``scheduler_process_match``
(the first word compared by basename, so ``/venv/bin/airflow scheduler`` matches
``airflow scheduler`` but ``grep "airflow scheduler"`` does not). Only the top of each
matching process tree counts: Airflow's own children carry the same words.
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
import shlex
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

# Carries the process match to ``probe``/``kill_local`` run on another node over SSH, so that the
# match words never appear in a command line there (a concurrent listing would see them).
MATCH_ENV = "SFC_PROCESS_MATCH"
# Carries ``state_dir`` to ``probe``/``kill_local`` run over SSH: where the node's leashes register.
STATE_DIR_ENV = "SFC_STATE_DIR"

#: The process names (``comm``) the leash, its watcher and its SSH helper give themselves:
#: never schedulers.
LEASH_NAMES = frozenset({"sfc-leash", "sfc-leash-w", "sfc-leash-s"})
#: The module the leash runs as (``python -m ...``): how a ``ps`` listing tells a leash.
LEASH_MODULE = "scheduler_failover_controller.leash"


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
    create_times: tuple[float, ...] = field(default=(), compare=False)
    #: every scheduler root found runs under a live leash for this node (it stops them at the
    #: node's placement deadline whatever becomes of any controller); False when none runs
    leashed: bool = False
    #: (pid, create time) of every matching process below a root at this look: a scheduler's
    #: forks, which keep its command line (see :class:`OrphanWatch`)
    hidden: frozenset[tuple[int, float]] = field(default=frozenset(), compare=False)
    #: ``time.monotonic()`` just before the processes were listed (0: not known)
    looked_at: float = field(default=0.0, compare=False)

    def describe(self) -> str:
        pids = f" (pid {', '.join(map(str, self.pids))})" if self.pids else ""
        extra = f": {self.detail}" if self.detail and self.state is not SchedulerState.RUNNING else ""
        return f"{self.state.value}{pids}{extra}"

    def to_json(self) -> dict[str, object]:
        return {
            "node": self.node,
            "state": self.state.value,
            "pids": list(self.pids),
            "detail": self.detail,
            "leashed": self.leashed,
        }


def check_health(url: str, timeout: float) -> str | None:
    """GET a scheduler health URL: None when it answers 2xx in time, else why not (one line)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if 200 <= response.status < 300:
                return None
            return f"health check answered HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"health check answered HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"health check failed: {getattr(exc, 'reason', exc)}"


def _argv(proc: psutil.Process) -> list[str]:
    return split_title(proc.cmdline())


def split_title(argv: list[str]) -> list[str]:
    """``argv`` as matched: a process title set with setproctitle is one argument, split on spaces."""
    if len(argv) == 1 and " " in argv[0]:
        return argv[0].split()
    return argv


# Programs that run another program named by their arguments: the kernel turns a script's
# "#!/venv/bin/python" into ``python /venv/bin/airflow scheduler``.
_INTERPRETER = re.compile(r"(python|pypy)[0-9.]*|(ba|da|k|z)?sh|perl[0-9.]*|ruby[0-9.]*|node")
_OPTION_WITH_VALUE = {"-X", "-W", "-Q"}


def program_index(argv: list[str]) -> int | None:
    """Where the program a process runs is named in ``argv``: 0, or the script an interpreter runs.

    ``python -u /venv/bin/airflow scheduler`` runs ``airflow`` (index 2); ``python -m airflow
    scheduler`` too (index 2); ``python -c ...`` runs no named program (None).
    """
    if not argv:
        return None
    if not _INTERPRETER.fullmatch(os.path.basename(argv[0])):
        return 0
    i = 1
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        if argv[i] == "-m":
            return i + 1 if i + 1 < len(argv) else None
        if argv[i] == "-c":
            return None
        i += 2 if argv[i] in _OPTION_WITH_VALUE else 1
    return i if i < len(argv) else None


def matches(argv: list[str], words: list[str]) -> bool:
    """Whether ``argv`` runs the program ``words[0]`` (by path or basename) with ``words[1:]`` as its
    first arguments.

    The program, not any word of the line: ``grep airflow scheduler``, ``watch airflow scheduler``
    or an observer whose own arguments name the match are not schedulers.
    """
    if not words:
        return False
    first, rest = words[0], words[1:]
    where = {0, program_index(argv)}
    for i in sorted(w for w in where if w is not None and w < len(argv)):
        arg = argv[i]
        if (arg == first or os.path.basename(arg) == first) and argv[i + 1 : i + 1 + len(rest)] == rest:
            return True
    return False


def _own_lineage() -> set[int]:
    """This process and its ancestors: never schedulers, never to be killed."""
    pids = {os.getpid()}
    try:
        for parent in psutil.Process().parents():
            pids.add(parent.pid)
    except psutil.Error:
        pass
    return pids


def root_pids(matching: Iterable[int], ppid_of: Callable[[int], int | None]) -> set[int]:
    """The pids of ``matching`` with no ancestor in ``matching`` (the tops of scheduler trees).

    ``ppid_of`` gives a process's parent pid, or None when it cannot be known.
    """
    found = set(matching)
    roots = set()
    for pid in found:
        ancestor, depth = ppid_of(pid), 0
        nested = False
        while ancestor and depth < 64:
            if ancestor in found:
                nested = True
                break
            ancestor = ppid_of(ancestor)
            depth += 1
        if not nested:
            roots.add(pid)
    return roots


def parent_lookup(parents: dict[int, int]) -> Callable[[int], int | None]:
    """``ppid_of`` for :func:`root_pids`: the parents listed already, else asked of the kernel."""

    def ppid_of(pid: int) -> int | None:
        if pid in parents:
            return parents[pid]
        try:
            return psutil.Process(pid).ppid()
        except psutil.Error:
            return None

    return ppid_of


def find_schedulers(match: str) -> list[psutil.Process]:
    """The root processes of every scheduler tree matching ``match``, oldest first."""
    return scan_schedulers(match)[0]


def scan_schedulers(match: str) -> tuple[list[psutil.Process], frozenset[tuple[int, float]]]:
    """The roots of every scheduler tree matching ``match`` (oldest first), and the (pid, create
    time) of every matching process below a root."""
    words = shlex.split(match)
    skip = _own_lineage()
    found: dict[int, psutil.Process] = {}
    parents: dict[int, int] = {}
    for proc in psutil.process_iter(["pid", "ppid"]):
        try:
            if proc.pid in skip or not matches(_argv(proc), words) or proc.name() in LEASH_NAMES:
                continue
            found[proc.pid] = proc
            parents[proc.pid] = proc.info["ppid"]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue

    tops = root_pids(found, parent_lookup(parents))
    roots = [proc for pid, proc in found.items() if pid in tops]

    def created(proc: psutil.Process) -> float:
        try:
            return proc.create_time()
        except psutil.Error:
            return 0.0

    hidden = frozenset((pid, created(proc)) for pid, proc in found.items() if pid not in tops)
    return sorted(roots, key=created), hidden


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


def classify(node: str, roots: Sequence[tuple[int, str, float]], leashed: bool = False) -> ProbeResult:
    """The probe result for the (pid, status, create time) of each scheduler tree's root."""
    if not roots:
        return ProbeResult(node, SchedulerState.STOPPED)
    pids = tuple(pid for pid, _status, _created in roots)
    times = tuple(created for _pid, _status, created in roots)
    bad = [f"pid {pid} is {status}" for pid, status, _created in roots if status in _UNHEALTHY]
    if bad:
        return ProbeResult(node, SchedulerState.UNHEALTHY, pids, "; ".join(bad), times, leashed)
    detail = "" if len(pids) == 1 else f"{len(pids)} scheduler processes"
    return ProbeResult(node, SchedulerState.RUNNING, pids, detail, times, leashed)


# --- leash registrations ------------------------------------------------------------------------
#
# Every leash registers itself in ``state_dir/leash/NODE.leash-PID``: one JSON line with its pid,
# create time, mode and watcher. A probe counts a scheduler as leashed only when such a record is
# backed by a live process of that identity: in "tree" mode a scheduler below it (the leash is a
# subreaper: whatever its start command forks or daemonizes stays below it), in "watch" mode
# (the start command handed the scheduler to e.g. systemd) every matching scheduler of the node.

_RECORD_MAX = 4096
#: seconds of slack when a leash's start time is known from ``ps`` etime (whole seconds)
LISTED_START_SLACK = 2.5


@dataclass(frozen=True)
class LeashRecord:
    """One leash's registration (see above)."""

    pid: int
    create_time: float  # psutil's create time on the leash's host
    mode: str  # "tree" or "watch"
    token: str = ""  # the start that launched it
    watcher: int = 0  # pid of its watcher child

    def to_json(self) -> str:
        return json.dumps(
            {
                "pid": self.pid,
                "create_time": self.create_time,
                "mode": self.mode,
                "token": self.token,
                "watcher": self.watcher,
            }
        )


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
        )
    except (ValueError, KeyError, TypeError):
        return None
    if record.pid <= 0 or record.mode not in ("tree", "watch") or not math.isfinite(record.create_time):
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
    """``node``'s registered leashes whose process is alive with that identity."""
    live = []
    for record in read_leash_records(state_dir, node):
        try:
            proc = psutil.Process(record.pid)
            if (
                abs(proc.create_time() - record.create_time) < 0.01
                and proc.name() == "sfc-leash"  # the supervisor itself (not its watcher)
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                live.append(record)
        except psutil.Error:
            continue
    return live


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


def listed_leashes(table: Iterable[ProcessEntry], records: Iterable[LeashRecord]) -> list[LeashRecord]:
    """The records backed by a live listed process: a leash's arguments, its pid and start time.

    The table's create times must be on the node's clock (``ps`` etime against the node's now).
    """
    rows = {e.pid: e for e in table}
    live = []
    for record in records:
        entry = rows.get(record.pid)
        if (
            entry is not None
            and LEASH_MODULE in entry.argv
            and entry.status not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
            and abs(entry.create_time - record.create_time) <= LISTED_START_SLACK
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


def probe_table(
    node: str,
    table: Iterable[ProcessEntry],
    match: str,
    skip: Iterable[int] = (),
    leashes: Iterable[LeashRecord] = (),
) -> ProbeResult:
    """Like :func:`probe_local`, on a listed process table; ``leashes``: the node's registrations
    (the table's create times then on the node's clock)."""
    rows = list(table)
    live = listed_leashes(rows, leashes)
    ignored = set(skip) | {r.pid for r in live} | {r.watcher for r in live if r.watcher}
    roots = table_roots(rows, match, ignored)
    return classify(node, [(e.pid, e.status, e.create_time) for e in roots], table_leashed(rows, roots, live))


def probe_local(node: str, match: str, state_dir: Path | None = None) -> ProbeResult:
    """Look at this machine's processes for ``node``'s scheduler.

    ``state_dir`` (default: ``$SFC_STATE_DIR``, as the SSH runner passes it) is where the node's
    leashes register; without it no scheduler counts as leashed.
    """
    looked_at = time.monotonic()
    try:
        roots, hidden = scan_schedulers(match)
    except (psutil.Error, OSError) as exc:
        return ProbeResult(node, SchedulerState.UNKNOWN, detail=f"cannot list processes: {exc}")
    seen: list[tuple[int, str, float]] = []
    alive: list[psutil.Process] = []
    for proc in roots:
        status: str
        try:
            status = proc.status()
            created = proc.create_time()
        except psutil.NoSuchProcess:
            continue
        except psutil.Error:
            status, created = "?", 0.0
        seen.append((proc.pid, status, created))
        alive.append(proc)
    if state_dir is None and os.environ.get(STATE_DIR_ENV):
        state_dir = Path(os.environ[STATE_DIR_ENV])
    leashed = bool(alive) and state_dir is not None and leashed_roots(alive, live_leashes(state_dir, node))
    return replace(classify(node, seen, leashed), hidden=hidden, looked_at=looked_at)


#: seconds two create times of one pid may differ by and still name the same process
_SAME_PROCESS = 1.0


class OrphanWatch:
    """Tells a scheduler's orphaned child from a scheduler, across consecutive probes of a node.

    A process forked by a scheduler keeps its command line, so while the scheduler lives it is
    hidden under it (only tree roots count). When the scheduler dies hard, that child becomes a
    root and would pass for a live scheduler. It is recognised by identity, not by time: a root
    whose (pid, create time) a look saw below a scheduler is an orphan, so the node is UNHEALTHY
    and gets cleaned up and restarted. (Comparing create times with the time of a look is not
    exact: psutil's create times carry the whole-second error of the boot time, and a look is
    listed before it is checked; a scheduler started just after a look passed for an orphan.)

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
                    # A create time may move by the whole second the boot time is rounded to.
                    if pid not in self.orphans and pid in below and abs(created - below[pid]) <= _SAME_PROCESS:
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
