"""How the supervisor stops its scheduler: the stop command or SIGTERM, then SIGKILL just before the deadline."""

from __future__ import annotations

import logging
import math
import signal
from typing import TYPE_CHECKING

from .procs import DENIED, SENT
from .states import KILL_GIVE_UP, KILL_LEAD, STOP_POLL, State
from .tree import Procs, listing

if TYPE_CHECKING:
    from .supervisor import Supervisor

_LATE = 2 * STOP_POLL  # seconds past the kill time beyond which the leash says it woke late


def _targets(sup: Supervisor, now: float) -> Procs:
    """What a stop ends: the tree below the leash (its stop command excepted) and, watching, the node's."""
    table = sup.scan_tree(now)
    if sup.mode == "watch":
        sup.scan_watch(now, table)
    sup.next_scan = now + STOP_POLL
    return [(p, s) for p, s in sup.view.tree if p != sup.stop_pid] + sup.view.watched


def _kill_time(sup: Supervisor) -> float:
    return sup.deadline - min(KILL_LEAD, sup.spec.stop_timeout / 10)


def kill_time(sup: Supervisor) -> float:
    """When SIGKILL is due: ``kill_at`` while stopping, the deadline less its lead while a scheduler
    may run, never before the start or once done."""
    if sup.state.stopping:
        return sup.kill_at
    return _kill_time(sup) if sup.state.live else math.inf


def overdue(sup: Supervisor, now: float) -> None:
    """The kill time has come: SIGKILL to all it knows of, then KILLING, said in one line.

    Its first act is ``cgroup.kill`` (one write) and SIGKILL to the processes of its last look,
    before any scan or log line: a leash that wakes long past the kill time (its host or cgroup
    was frozen, or it was starved of CPU) would otherwise let the scheduler run on for the tens or
    hundreds of milliseconds that SIGTERM, scans and logging take on a host that has just thawed.
    A renewal written meanwhile is not waited for: the deadline it knew has passed."""
    known = sup.view.tree + sup.view.watched
    sup.children.kill_cgroup(0)
    sup.view.send(known, signal.SIGKILL)
    late = now - kill_time(sup)
    sup.kill_at = now
    why = f", {late:.2f}s late (the leash was frozen or starved)" if late > _LATE else ""
    sup.change(State.KILLING, f"deadline reached: SIGKILL to {len(known)} process(es){why}")


def _users(sup: Supervisor, pids: list[int]) -> dict[int, str]:
    return {pid: sup.table.user(pid) for pid in pids}


def _terminate(sup: Supervisor, targets: Procs) -> tuple[int, list[int]]:
    """SIGTERM (and SIGCONT: a stopped process cannot act on it) to ``targets``: how many were
    signalled, and the pids it may not signal."""
    sent, denied = 0, []
    for pid, start in targets:
        result = sup.table.signal(pid, start, signal.SIGTERM)
        sent += result == SENT
        if result == DENIED:
            denied.append(pid)
        sup.table.signal(pid, start, signal.SIGCONT)
    return sent, denied


def begin_stop(sup: Supervisor, now: float) -> None:
    """Asked to stop, or the deadline less the stop timeout is reached: start stopping."""
    if sup.term_requested:
        sup.kill_at = min(_kill_time(sup), now + sup.spec.stop_timeout)
        why = "asked to stop"
    else:
        sup.kill_at = _kill_time(sup)
        why = f"deadline in {sup.deadline - now:.2f}s and not renewed"
    targets = _targets(sup, now)
    if sup.spec.stop_command:
        sup.stop_pid = sup.children.spawn(["/bin/sh", "-c", sup.spec.stop_command])
        sup.change(State.STOP_COMMAND, f"{why}: running the stop command; SIGKILL in {sup.kill_at - now:.2f}s")
        return
    sent, denied = _terminate(sup, targets)
    sup.change(State.TERMINATING, f"{why}: SIGTERM to {sent} process(es); SIGKILL in {sup.kill_at - now:.2f}s")
    if denied:
        sup.say(f"not permitted to signal {listing(_users(sup, denied))}: it runs on past the deadline", logging.ERROR)


def stop_step(sup: Supervisor, now: float) -> None:
    """One look while stopping; DONE when nothing is left (or nothing left that it may signal)."""
    targets = _targets(sup, now)
    view = sup.view
    command_done = sup.state is State.STOP_COMMAND and sup.children.exit_status(sup.stop_pid) is not None
    if command_done and targets and now < sup.kill_at:
        _terminate(sup, targets)
        sup.change(State.TERMINATING, f"the stop command left {len(targets)} process(es): SIGTERM")
    if sup.state is State.KILLING:  # the sweep after :func:`overdue`
        view.send(targets + view.tree, signal.SIGKILL)
        sup.children.kill_cgroup(0)
        unstoppable = view.unsignalable(targets)
        if unstoppable and len(unstoppable) == len(targets) and not view.tree:
            left = listing(_users(sup, unstoppable))
            sup.change(State.DONE, f"{left} left running past the deadline: not permitted to signal", logging.ERROR)
            return
    if not targets:
        view.send(view.tree, signal.SIGKILL)  # the stop command, if it is still at it
        if not view.tree:
            early = sup.deadline - now
            when = f"{early:.2f}s before" if early >= 0 else f"{-early:.2f}s after"
            sup.change(State.DONE, f"stopped: nothing left, {when} the deadline")
            return
    if sup.state is State.KILLING and now > sup.kill_at + KILL_GIVE_UP:
        sup.change(State.DONE, f"{len(targets)} process(es) survive SIGKILL (uninterruptible?); leaving")
