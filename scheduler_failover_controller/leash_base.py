"""The leash's state and its view of the scheduler's tree: the children it starts (in the tree's
cgroup, where there is one), the watcher it feeds, its registration, and its looks at the tree.

See :mod:`scheduler_failover_controller.leash` for what the leash does and why; this is the part
that the supervising (``leash``) and the stopping (``leash_stop``) share.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import signal
import sys
import time

from .boot import started_monotonic
from .leash_cgroup import Cgroup, sweep
from .leash_deadline import DeadlineFile, deadline_path, write_atomically
from .leash_procs import (
    DENIED,
    PR_SET_PDEATHSIG,
    Proc,
    descendants,
    owned,
    prctl,
    proc_argv,
    proc_stat,
    proc_table,
    proc_user,
    signal_if_same,
    signal_same,
)
from .leash_spec import Spec, child_environment
from .leash_watcher import Watcher
from .matching import find_schedulers, matches
from .probe import LEASH_MODULE, leash_alive, leash_dir, leash_record_prefix, own_leash_record, read_leash_records

POLL = 0.1  # seconds between looks at the deadline file
SCAN = 0.5  # seconds between looks at the process tree (for the watcher's list)
WATCH_SCAN = 1.0  # seconds between looks for the node's schedulers after a hand-off
SETTLE = 1.0  # seconds a tree whose scheduler has been and gone may take to end after its start command
WAIT_SCAN = 0.25  # seconds between looks while a start command's tree has yet to show its scheduler
STOP_POLL = 0.05  # seconds between looks while stopping
KILL_GIVE_UP = 5.0  # seconds after SIGKILL to give up on processes that do not die (D state)
# SIGKILL goes this long before the deadline (at most a tenth of the stop timeout), so that the
# tree is gone, not just signalled, when the deadline is reached (waking up and signalling a tree
# takes tens of milliseconds on a loaded host).
KILL_LEAD = 0.1

LEASH_NAME = b"sfc-leash"


class LeashBase:
    """One scheduler's supervisor: its state, its children and its looks at the tree."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.pid = os.getpid()
        self.words = shlex.split(spec.match) if spec.match else []
        self.uid = spec.uid  # whose matching processes a watching leash watches (see ownership)
        now = time.monotonic()
        self.deadline = min(spec.deadline, now + spec.ttl)
        self.path = deadline_path(spec.state_dir, spec.node)
        self.record_path = leash_dir(spec.state_dir) / f"{leash_record_prefix(spec.node)}{self.pid}"
        self.channel = DeadlineFile(self.path, spec.ttl, started_monotonic(self.pid, now))
        self.root = 0
        self.statuses: dict[int, int] = {}  # exit codes of our direct children of interest
        self.state = "run"  # run, wait, daemon, watch
        self.mode = "tree"  # tree or watch; registered as "denied" while it may not signal a scheduler
        self.denied: dict[str, dict[int, str]] = {}  # "tree"/"watch" -> {pid: user} it may not signal
        self.cgroup: Cgroup | None = None  # the tree's container, where the kernel offers one
        self.appear_by = math.inf  # when a scheduler must have shown below the leash
        self.ran: list[str] = []  # command lines seen below the leash while nothing matched
        self.watched_ever = False  # after a hand-off: a scheduler of the node has been seen
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

    def say(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"{stamp} sfc-leash[{self.pid}] {self.spec.node}: {message}\n")
            sys.stderr.flush()

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

    def _spawn(self, argv: list[str], contain: bool = False) -> int:
        """Fork and exec ``argv`` with PR_SET_PDEATHSIG=SIGKILL and the scheduler's environment;
        ``contain``: in the tree's cgroup, moved there before it execs (it waits for that)."""
        env = child_environment(os.environ)
        leash = self.pid
        gate = os.pipe() if contain and self.cgroup is not None else None
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                for signum in (signal.SIGPIPE, signal.SIGXFSZ):
                    signal.signal(signum, signal.SIG_DFL)
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                if gate is not None:
                    os.close(gate[1])
                    os.read(gate[0], 1)  # the leash has moved us (or died: end of file)
                if os.getppid() == leash:  # not already orphaned before the prctl took effect
                    os.execve(argv[0], argv, env)
            except BaseException:  # noqa: BLE001 - exec failed: exit 127 as a shell does
                pass
            os._exit(127)
        if gate is not None and self.cgroup is not None:
            os.close(gate[0])
            try:
                self.cgroup.add(pid)
            except OSError as exc:
                self.say(f"containment: process scan only (cannot move pid {pid} into {self.cgroup.path}: {exc})")
                self.cgroup.remove()
                self.cgroup = None
            os.close(gate[1])
        return pid

    def _contain(self) -> None:
        """Put the scheduler's tree in a cgroup of its own where it can (see :mod:`.leash_cgroup`); say which."""
        me = proc_stat(self.pid)
        made = Cgroup.create(self.pid, me.start if me else 0)
        if isinstance(made, str):
            self.say(f"containment: process scan only ({made}); a process that calls setsid may outlive a killed leash")
            return
        self.cgroup = made
        self.say(f"containment: cgroup {made.path}")
        for path in sweep(made.path.parent):
            self.say(f"ended the leftover cgroup {path} of a leash that is gone")

    def _uncontain(self) -> None:
        if self.cgroup is not None:
            self.cgroup.kill()
            self._reap()
            if not self.cgroup.remove():
                self.say(f"warning: cannot remove {self.cgroup.path}")
            self.cgroup = None

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
                cgroup = self.cgroup.path if self.cgroup is not None else None
                code = Watcher(read_end, self.pid, self.spec, self.record_path, cgroup).run()
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

    def _register(self) -> None:
        mode = "denied" if any(self.denied.values()) else self.mode
        record = own_leash_record(mode, self.spec.token, self.watcher, self.spec.linger, self.matched_ever)
        error = write_atomically(self.record_path, record.to_json() + "\n")
        if error:
            self.say(f"warning: cannot register in {self.record_path}: {error} (probes see it as not leashed)")

    def _prune_records(self) -> None:
        """Remove the registrations of this node's leashes that are gone."""
        for record in read_leash_records(self.spec.state_dir, self.spec.node):
            if record.pid == self.pid:
                continue
            if not leash_alive(record):
                with contextlib.suppress(OSError):
                    (leash_dir(self.spec.state_dir) / f"{leash_record_prefix(self.spec.node)}{record.pid}").unlink()

    def _scan_tree(self, now: float) -> dict[int, Proc]:
        table = proc_table()
        exclude = {self.watcher} if self.watcher else set()
        below = descendants(table, [self.pid], exclude)
        self.tree = [(pid, table[pid].start) for pid in below if pid in table]
        argvs = {pid: proc_argv(pid) for pid, _start in self.tree if pid != self.stop_pid}
        self.tree_matches = bool(self.words) and any(matches(argv, self.words) for argv in argvs.values())
        if self.tree_matches and not self.matched_ever:
            self.matched_ever = True
            self._register()  # its start is over: a probe no longer reads the node as starting
        if not self.matched_ever:  # what ran, to say so should nothing matching ever show
            for pid, argv in argvs.items():
                if LEASH_MODULE in argv:
                    continue  # a child of ours between its fork and its exec of the start command
                line = shlex.join([os.path.basename(w) if w.startswith("/") else w for w in argv])[:100]
                if (line or f"pid {pid}") not in self.ran and len(self.ran) < 5:
                    self.ran.append(line or f"pid {pid}")
        self.next_scan = now + SCAN
        self._check_signalable("tree", self.tree)
        return table

    def _scan_watch(self, now: float, table: dict[int, Proc] | None = None) -> None:
        """After a hand-off: the node's matching scheduler trees, wherever they run."""
        table = table if table is not None else proc_table()
        try:
            roots = [p.pid for p in find_schedulers(self.spec.match)]
        except Exception:  # noqa: BLE001 - psutil/OS trouble: keep the last list
            return
        roots = [pid for pid in roots if pid in table and owned(pid, self.uid)]
        below = descendants(table, roots, {self.pid})
        self.watched = [(pid, table[pid].start) for pid in roots + below if pid in table]
        self.watched_ever |= bool(self.watched)
        self.next_scan = now + WATCH_SCAN
        self._check_signalable("watch", [(pid, table[pid].start) for pid in roots])

    def _check_signalable(self, kind: str, procs: list[tuple[int, int]]) -> None:
        """Note the processes this leash may not signal (another user's): while there are any, it
        registers as "denied" (a probe does not count them leashed) and says so, loudly, once each."""
        denied = {pid: proc_user(pid) for pid, start in procs if signal_same(pid, start, 0) == DENIED}
        before = any(self.denied.values())
        new = {pid: user for pid, user in denied.items() if pid not in self.denied.get(kind, {})}
        self.denied[kind] = denied
        if before != any(self.denied.values()):
            self._register()  # first: once said, it holds
            if not denied:
                self.say("every scheduler process may be signalled again: leashed")
        if new:
            self.say(
                f"WARNING: not permitted to signal {_listing(new)}: this leash cannot stop it at the deadline; "
                "the node's scheduler counts as not leashed"
            )

    def _no_match(self, within: str = "") -> str:
        """That nothing matching ran below the leash, and what did (the first few command lines seen)."""
        ran = "; ".join(self.ran[:4]) + (" ..." if len(self.ran) > 4 else "") if self.ran else "nothing"
        return (
            f"no process matching scheduler_process_match {self.spec.match!r} appeared below the leash{within}; "
            f"what ran below it: {ran}"
        )

    def _kill_tree(self, signum: int) -> int:
        ended = sum(signal_if_same(pid, start, signum) for pid, start in self.tree)
        if signum == signal.SIGKILL and self.cgroup is not None:
            self.cgroup.kill(wait=0.5)
        return ended


def _listing(users: dict[int, str]) -> str:
    """``pid 12 (nobody), pid 13 (uid 1001)``: pids and their users."""
    return ", ".join(f"pid {pid} ({user})" for pid, user in sorted(users.items()))
