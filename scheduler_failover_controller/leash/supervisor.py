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
  and every matching process below it are gone, it ends what is left and exits. Where cgroup v2 is
  writable, the tree also runs in a cgroup of its own (:mod:`.leash_cgroup`), which holds it
  after a SIGKILL of the leash too.
- A slow scheduler: one may take until ``scheduler_start_timeout`` to show below the leash (a
  shim, ``su -``, a wrapper); while anything runs below it, the leash waits. When nothing matching
  shows by then, one line names ``scheduler_process_match`` and what ran, and the tree is ended.
- Handed to systemd: a start command that exits 0 leaving nothing at all below the leash, nothing
  matching having run (``systemctl start airflow-scheduler``), leaves the leash watching the node's
  matching schedulers wherever they run, to stop them at the deadline; it exits once none has
  been seen for ``scheduler_start_timeout``.
- A scheduler it may not signal (another user's) is reported loudly, and the leash registers as
  "denied" meanwhile: no probe counts that scheduler leashed.
- A killed leash takes its scheduler with it: the scheduler's direct child has
  PR_SET_PDEATHSIG=SIGKILL, and a watcher child (PR_SET_PDEATHSIG, and the end of a pipe) SIGKILLs
  the processes the leash last reported (identity-checked by start time) and the rest of the
  session when the leash dies, even by SIGKILL. The leash respawns a watcher that died. The
  watcher also acts as a backstop if the leash has not acted a second after the deadline. The leash
  is single-threaded, as PR_SET_PDEATHSIG (tied to the forking thread) needs.
- Its own command line carries nothing of the start command, the process match or the node name
  (a probe matches schedulers by their arguments): everything comes in ``SFC_LEASH_*`` variables,
  which the scheduler does not inherit, nor anything else only the controller reads
  (:func:`~.leash_spec.child_environment`). It registers in ``state_dir/leash/NODE.leash-PID`` so that
  a probe can tell a leashed scheduler (see :mod:`scheduler_failover_controller.probe`).

Run as ``python -m scheduler_failover_controller.leash`` (over SSH: ``ssh_remote_command leash``);
``--serve`` instead answers renewals over SSH, one line per request: ``clock`` (its monotonic
reading) and ``set DEADLINE`` (writes the deadline file).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

from .children import LEASH_NAME, POLL, SETTLE, STOP_POLL, WAIT_SCAN
from .deadline import deadline_path, read_deadline_file, serve, write_deadline
from .procs import PR_SET_CHILD_SUBREAPER, PR_SET_NAME, prctl
from .spec import (
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
from .stop import StoppingLeash

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

_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


class Leash(StoppingLeash):
    """One scheduler's supervisor (see the module docstring). :meth:`run` returns its exit code."""

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
        self._contain()
        self._prune_records()
        self._spawn_watcher()  # first: from here on, a killed leash leaves nothing (the cgroup neither)
        self.root = self._spawn(["/bin/sh", "-c", self.spec.command], contain=True)
        self.appear_by = time.monotonic() + self.spec.linger
        self.say(f"started the scheduler (pid {self.root}); deadline in {self.deadline - now:.1f}s")
        try:
            return self._loop()
        finally:
            self._reap()  # leave no zombie of ours to whoever inherits them
            with contextlib.suppress(OSError):
                self.record_path.unlink()
            self._uncontain()
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

    def _read_deadline(self, now: float) -> None:
        """Take up a renewal from the deadline file (see the module docstring)."""
        value, complaint = self.channel.take()
        if complaint:
            self.say(complaint)
        if value is not None and value > self.deadline:
            self.deadline = value

    def _supervise(self, now: float) -> bool:
        """One look while no stop is under way; True when the leash is done."""
        root_alive = self.root not in self.statuses
        if self.state == "run":
            if now >= self.next_scan or not root_alive:
                self._scan_tree(now)
            if not root_alive:
                self.state, self.settle_until = "wait", now + SETTLE
                return self._wait_step(now)
            if self.words and not self.matched_ever and now >= self.appear_by:
                return self._never_appeared()
        elif self.state == "wait":
            if now >= self.next_scan:
                self._scan_tree(now)
                self.next_scan = now + WAIT_SCAN
            return self._wait_step(now)
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
                never = (
                    ""
                    if self.watched_ever
                    else f"; no process matching scheduler_process_match {self.spec.match!r} ran"
                )
                self.say(f"no scheduler seen for {self.spec.linger:g}s{never}; leaving")
                return True
        return False

    def _wait_step(self, now: float) -> bool:
        """The start command has exited. Its scheduler may still be on its way (a shim, ``su``, a
        wrapper that sleeps): while anything runs below the leash, wait until ``appear_by``. Nothing
        at all left after an exit 0, nothing having matched: handed to e.g. systemd (watch)."""
        status = self.statuses.get(self.root)
        if self.tree_matches:
            self.state = "daemon"
            self.say("the start command exited; the scheduler runs on below the leash")
        elif not self.tree and status == 0 and self.words and not self.matched_ever:
            self._hand_off(now)
        elif not self.tree:
            never = f": {self._no_match()}" if self.words and not self.matched_ever else ""
            self.say(f"the scheduler exited (status {status}){never}")
            return True
        elif not self.words or self.matched_ever:  # it has been and gone: end its leftovers
            if now >= self.settle_until:
                left = self._kill_tree(signal.SIGKILL)
                ended = f"; ended {left} leftover process(es)" if left else ""
                self.say(f"the scheduler exited (status {status}){ended}")
                return True
        elif now >= self.appear_by:
            return self._never_appeared()
        return False

    def _hand_off(self, now: float) -> None:
        self.state, self.mode = "watch", "watch"
        self._kill_tree(signal.SIGKILL)
        self.tree = []
        self.denied.pop("tree", None)
        self.linger_until = now + self.spec.linger
        self._scan_watch(now)
        self._register()
        self.say("the start command exited (0) with no scheduler below it: watching the node's schedulers")

    def _never_appeared(self) -> bool:
        """Nothing matching showed below the leash in ``scheduler_start_timeout``: say what did, end it."""
        left = self._kill_tree(signal.SIGKILL)
        within = f" within {self.spec.linger:g}s (scheduler_start_timeout)"
        self.say(f"{self._no_match(within)}; ended {left} process(es)")
        return True


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

