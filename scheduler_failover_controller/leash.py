"""The leash: a small supervisor beside every scheduler the product starts, on the scheduler's node.

Why: a node may run the scheduler only while it holds an unexpired placement (S2). The node's
controller stops its scheduler in time, but only while that controller is alive, unfrozen and
unblocked. The leash holds the placement deadline itself and stops the scheduler's whole tree when
the deadline passes unrenewed, whatever has become of any controller: it is its own process in the
launch's own session, not a child of the controller.

- At ``deadline - scheduler_stop_timeout`` it runs the stop command (if any) or sends SIGTERM to
  the tree; just before ``deadline`` (``KILL_LEAD``) it SIGKILLs whatever is left, then exits.
  The deadline is already the server-side expiry less a safety margin, so nothing runs once it
  is reached.
- The deadline channel is ``state_dir/leash/NODE.deadline`` (:func:`write_deadline`): an absolute
  deadline on this host's CLOCK_MONOTONIC, written atomically by the node's own controller (and by
  an active controller elsewhere through ``--serve`` over SSH). The leash polls it, ignores a file
  not owned by its user or unreadable, clamps each new value to ``now + lease_ttl`` when it first
  reads it, and keeps the largest deadline it has seen (never less than the one it started with).
- Whole tree: it is a child subreaper (PR_SET_CHILD_SUBREAPER), so whatever the start command forks,
  daemonizes (``-D``) or moves to a new session (``setsid``) stays below it. When the start command
  and every matching process below it are gone, it ends what is left and exits.
- Handed to systemd: a start command that exits 0 without anything matching ever having run below
  it (``systemctl start airflow-scheduler``) leaves the leash watching the node's matching
  schedulers wherever they run, to stop them at the deadline; it exits once none has been seen for
  ``scheduler_start_timeout``.
- A killed leash takes its scheduler with it: the scheduler's direct child has
  PR_SET_PDEATHSIG=SIGKILL, and a watcher child (PR_SET_PDEATHSIG, and the end of a pipe) SIGKILLs
  the processes the leash last reported (identity-checked by start time) and the rest of the
  session when the leash dies, even by SIGKILL. The leash respawns a watcher that died. The
  watcher also acts as a backstop if the leash has not acted a second after the deadline. The leash
  is single-threaded, as PR_SET_PDEATHSIG (tied to the forking thread) needs.
- Its own command line carries nothing of the start command, the process match or the node name
  (a probe matches schedulers by their arguments): everything comes in ``SFC_LEASH_*`` variables,
  which the scheduler does not inherit. It registers in ``state_dir/leash/NODE.leash-PID`` so that
  a probe can tell a leashed scheduler (see :mod:`scheduler_failover_controller.probe`).

Run as ``python -m scheduler_failover_controller.leash`` (over SSH: ``ssh_remote_command leash``);
``--serve`` instead answers renewals over SSH, one line per request: ``clock`` (its monotonic
reading) and ``set DEADLINE`` (writes the deadline file).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import secrets
import select
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from .probe import (
    LEASH_MODULE,
    MATCH_ENV,
    STATE_DIR_ENV,
    LeashRecord,
    find_schedulers,
    leash_dir,
    leash_record_prefix,
    matches,
    read_leash_records,
    split_title,
)

log = logging.getLogger(__name__)

ENV_PREFIX = "SFC_LEASH_"
ENV_NODE = ENV_PREFIX + "NODE"
ENV_STATE_DIR = ENV_PREFIX + "STATE_DIR"
ENV_COMMAND = ENV_PREFIX + "COMMAND"
ENV_STOP_COMMAND = ENV_PREFIX + "STOP_COMMAND"
ENV_STOP_TIMEOUT = ENV_PREFIX + "STOP_TIMEOUT"
ENV_TTL = ENV_PREFIX + "TTL"
ENV_DEADLINE = ENV_PREFIX + "DEADLINE"
ENV_LINGER = ENV_PREFIX + "LINGER"
ENV_TOKEN = ENV_PREFIX + "TOKEN"

#: how a leash is started on this machine
LOCAL_ARGV = (sys.executable, "-m", LEASH_MODULE)
#: the hidden CLI subcommand that execs the same on another node (``ssh_remote_command leash``)
CLI_SUBCOMMAND = "leash"
SERVE_BANNER = "sfc-leash-serve 1"

POLL = 0.1  # seconds between looks at the deadline file
SCAN = 0.5  # seconds between looks at the process tree (for the watcher's list)
WATCH_SCAN = 1.0  # seconds between looks for the node's schedulers after a hand-off
SETTLE = 1.0  # seconds a tree may take to show a matching process after its start command exited
STOP_POLL = 0.05  # seconds between looks while stopping
KILL_GIVE_UP = 5.0  # seconds after SIGKILL to give up on processes that do not die (D state)
# SIGKILL goes this long before the deadline (at most a tenth of the stop timeout), so that the
# tree is gone, not just signalled, when the deadline is reached (waking up and signalling a tree
# takes tens of milliseconds on a loaded host).
KILL_LEAD = 0.1
BACKSTOP = 1.0  # seconds after the deadline when the watcher kills if the leash has not
_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_PR_SET_CHILD_SUBREAPER = 36
LEASH_NAME = b"sfc-leash"
WATCHER_NAME = b"sfc-leash-w"
SERVE_NAME = b"sfc-leash-s"


# --- the deadline channel -----------------------------------------------------------------------


def deadline_path(state_dir: Path, node: str) -> Path:
    """The node's deadline file: ``state_dir/leash/NODE.deadline``."""
    return leash_dir(state_dir) / f"{node}.deadline"


_failing: set[str] = set()  # deadline files whose last write failed (one warning per streak)


def write_deadline(state_dir: Path, node: str, deadline: float) -> None:
    """Renew ``node``'s leash on this machine: ``deadline`` is a ``time.monotonic()`` value.

    Atomic (a temp file renamed over the old one), 0600 in a 0700 directory, no fsync (a leash
    never outlives a reboot). Never raises: a failure (full or read-only disk) logs one warning
    until a write succeeds again.
    """
    path = deadline_path(state_dir, node)
    error = _write_deadline(path, deadline)
    key = str(path)
    if error is None:
        if key in _failing:
            _failing.discard(key)
            log.info("%s: leash deadline written again (%s)", node, path)
        return
    if key in _failing:
        log.debug("%s: leash deadline still not written to %s: %s", node, path, error)
        return
    _failing.add(key)
    log.warning("%s: cannot renew the leash: writing %s failed: %s", node, path, error)


def _write_deadline(path: Path, deadline: float) -> str | None:
    """Write the deadline file; None, or why it could not be written."""
    if not math.isfinite(deadline):
        return f"not a deadline: {deadline!r}"
    return _write_atomically(path, f"{deadline!r}\n")


def _ensure_dir(directory: Path) -> None:
    """``state_dir/leash``: created 0700; tightened to 0700 if it is ours and wider."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    info = os.stat(directory)
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(directory, 0o700)


def _write_atomically(path: Path, text: str) -> str | None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        _ensure_dir(path.parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            data = text.encode()
            if os.write(fd, data) != len(data):
                raise OSError("short write")
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return exc.strerror or str(exc)
    return None


def read_deadline_file(path: Path) -> float | None:
    """The deadline in ``path``; None when absent, unreadable, not a regular file of this user,
    or not a finite number."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return None
        data = os.read(fd, 256)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        value = float(data.decode("ascii").split()[0])
    except (UnicodeDecodeError, ValueError, IndexError):
        return None
    return value if math.isfinite(value) else None


# --- what the starter passes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What a leash is told by its starter, in the environment (never on its command line)."""

    node: str
    state_dir: Path
    command: str  # run by /bin/sh -c
    stop_command: str  # empty: SIGTERM
    stop_timeout: float
    ttl: float
    deadline: float  # time.monotonic() on this host
    match: str  # scheduler_process_match for the node
    linger: float  # seconds to wait for a handed-off scheduler (scheduler_start_timeout)
    token: str = ""

    def environment(self) -> dict[str, str]:
        """The variables that carry this spec (see :meth:`from_env`)."""
        return {
            ENV_NODE: self.node,
            ENV_STATE_DIR: str(self.state_dir),
            ENV_COMMAND: self.command,
            ENV_STOP_COMMAND: self.stop_command,
            ENV_STOP_TIMEOUT: repr(float(self.stop_timeout)),
            ENV_TTL: repr(float(self.ttl)),
            ENV_DEADLINE: repr(float(self.deadline)),
            MATCH_ENV: self.match,
            ENV_LINGER: repr(float(self.linger)),
            ENV_TOKEN: self.token,
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Spec:
        """Read the spec; ValueError naming what is missing or wrong."""

        def text(name: str, required: bool = True) -> str:
            value = env.get(name, "")
            if required and not value:
                raise ValueError(f"{name} is not set")
            return value

        def number(name: str, positive: bool = True) -> float:
            raw = text(name)
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name} is not a number") from None
            if not math.isfinite(value) or (positive and value <= 0):
                raise ValueError(f"{name} must be a positive number")
            return value

        return cls(
            node=text(ENV_NODE),
            state_dir=Path(text(ENV_STATE_DIR)),
            command=text(ENV_COMMAND),
            stop_command=text(ENV_STOP_COMMAND, required=False),
            stop_timeout=number(ENV_STOP_TIMEOUT),
            ttl=number(ENV_TTL),
            deadline=number(ENV_DEADLINE, positive=False),
            match=text(MATCH_ENV, required=False),
            linger=number(ENV_LINGER),
            token=text(ENV_TOKEN, required=False),
        )


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment of the scheduler: the leash's without its instructions."""
    drop = {MATCH_ENV, STATE_DIR_ENV}
    return {k: v for k, v in env.items() if not k.startswith(ENV_PREFIX) and k not in drop}


# --- processes, read from /proc -------------------------------------------------------------------


@dataclass(frozen=True)
class _Proc:
    ppid: int
    session: int
    start: int  # start time in clock ticks since boot: with the pid, the process's identity
    state: str


def _stat(pid: int) -> _Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    rest = data.rpartition(b")")[2].split()
    try:
        return _Proc(int(rest[1]), int(rest[3]), int(rest[19]), rest[0].decode())
    except (IndexError, ValueError):
        return None


def _table() -> dict[int, _Proc]:
    """Every process of this machine (one read of /proc/PID/stat each; live ones only)."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _stat(int(name))
            if info is not None and info.state not in ("Z", "X", "x"):
                table[int(name)] = info
    return table


def _below(table: Mapping[int, _Proc], roots: Sequence[int], exclude: set[int]) -> list[int]:
    """The live descendants of ``roots`` (not the roots), pruning the subtrees of ``exclude``."""
    children: dict[int, list[int]] = {}
    for pid, info in table.items():
        children.setdefault(info.ppid, []).append(pid)
    out: list[int] = []
    level = list(roots)
    seen = set(roots)
    while level:
        nxt = [c for p in level for c in children.get(p, []) if c not in seen and c not in exclude]
        seen.update(nxt)
        out += nxt
        level = nxt
    return out


def _argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    return split_title([a.decode(errors="replace") for a in raw.split(b"\0")[:-1]])


def _signal(pid: int, start: int, signum: int) -> bool:
    """Signal ``pid`` only while it is the process that started at ``start`` (never a recycled pid)."""
    info = _stat(pid)
    if info is None or info.start != start or info.state in ("Z", "X", "x"):
        return False
    try:
        os.kill(pid, signum)
    except OSError:
        return False
    return True


_libc: ctypes.CDLL | None = None


def _prctl(option: int, value: int | bytes) -> bool:
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


# --- the supervisor -------------------------------------------------------------------------------


class Leash:
    """One scheduler's supervisor (see the module docstring). :meth:`run` returns its exit code."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.pid = os.getpid()
        self.words = shlex.split(spec.match) if spec.match else []
        now = time.monotonic()
        self.deadline = min(spec.deadline, now + spec.ttl)
        self.path = deadline_path(spec.state_dir, spec.node)
        self.record_path = leash_dir(spec.state_dir) / f"{leash_record_prefix(spec.node)}{self.pid}"
        self.file_seen: tuple[int, int, int, int] | None = None
        self.root = 0
        self.statuses: dict[int, int] = {}  # exit codes of our direct children of interest
        self.state = "run"  # run, settle, daemon, watch
        self.mode = "tree"
        self.matched_ever = False
        self.tree: list[tuple[int, int]] = []  # (pid, start) below us, the watcher excepted
        self.tree_matches = False
        self.watched: list[tuple[int, int]] = []  # after a hand-off: the node's scheduler trees
        self.next_scan = 0.0
        self.settle_until = 0.0
        self.linger_until = 0.0
        self.watcher = 0
        self.watcher_fd = -1
        self.sent = ""
        self.stopping = False
        self.kill_at = math.inf
        self.killed = False
        self.stop_pid = 0
        self.termed_after_stop_command = False
        self.term_requested = False
        self.create_time = 0.0

    # --- messages (to scheduler.log) ---

    def say(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"{stamp} sfc-leash[{self.pid}] {self.spec.node}: {message}\n")
            sys.stderr.flush()

    # --- life cycle ---

    def run(self) -> int:
        _prctl(_PR_SET_NAME, LEASH_NAME)
        if not _prctl(_PR_SET_CHILD_SUBREAPER, 1):
            self.say("warning: PR_SET_CHILD_SUBREAPER failed; processes that detach escape the leash")
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        now = time.monotonic()
        self._read_deadline(now)
        if now >= self.deadline - self.spec.stop_timeout:
            self.say(f"not starting the scheduler: its deadline is {self.deadline - now:.1f}s away")
            return 1
        self.root = self._spawn(["/bin/sh", "-c", self.spec.command])
        self.create_time = psutil.Process().create_time()
        self._prune_records()
        self._spawn_watcher()
        self.say(f"started the scheduler (pid {self.root}); deadline in {self.deadline - now:.1f}s")
        try:
            return self._loop()
        finally:
            self._reap()  # leave no zombie of ours to whoever inherits them
            with contextlib.suppress(OSError):
                self.record_path.unlink()
            self._bye()

    def _loop(self) -> int:
        while True:
            now = time.monotonic()
            self._reap()
            self._read_deadline(now)
            if self.watcher and self.watcher in self.statuses:
                self.statuses.pop(self.watcher)
                self.say("the watcher died; starting another")
                self._spawn_watcher()
            if not self.stopping and (self.term_requested or now >= self.deadline - self.spec.stop_timeout):
                self._begin_stop(now)
            if self.stopping:
                if self._stop_step(now):
                    return 0
                wake = min(now + STOP_POLL, self.kill_at)
            else:
                if self._supervise(now):
                    return 0
                wake = min(now + POLL, self.deadline - self.spec.stop_timeout, self.next_scan)
            self._send()
            self._wait(wake)

    def _wait(self, until: float) -> None:
        timeout = max(0.0, until - time.monotonic())
        info = signal.sigtimedwait(_SIGNALS, timeout)
        while info is not None:
            if info.si_signo in (signal.SIGTERM, signal.SIGINT) and not self.term_requested:
                self.term_requested = True
                self.say(f"received signal {info.si_signo}: stopping the scheduler")
            info = signal.sigtimedwait(_SIGNALS, 0)

    def _reap(self) -> None:
        """Reap every child (as a subreaper, orphans of the tree are ours too)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in (self.root, self.watcher, self.stop_pid):
                self.statuses[pid] = os.waitstatus_to_exitcode(status)

    def _read_deadline(self, now: float) -> None:
        """Take up a new value of the deadline file (see the module docstring)."""
        try:
            info = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return
        seen = (info.st_ino, info.st_mtime_ns, info.st_size, info.st_uid)
        if seen == self.file_seen:
            return
        self.file_seen = seen
        value = read_deadline_file(self.path)
        if value is None:
            self.say(f"ignored {self.path}: not a regular file of uid {os.geteuid()} holding a deadline")
            return
        value = min(value, now + self.spec.ttl)
        if value > self.deadline:
            self.deadline = value

    # --- children ---

    def _spawn(self, argv: list[str]) -> int:
        """Fork and exec ``argv`` with PR_SET_PDEATHSIG=SIGKILL and the scheduler's environment."""
        env = child_environment(os.environ)
        leash = self.pid
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                for signum in (signal.SIGPIPE, signal.SIGXFSZ):
                    signal.signal(signum, signal.SIG_DFL)
                _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() == leash:  # not already orphaned before the prctl took effect
                    os.execve(argv[0], argv, env)
            except BaseException:  # noqa: BLE001 - exec failed: exit 127 as a shell does
                pass
            os._exit(127)
        return pid

    def _spawn_watcher(self) -> None:
        if self.watcher_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.watcher_fd)
        read_end, write_end = os.pipe()  # close-on-exec: no scheduler holds them
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(write_end)
                code = _Watcher(read_end, self.pid, self.spec, self.record_path).run()
            finally:
                os._exit(code)
        os.close(read_end)
        os.set_blocking(write_end, False)
        self.watcher, self.watcher_fd = pid, write_end
        self.sent = ""
        self._register()

    def _send(self) -> None:
        """Tell the watcher the deadline, the mode and the processes to kill should we die."""
        procs = self.tree + self.watched
        message = f"S {self.deadline!r} {self.mode} " + " ".join(f"{p}:{s}" for p, s in procs) + "\n"
        if message == self.sent or self.watcher_fd < 0:
            return
        try:
            if os.write(self.watcher_fd, message.encode()) != len(message.encode()):
                raise BlockingIOError
            self.sent = message
        except OSError:  # full pipe (a stopped watcher) or gone: replace it
            self.say("the watcher does not read; replacing it")
            with contextlib.suppress(OSError):
                os.kill(self.watcher, signal.SIGKILL)

    def _bye(self) -> None:
        if self.watcher_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self.watcher_fd, b"B\n")
            with contextlib.suppress(OSError):
                os.close(self.watcher_fd)
            self.watcher_fd = -1

    # --- registration ---

    def _register(self) -> None:
        record = LeashRecord(self.pid, self.create_time, self.mode, self.spec.token, self.watcher)
        error = _write_atomically(self.record_path, record.to_json() + "\n")
        if error:
            self.say(f"warning: cannot register in {self.record_path}: {error} (probes see it as not leashed)")

    def _prune_records(self) -> None:
        """Remove the registrations of this node's leashes that are gone."""
        for record in read_leash_records(self.spec.state_dir, self.spec.node):
            if record.pid == self.pid:
                continue
            try:
                alive = abs(psutil.Process(record.pid).create_time() - record.create_time) < 0.01
            except psutil.Error:
                alive = False
            if not alive:
                with contextlib.suppress(OSError):
                    (leash_dir(self.spec.state_dir) / f"{leash_record_prefix(self.spec.node)}{record.pid}").unlink()

    # --- supervising ---

    def _scan_tree(self, now: float) -> dict[int, _Proc]:
        table = _table()
        exclude = {self.watcher} if self.watcher else set()
        below = _below(table, [self.pid], exclude)
        self.tree = [(pid, table[pid].start) for pid in below if pid in table]
        self.tree_matches = bool(self.words) and any(
            pid != self.stop_pid and matches(_argv(pid), self.words) for pid, _start in self.tree
        )
        self.matched_ever |= self.tree_matches
        self.next_scan = now + SCAN
        return table

    def _scan_watch(self, now: float, table: dict[int, _Proc] | None = None) -> None:
        """After a hand-off: the node's matching scheduler trees, wherever they run."""
        table = table if table is not None else _table()
        try:
            roots = [p.pid for p in find_schedulers(self.spec.match)]
        except Exception:  # noqa: BLE001 - psutil/OS trouble: keep the last list
            return
        roots = [pid for pid in roots if pid in table]
        below = _below(table, roots, {self.pid})
        self.watched = [(pid, table[pid].start) for pid in roots + below if pid in table]
        self.next_scan = now + WATCH_SCAN

    def _kill_tree(self, signum: int) -> int:
        return sum(_signal(pid, start, signum) for pid, start in self.tree)

    def _supervise(self, now: float) -> bool:
        """One look while no stop is under way; True when the leash is done."""
        root_alive = self.root not in self.statuses
        if self.state == "run":
            if now >= self.next_scan or not root_alive:
                self._scan_tree(now)
            if not root_alive:
                if self.tree_matches:
                    self.state = "daemon"
                    self.say("the start command exited; the scheduler runs on below the leash")
                else:
                    self.state, self.settle_until = "settle", now + SETTLE
        elif self.state == "settle":
            self._scan_tree(now)
            self.next_scan = now + POLL
            if self.tree_matches:
                self.state = "daemon"
                self.say("the start command exited; the scheduler runs on below the leash")
            elif now >= self.settle_until:
                left = self._kill_tree(signal.SIGKILL)
                status = self.statuses.get(self.root)
                if status == 0 and not self.matched_ever and self.words:
                    self.state, self.mode = "watch", "watch"
                    self.tree = []
                    self.linger_until = now + self.spec.linger
                    self._scan_watch(now)
                    self._register()
                    self.say("the start command exited (0) with no scheduler below it: watching the node's schedulers")
                else:
                    ended = f"; ended {left} leftover process(es)" if left else ""
                    self.say(f"the scheduler exited (status {status}){ended}")
                    return True
        elif self.state == "daemon":
            if now >= self.next_scan:
                self._scan_tree(now)
                if not self.tree_matches:
                    left = self._kill_tree(signal.SIGKILL)
                    ended = f"; ended {left} leftover process(es)" if left else ""
                    self.say(f"the scheduler is gone{ended}")
                    return True
        elif self.state == "watch" and now >= self.next_scan:
            self._scan_watch(now)
            if self.watched:
                self.linger_until = now + self.spec.linger
            elif now >= self.linger_until:
                self.say(f"no scheduler seen for {self.spec.linger:g}s; leaving")
                return True
        return False

    # --- stopping ---

    def _targets(self, now: float) -> list[tuple[int, int]]:
        table = self._scan_tree(now)
        if self.mode == "watch":
            self._scan_watch(now, table)
        self.next_scan = now + STOP_POLL
        return [(p, s) for p, s in self.tree if p != self.stop_pid] + self.watched

    def _kill_time(self) -> float:
        return self.deadline - min(KILL_LEAD, self.spec.stop_timeout / 10)

    def _begin_stop(self, now: float) -> None:
        self.stopping = True
        if self.term_requested:
            self.kill_at = min(self._kill_time(), now + self.spec.stop_timeout)
            why = "asked to stop"
        else:
            self.kill_at = self._kill_time()
            why = f"deadline in {self.deadline - now:.2f}s and not renewed"
        targets = self._targets(now)
        if self.spec.stop_command:
            self.stop_pid = self._spawn(["/bin/sh", "-c", self.spec.stop_command])
            self.say(f"{why}: running the stop command; SIGKILL in {self.kill_at - now:.2f}s")
        else:
            sent = 0
            for pid, start in targets:
                sent += _signal(pid, start, signal.SIGTERM)
                _signal(pid, start, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.say(f"{why}: SIGTERM to {sent} process(es); SIGKILL in {self.kill_at - now:.2f}s")

    def _stop_step(self, now: float) -> bool:
        """One look while stopping; True when nothing is left."""
        targets = self._targets(now)
        if self.stop_pid and self.stop_pid in self.statuses and not self.termed_after_stop_command:
            self.termed_after_stop_command = True
            if targets and now < self.kill_at:
                for pid, start in targets:
                    _signal(pid, start, signal.SIGTERM)
                    _signal(pid, start, signal.SIGCONT)
                self.say(f"the stop command left {len(targets)} process(es): SIGTERM")
        if now >= self.kill_at:
            if not self.killed:
                self.say(f"deadline reached: SIGKILL to {len(targets)} process(es)")
            self.killed = True
            for pid, start in targets + self.tree:
                _signal(pid, start, signal.SIGKILL)
        if not targets:
            for pid, start in self.tree:  # the stop command, if it is still at it
                _signal(pid, start, signal.SIGKILL)
            if not self.tree:
                early = self.deadline - now
                when = f"{early:.2f}s before" if early >= 0 else f"{-early:.2f}s after"
                self.say(f"stopped: nothing left, {when} the deadline")
                return True
        if self.killed and now > self.kill_at + KILL_GIVE_UP:
            self.say(f"{len(targets)} process(es) survive SIGKILL (uninterruptible?); leaving")
            return True
        return False


class _LeashGone(Exception):
    pass


def _leash_gone(_signum: int, _frame: object) -> None:
    raise _LeashGone


class _Watcher:
    """The leash's child that outlives it: kills what the leash last reported when it dies."""

    def __init__(self, read_end: int, leash: int, spec: Spec, record_path: Path) -> None:
        self.fd = read_end
        self.leash = leash
        self.spec = spec
        self.record_path = record_path
        self.deadline: float | None = None
        self.mode = "tree"
        self.procs: list[tuple[int, int]] = []

    def run(self) -> int:
        _prctl(_PR_SET_NAME, WATCHER_NAME)
        for signum in (signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, _leash_gone)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        _prctl(_PR_SET_PDEATHSIG, signal.SIGUSR1)
        buffer = b""
        try:
            while os.getppid() == self.leash:
                timeout = 1.0  # past the backstop: kill again once a second
                if self.deadline is not None and self.deadline + BACKSTOP > time.monotonic():
                    timeout = min(timeout, self.deadline + BACKSTOP - time.monotonic())
                ready, _w, _x = select.select([self.fd], [], [], timeout)
                if ready:
                    data = os.read(self.fd, 65536)
                    if not data:
                        break  # every write end is closed: the leash is gone
                    buffer += data
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line == b"B":
                            return 0
                        self._take(line)
                if self.deadline is not None and time.monotonic() >= self.deadline + BACKSTOP:
                    self._kill(spare_leash=True)  # the leash should have acted by now (frozen?)
        except _LeashGone:
            pass
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        self._gone()
        return 0

    def _take(self, line: bytes) -> None:
        parts = line.decode(errors="replace").split()
        if len(parts) < 3 or parts[0] != "S":
            return
        try:
            self.deadline = float(parts[1])
            self.mode = parts[2]
            self.procs = [(int(p), int(s)) for p, s in (item.split(":") for item in parts[3:])]
        except ValueError:
            return

    def _kill(self, spare_leash: bool) -> None:
        for pid, start in self.procs:
            _signal(pid, start, signal.SIGKILL)
        me, sid = os.getpid(), os.getsid(0)
        for pid, info in _table().items():
            if info.session == sid and pid != me and not (spare_leash and pid == self.leash):
                _signal(pid, info.start, signal.SIGKILL)

    def _gone(self) -> None:
        alive = [(p, s) for p, s in self.procs if (i := _stat(p)) is not None and i.start == s]
        if self.mode == "watch" and self.spec.stop_command and alive:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["/bin/sh", "-c", self.spec.stop_command],
                    stdin=subprocess.DEVNULL,
                    env=child_environment(os.environ),
                    timeout=self.spec.stop_timeout,
                    check=False,
                )
        self._kill(spare_leash=False)
        with contextlib.suppress(OSError):
            self.record_path.unlink()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(
                f"{stamp} sfc-leash-watcher[{os.getpid()}] {self.spec.node}: the leash (pid {self.leash}) died; "
                f"killed {len(alive)} process(es) it had reported and its session\n"
            )
            sys.stderr.flush()


# --- the renewal end over SSH ----------------------------------------------------------------------


def serve(env: Mapping[str, str]) -> int:
    """Answer renewals on stdin/stdout until end of input: ``clock`` -> ``clock MONOTONIC``;
    ``set DEADLINE`` -> ``ok`` or ``error WHY`` (DEADLINE on this host's monotonic clock)."""
    _prctl(_PR_SET_NAME, SERVE_NAME)
    node, state_dir = env.get(ENV_NODE, ""), env.get(ENV_STATE_DIR, "")
    out = sys.stdout
    if not node or not state_dir:
        out.write(f"error {ENV_NODE} and {ENV_STATE_DIR} must be set\n")
        out.flush()
        return 2
    path = deadline_path(Path(state_dir), node)
    out.write(SERVE_BANNER + "\n")
    out.flush()
    for raw in sys.stdin.buffer:
        words = raw.decode(errors="replace").split()
        if words == ["clock"]:
            out.write(f"clock {time.monotonic()!r}\n")
        elif len(words) == 2 and words[0] == "set":
            try:
                value = float(words[1])
            except ValueError:
                out.write("error not a number\n")
            else:
                error = _write_deadline(path, value)
                out.write("ok\n" if error is None else f"error {error}\n")
        elif words:
            out.write("error unknown request\n")
        out.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m scheduler_failover_controller.leash [--serve]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--serve"]:
        return serve(os.environ)
    if args:
        sys.stderr.write(
            "usage: python -m scheduler_failover_controller.leash [--serve] (instructions in SFC_LEASH_*)\n"
        )
        return 2
    try:
        spec = Spec.from_env(os.environ)
    except ValueError as exc:
        sys.stderr.write(f"sfc-leash: {exc}\n")
        return 2
    return Leash(spec).run()


if __name__ == "__main__":
    sys.exit(main())
