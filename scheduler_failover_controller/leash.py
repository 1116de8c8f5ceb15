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
  an active controller elsewhere through ``--serve`` over SSH). The leash polls it and takes only
  a renewal written on this boot after the leash started (:class:`DeadlineFile`), at most
  ``lease_ttl`` past its writing; it keeps the largest deadline it has seen, never less than the
  one it started with, and never more than that one until such a renewal.
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
import logging
import math
import os
import shlex
import signal
import sys
import time
from collections.abc import Sequence

from .boot import started_monotonic
from .leash_deadline import DeadlineFile, deadline_path, read_deadline_file, serve, write_atomically, write_deadline
from .leash_procs import (
    PR_SET_CHILD_SUBREAPER,
    PR_SET_NAME,
    PR_SET_PDEATHSIG,
    Proc,
    descendants,
    prctl,
    proc_argv,
    proc_table,
    signal_if_same,
)
from .leash_spec import (
    CLI_SUBCOMMAND,
    ENV_COMMAND,
    ENV_DEADLINE,
    ENV_NODE,
    ENV_PREFIX,
    ENV_STATE_DIR,
    LOCAL_ARGV,
    SERVE_BANNER,
    Spec,
    child_environment,
)
from .leash_watcher import Watcher
from .probe import (
    find_schedulers,
    leash_alive,
    leash_dir,
    leash_record_prefix,
    matches,
    own_leash_record,
    read_leash_records,
)

__all__ = [
    "CLI_SUBCOMMAND",
    "ENV_COMMAND",
    "ENV_DEADLINE",
    "ENV_NODE",
    "ENV_PREFIX",
    "ENV_STATE_DIR",
    "LOCAL_ARGV",
    "SERVE_BANNER",
    "Leash",
    "Spec",
    "child_environment",
    "deadline_path",
    "main",
    "read_deadline_file",
    "serve",
    "write_deadline",
]

log = logging.getLogger(__name__)


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
_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}

LEASH_NAME = b"sfc-leash"


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
        self.channel = DeadlineFile(self.path, spec.ttl, started_monotonic(self.pid, now))
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

    # --- messages (to scheduler.log) ---

    def say(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"{stamp} sfc-leash[{self.pid}] {self.spec.node}: {message}\n")
            sys.stderr.flush()

    # --- life cycle ---

    def run(self) -> int:
        prctl(PR_SET_NAME, LEASH_NAME)
        if not prctl(PR_SET_CHILD_SUBREAPER, 1):
            self.say("warning: PR_SET_CHILD_SUBREAPER failed; processes that detach escape the leash")
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        now = time.monotonic()
        self._read_deadline(now)
        if now >= self.deadline - self.spec.stop_timeout:
            self.say(f"not starting the scheduler: its deadline is {self.deadline - now:.1f}s away")
            return 1
        self.root = self._spawn(["/bin/sh", "-c", self.spec.command])
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
        """Take up a renewal from the deadline file (see the module docstring)."""
        value, complaint = self.channel.take()
        if complaint:
            self.say(complaint)
        if value is not None and value > self.deadline:
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
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
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
                code = Watcher(read_end, self.pid, self.spec, self.record_path).run()
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
        record = own_leash_record(self.mode, self.spec.token, self.watcher)
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

    # --- supervising ---

    def _scan_tree(self, now: float) -> dict[int, Proc]:
        table = proc_table()
        exclude = {self.watcher} if self.watcher else set()
        below = descendants(table, [self.pid], exclude)
        self.tree = [(pid, table[pid].start) for pid in below if pid in table]
        self.tree_matches = bool(self.words) and any(
            pid != self.stop_pid and matches(proc_argv(pid), self.words) for pid, _start in self.tree
        )
        self.matched_ever |= self.tree_matches
        self.next_scan = now + SCAN
        return table

    def _scan_watch(self, now: float, table: dict[int, Proc] | None = None) -> None:
        """After a hand-off: the node's matching scheduler trees, wherever they run."""
        table = table if table is not None else proc_table()
        try:
            roots = [p.pid for p in find_schedulers(self.spec.match)]
        except Exception:  # noqa: BLE001 - psutil/OS trouble: keep the last list
            return
        roots = [pid for pid in roots if pid in table]
        below = descendants(table, roots, {self.pid})
        self.watched = [(pid, table[pid].start) for pid in roots + below if pid in table]
        self.next_scan = now + WATCH_SCAN

    def _kill_tree(self, signum: int) -> int:
        return sum(signal_if_same(pid, start, signum) for pid, start in self.tree)

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
                sent += signal_if_same(pid, start, signal.SIGTERM)
                signal_if_same(pid, start, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.say(f"{why}: SIGTERM to {sent} process(es); SIGKILL in {self.kill_at - now:.2f}s")

    def _stop_step(self, now: float) -> bool:
        """One look while stopping; True when nothing is left."""
        targets = self._targets(now)
        if self.stop_pid and self.stop_pid in self.statuses and not self.termed_after_stop_command:
            self.termed_after_stop_command = True
            if targets and now < self.kill_at:
                for pid, start in targets:
                    signal_if_same(pid, start, signal.SIGTERM)
                    signal_if_same(pid, start, signal.SIGCONT)
                self.say(f"the stop command left {len(targets)} process(es): SIGTERM")
        if now >= self.kill_at:
            if not self.killed:
                self.say(f"deadline reached: SIGKILL to {len(targets)} process(es)")
            self.killed = True
            for pid, start in targets + self.tree:
                signal_if_same(pid, start, signal.SIGKILL)
        if not targets:
            for pid, start in self.tree:  # the stop command, if it is still at it
                signal_if_same(pid, start, signal.SIGKILL)
            if not self.tree:
                early = self.deadline - now
                when = f"{early:.2f}s before" if early >= 0 else f"{-early:.2f}s after"
                self.say(f"stopped: nothing left, {when} the deadline")
                return True
        if self.killed and now > self.kill_at + KILL_GIVE_UP:
            self.say(f"{len(targets)} process(es) survive SIGKILL (uninterruptible?); leaving")
            return True
        return False


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
