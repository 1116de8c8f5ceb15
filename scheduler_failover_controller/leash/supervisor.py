"""The supervisor: one scheduler's leash as an explicit state machine (see :class:`.states.State`).

It is driven from outside, one :meth:`Supervisor.step` at a time, with an injected clock, process
table (:class:`.procs.ProcessTable`), children (:class:`.children.Children`) and deadline channel
(:class:`.deadline.DeadlineFile`): :mod:`.process` gives it the real ones, a unit test fakes. Every
change of state passes through :meth:`Supervisor.change`, which logs it once.
"""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Callable
from typing import Protocol

from .children import Children
from .procs import Proc, ProcessTable
from .spec import Spec
from .states import POLL, SCAN, SETTLE, STOP_POLL, TRANSITIONS, WAIT_SCAN, WATCH_SCAN, BadTransition, State
from .stop import begin_stop, kill_time, overdue, stop_step
from .tree import TreeView
from .voice import Say


class Renewals(Protocol):
    """The deadline channel as the leash reads it (:class:`.deadline.DeadlineFile`)."""

    def take(self) -> tuple[float | None, str]:
        """A new deadline (or None), and a complaint to log (or "")."""


class Supervisor:
    """One scheduler's supervisor (see :mod:`scheduler_failover_controller.leash`)."""

    def __init__(
        self,
        spec: Spec,
        pid: int,
        clock: Callable[[], float],
        table: ProcessTable,
        children: Children,
        renewals: Renewals,
        say: Say,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.table = table
        self.children = children
        self.renewals = renewals
        self.say = say
        self.view = TreeView(spec, pid, table, say, self.register)
        self.state = State.STARTING
        self.mode = "tree"  # registered (and told the watcher): "watch" once handed off
        self.deadline = min(spec.deadline, clock() + spec.ttl)
        self.exit_code = 0
        self.root = 0  # the start command
        self.stop_pid = 0  # the stop command
        self.appear_by = 0.0  # a scheduler must have shown below the leash by then
        self.next_scan = 0.0
        self.settle_until = 0.0  # a tree whose scheduler has been and gone ends by then
        self.linger_until = 0.0  # watching: leave when no scheduler has been seen by then
        self.kill_at = math.inf  # stopping: SIGKILL then
        self.term_requested = False
        self.exited = False  # done because the scheduler exited on its own (not stopped): its controller is told

    # --- the one way the state changes --------------------------------------------------------

    def change(self, state: State, message: str, level: int = logging.INFO) -> None:
        """Move to ``state``, saying why in one line; a change :data:`.states.TRANSITIONS` does not
        allow is a defect (:class:`.states.BadTransition`)."""
        if state not in TRANSITIONS[self.state]:
            raise BadTransition(f"leash: no change from {self.state.value} to {state.value} ({message})")
        if state is State.DONE and self.state.live:
            self.exited = True
        self.state = state
        self.say(message, level)

    # --- driving it -----------------------------------------------------------------------------

    def start(self) -> None:
        """Run the start command below the leash, unless its deadline is too near (exit code 1)."""
        now = self.clock()
        self.read_deadline()
        if now >= self.deadline - self.spec.stop_timeout:
            self.exit_code = 1
            self.change(State.DONE, f"not starting the scheduler: its deadline is {self.deadline - now:.1f}s away")
            return
        self.children.prepare()
        self.root = self.children.spawn(["/bin/sh", "-c", self.spec.command], contain=True)
        self.appear_by = self.clock() + self.spec.linger
        self.change(State.RUNNING, f"started the scheduler (pid {self.root}); deadline in {self.deadline - now:.1f}s")

    def step(self) -> float | None:
        """One look: reap, take up a renewal, act. When to look again (a clock reading), None when done.

        Woken past its kill time (the leash was frozen or starved), SIGKILL comes first: before it
        reaps, scans or logs (see :func:`.stop.overdue`). Only the deadline file is read before: a
        renewal written meanwhile (the controller ran while the leash was starved) is a placement
        still valid, and killing its scheduler would cost a needless restart."""
        now = self.clock()
        if self.state is not State.KILLING and now >= kill_time(self):
            self.read_deadline()
            if now >= kill_time(self):
                overdue(self, now)
        self.children.reap()
        self.read_deadline()
        if self.state.live and (self.term_requested or now >= self.deadline - self.spec.stop_timeout):
            begin_stop(self, now)
        if self.state.stopping:
            stop_step(self, now)
            wake = min(now + STOP_POLL, self.kill_at)
        else:
            self.supervise(now)
            wake = min(now + POLL, self.deadline - self.spec.stop_timeout, self.next_scan)
        if self.state is State.DONE:
            return None
        self.children.send(self.deadline, self.mode, self.view.tree + self.view.watched)
        return wake

    def request_stop(self, signum: int) -> None:
        """A signal asked the leash to stop: the next step stops the scheduler."""
        if not self.term_requested:
            self.term_requested = True
            self.say(f"received signal {signum}: stopping the scheduler")

    def read_deadline(self) -> None:
        """Take up a renewal from the deadline channel: the deadline only ever grows."""
        value, complaint = self.renewals.take()
        if complaint:
            self.say(complaint, logging.WARNING)
        if value is not None and value > self.deadline:
            self.deadline = value

    # --- the live states --------------------------------------------------------------------------

    def supervise(self, now: float) -> None:
        """One look while no stop is under way."""
        if self.state is State.RUNNING:
            self._running(now)
        elif self.state is State.WAITING:
            if now >= self.next_scan:
                self.scan_tree(now)
                self.next_scan = now + WAIT_SCAN
            self._exited(now)
        elif self.state is State.DAEMON:
            if now >= self.next_scan:
                self.scan_tree(now)
                if not self.view.matches:
                    self.change(State.DONE, f"the scheduler is gone{self._end_leftovers()}")
        elif self.state is State.WATCHING and now >= self.next_scan:
            self.scan_watch(now)
            if self.view.watched:
                self.linger_until = now + self.spec.linger
            elif now >= self.linger_until:
                never = "" if self.view.watched_ever else f"; {self._never_ran()}"
                self.change(State.DONE, f"no scheduler seen for {self.spec.linger:g}s{never}; leaving")

    def _running(self, now: float) -> None:
        root_alive = self.children.exit_status(self.root) is None
        if now >= self.next_scan or not root_alive:
            self.scan_tree(now)
        if not root_alive:
            self.settle_until = now + SETTLE
            self._exited(now)
        elif self._waiting_for_match() and now >= self.appear_by:
            self._never_appeared()

    def _exited(self, now: float) -> None:
        """The start command has exited. Its scheduler may still be on its way (a shim, ``su``, a
        wrapper that sleeps): while anything runs below the leash, wait until ``appear_by``. Nothing
        at all left after an exit 0, nothing having matched: handed to e.g. systemd (watch)."""
        status = self.children.exit_status(self.root)
        view = self.view
        if view.matches:
            self.change(State.DAEMON, "the start command exited; the scheduler runs on below the leash")
        elif not view.tree and status == 0 and self._waiting_for_match():
            self._hand_off(now)
        elif not view.tree:
            never = f": {view.no_match()}" if self._waiting_for_match() else ""
            self.change(State.DONE, f"the scheduler exited (status {status}){never}")
        elif not self._waiting_for_match():  # it has been and gone: end its leftovers
            if now >= self.settle_until:
                self.change(State.DONE, f"the scheduler exited (status {status}){self._end_leftovers()}")
        elif now >= self.appear_by:
            self._never_appeared()
        if self.state is State.RUNNING:
            left = len(view.tree)
            self.change(State.WAITING, f"the start command exited (status {status}); {left} process(es) left below it")

    def _waiting_for_match(self) -> bool:
        """A scheduler is to show below the leash and none has yet."""
        return bool(self.view.words) and not self.view.matched_ever

    def _hand_off(self, now: float) -> None:
        self.mode = "watch"
        self.kill_tree(signal.SIGKILL)
        self.view.forget_tree()
        self.linger_until = now + self.spec.linger
        self.scan_watch(now)
        self.register()
        self.change(
            State.WATCHING, "the start command exited (0) with no scheduler below it: watching the node's schedulers"
        )

    def _never_appeared(self) -> None:
        """Nothing matching showed below the leash in ``scheduler_start_timeout``: say what did, end it."""
        left = self.kill_tree(signal.SIGKILL)
        within = f" within {self.spec.linger:g}s (scheduler_start_timeout)"
        self.change(State.DONE, f"{self.view.no_match(within)}; ended {left} process(es)")

    def _never_ran(self) -> str:
        return f"no process matching scheduler_process_match {self.spec.match!r} ran"

    def _end_leftovers(self) -> str:
        left = self.kill_tree(signal.SIGKILL)
        return f"; ended {left} leftover process(es)" if left else ""

    # --- looks and acts the states share -------------------------------------------------------

    def scan_tree(self, now: float) -> dict[int, Proc]:
        exclude = {self.children.watcher} if self.children.watcher else set()
        table = self.view.scan_tree(exclude, self.stop_pid)
        self.next_scan = now + SCAN
        return table

    def scan_watch(self, now: float, table: dict[int, Proc] | None = None) -> None:
        self.view.scan_watch(table)
        self.next_scan = now + WATCH_SCAN

    def kill_tree(self, signum: int) -> int:
        ended = self.view.send(self.view.tree, signum)
        if signum == signal.SIGKILL:
            self.children.kill_cgroup(0.5)
        return ended

    def register(self) -> None:
        """Register what a probe must know: the mode, "denied" while a scheduler may not be signalled."""
        self.children.register("denied" if self.view.any_denied else self.mode, self.view.matched_ever)
