"""Every change of the leash supervisor's state, on fakes and an injected clock: no process is
started or signalled (tests/unit/leash_rig.py). The real leash: tests/process/test_leash*.py."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from scheduler_failover_controller.leash.states import (
    KILL_GIVE_UP,
    SETTLE,
    STOP_POLL,
    TRANSITIONS,
    BadTransition,
    State,
)

from .leash_rig import OTHER, SCHEDULER, Rig

S = State
T = TypeVar("T")


# --- one scenario per allowed change: it drives a fresh supervisor to make it --------------------

Scenario = Callable[[Path], Rig]


def on(setup: Callable[[Rig], object]) -> Scenario:
    """A scenario that runs ``setup`` on a supervisor with the usual spec."""

    def scenario(tmp_path: Path) -> Rig:
        rig = Rig(tmp_path)
        setup(rig)
        return rig

    return scenario


def refuse(rig: Rig) -> None:
    rig.clock.advance(26.0)  # 4 s left, less than the 5 s stop timeout
    rig.sup.start()


def running_done(rig: Rig) -> None:
    rig.started()
    rig.children.exit(rig.root, 3)
    rig.step()


def at_deadline(setup: Callable[[Rig], object], stop_command: str = "") -> Scenario:
    """``setup``, then the deadline less the stop timeout comes (the start timeout after it)."""

    def scenario(tmp_path: Path) -> Rig:
        rig = Rig(tmp_path, stop_command=stop_command, linger=60.0)
        setup(rig.started())
        rig.run_until(S.STOP_COMMAND if stop_command else S.TERMINATING)
        return rig

    return scenario


def stop_command(setup: Callable[[Rig], object]) -> Scenario:
    return at_deadline(setup, stop_command="airflow-stop")


def waiting_daemon(rig: Rig) -> None:
    wrapper = rig.started().waiting()
    rig.table.procs[wrapper].argv = list(SCHEDULER)  # it execs the scheduler
    rig.run_until(S.DAEMON)


def waiting_watching(rig: Rig) -> None:
    wrapper = rig.started().waiting()
    rig.table.end(wrapper)  # it handed the scheduler to systemd and exited
    rig.table.add(SCHEDULER, ppid=1)
    rig.run_until(S.WATCHING)


def waiting_done(rig: Rig) -> None:
    rig.started().waiting()
    rig.run_until(S.DONE)  # nothing matching by scheduler_start_timeout


def daemon_done(rig: Rig) -> None:
    scheduler = rig.started().daemon()
    rig.table.end(scheduler)
    rig.run_until(S.DONE)


def watching_done(rig: Rig) -> None:
    rig.started().handed_off()
    for pid in rig.table.schedulers("airflow scheduler"):
        rig.table.end(pid)
    rig.run_until(S.DONE)


def stop_command_terminating(tmp_path: Path) -> Rig:
    rig = stop_command(Rig.scheduler)(tmp_path)
    rig.children.exit(rig.sup.stop_pid, 0)  # the stop command ended and left the scheduler
    rig.step()
    return rig


def stop_command_killing(tmp_path: Path) -> Rig:
    rig = stop_command(Rig.scheduler)(tmp_path)
    rig.run_until(S.KILLING)
    return rig


def stop_command_done(tmp_path: Path) -> Rig:
    rig = stop_command(Rig.scheduler)(tmp_path)
    for pid in [pid for pid in rig.table.procs if pid != rig.sup.stop_pid]:
        rig.table.end(pid)  # the stop command stopped the scheduler, and the start command with it
    rig.children.exit(rig.sup.stop_pid, 0)
    rig.step()
    return rig


def overslept(setup: Callable[[Rig], object]) -> Scenario:
    """``setup``, then the leash sleeps (frozen, starved) past its kill time: it kills at once."""

    def scenario(tmp_path: Path) -> Rig:
        rig = Rig(tmp_path, linger=60.0)
        setup(rig.started())
        rig.step(rig.sup.deadline + 2.0 - rig.clock.now)
        return rig

    return scenario


def terminating_killing(rig: Rig) -> None:
    rig.started().scheduler(ignores=frozenset({signal.SIGTERM}))
    rig.run_until(S.KILLING)


def killing_done(rig: Rig) -> None:
    terminating_killing(rig)
    rig.run_until(S.DONE)


def terminating_done(rig: Rig) -> None:
    rig.started().scheduler()
    rig.run_until(S.DONE)  # SIGTERM ends it


SCENARIOS: dict[tuple[State, State], Scenario] = {
    (S.STARTING, S.RUNNING): on(Rig.started),
    (S.STARTING, S.DONE): on(refuse),
    (S.RUNNING, S.WAITING): on(lambda rig: rig.started().waiting()),
    (S.RUNNING, S.DAEMON): on(lambda rig: rig.started().daemon()),
    (S.RUNNING, S.WATCHING): on(lambda rig: rig.started().handed_off()),
    (S.RUNNING, S.DONE): on(running_done),
    (S.RUNNING, S.TERMINATING): at_deadline(Rig.scheduler),
    (S.RUNNING, S.STOP_COMMAND): stop_command(Rig.scheduler),
    (S.RUNNING, S.KILLING): overslept(Rig.scheduler),
    (S.WAITING, S.DAEMON): on(waiting_daemon),
    (S.WAITING, S.WATCHING): on(waiting_watching),
    (S.WAITING, S.DONE): on(waiting_done),
    (S.WAITING, S.TERMINATING): at_deadline(Rig.waiting),
    (S.WAITING, S.STOP_COMMAND): stop_command(Rig.waiting),
    (S.WAITING, S.KILLING): overslept(Rig.waiting),
    (S.DAEMON, S.DONE): on(daemon_done),
    (S.DAEMON, S.TERMINATING): at_deadline(Rig.daemon),
    (S.DAEMON, S.STOP_COMMAND): stop_command(Rig.daemon),
    (S.DAEMON, S.KILLING): overslept(Rig.daemon),
    (S.WATCHING, S.DONE): on(watching_done),
    (S.WATCHING, S.TERMINATING): at_deadline(Rig.handed_off),
    (S.WATCHING, S.STOP_COMMAND): stop_command(Rig.handed_off),
    (S.WATCHING, S.KILLING): overslept(Rig.handed_off),
    (S.STOP_COMMAND, S.TERMINATING): stop_command_terminating,
    (S.STOP_COMMAND, S.KILLING): stop_command_killing,
    (S.STOP_COMMAND, S.DONE): stop_command_done,
    (S.TERMINATING, S.KILLING): on(terminating_killing),
    (S.TERMINATING, S.DONE): on(terminating_done),
    (S.KILLING, S.DONE): on(killing_done),
}


def test_the_scenarios_cover_every_allowed_change() -> None:
    allowed = {(before, after) for before, afters in TRANSITIONS.items() for after in afters}
    assert set(SCENARIOS) == allowed


@pytest.mark.parametrize("change", list(SCENARIOS), ids=lambda c: f"{c[0].value}->{c[1].value}")
def test_each_change_is_made_and_said_once(tmp_path: Path, change: tuple[State, State]) -> None:
    rig = SCENARIOS[change](tmp_path)
    assert change in rig.sup.changes, (rig.sup.changes, rig.log())


def test_a_change_not_allowed_is_a_defect(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    with pytest.raises(BadTransition, match="running to starting"):
        rig.sup.change(S.STARTING, "no")
    assert rig.state is S.RUNNING


# --- what the states do ---------------------------------------------------------------------------


def test_sigterm_at_the_deadline_less_the_stop_timeout_then_sigkill_just_before_it(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    deadline = rig.sup.deadline
    scheduler = rig.scheduler(ignores=frozenset({signal.SIGTERM}))
    rig.run_until(S.TERMINATING)
    assert rig.clock.now == pytest.approx(deadline - 5.0)
    assert scheduler in rig.table.sent(signal.SIGTERM) and scheduler in rig.table.sent(signal.SIGCONT)
    rig.run_until(S.KILLING)
    assert deadline - 0.1 <= rig.clock.now < deadline
    assert scheduler in rig.table.sent(signal.SIGKILL) and rig.children.cgroup_kills
    rig.run_until(S.DONE)
    assert rig.clock.now < deadline and scheduler not in rig.table.procs
    assert rig.sup.step() is None  # done: no more looks


def test_only_a_renewal_moves_the_deadline_and_a_bad_one_is_a_warning(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    rig.scheduler()
    old = rig.sup.deadline
    rig.renewals.pending = [
        (old - 10.0, ""),
        (old + 60.0, ""),
        (None, "ignored the deadline file: written during another boot"),
    ]
    rig.step(1.0)
    rig.step(1.0)
    assert rig.sup.deadline == old + 60.0  # never less than it had
    rig.step(1.0)
    assert (logging.WARNING, "ignored the deadline file: written during another boot") in rig.lines
    rig.run_until(S.TERMINATING, limit=100.0)
    assert rig.clock.now == pytest.approx(old + 60.0 - 5.0)
    assert rig.children.told[-1][0] == old + 60.0  # the watcher knows it too


def test_a_stop_request_ends_the_scheduler_within_the_stop_timeout(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    rig.scheduler(ignores=frozenset({signal.SIGTERM}))
    rig.step(1.0)
    rig.sup.request_stop(signal.SIGTERM)
    rig.sup.request_stop(signal.SIGTERM)
    assert rig.log().count("received signal") == 1
    rig.step()
    assert rig.state is S.TERMINATING and rig.sup.kill_at == pytest.approx(rig.clock.now + 5.0)
    assert "asked to stop: SIGTERM to" in rig.log()
    rig.run_until(S.DONE)


def test_the_first_scheduler_below_it_registers_its_start_as_over(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    rig.step(0.5)
    assert ("tree", True) not in rig.children.registrations
    rig.scheduler()
    rig.step(0.5)
    assert rig.children.registrations[-1] == ("tree", True)


def test_a_scheduler_it_may_not_signal_registers_denied_and_is_named_at_the_deadline(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    rig.children.exit(rig.root, 0)
    other = rig.table.add(SCHEDULER, ppid=1, denied=True, user="nobody")  # handed to a unit it may not signal
    rig.step()
    assert rig.state is S.WATCHING and rig.children.registrations[-1] == ("denied", False)
    warning = f"not permitted to signal pid {other} (nobody): this leash cannot stop it at the deadline"
    assert [m for level, m in rig.lines if level == logging.WARNING and m.startswith(warning)], rig.log()
    rig.run_until(S.DONE)
    assert rig.lines[-1] == (
        logging.ERROR,
        f"pid {other} (nobody) left running past the deadline: not permitted to signal",
    )
    assert rig.clock.now < rig.sup.deadline


def test_a_hand_off_ends_what_was_left_and_watches_the_nodes_scheduler(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    rig.handed_off()
    assert rig.sup.mode == "watch" and rig.children.registrations[-1] == ("watch", False)
    [elsewhere] = rig.table.schedulers("airflow scheduler")
    rig.step(1.0)
    assert rig.children.told[-1][1] == "watch" and elsewhere in [p for p, _s in rig.children.told[-1][2]]
    rig.run_until(S.TERMINATING)
    assert elsewhere in rig.table.sent(signal.SIGTERM)  # it stops the node's scheduler at the deadline


def test_the_leftovers_of_a_scheduler_that_exited_end_after_the_settle_time(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    rig.table.procs[rig.root].argv = list(SCHEDULER)  # the start command execs the scheduler
    rig.step(0.5)
    leftover = rig.table.add(OTHER, ppid=rig.root)
    rig.children.exit(rig.root, 1)
    exited = rig.clock.now
    rig.step()
    assert rig.state is S.WAITING
    rig.run_until(S.DONE)
    assert rig.clock.now >= exited + SETTLE and leftover in rig.table.sent(signal.SIGKILL)
    assert rig.lines[-1][1] == "the scheduler exited (status 1); ended 1 leftover process(es)"


def _traced(events: list[str], name: str, inner: Callable[..., T]) -> Callable[..., T]:
    def wrapper(*args: Any, **kwargs: Any) -> T:
        events.append(name)
        return inner(*args, **kwargs)

    return wrapper


def _trace(rig: Rig) -> list[str]:
    """What the supervisor does to the machine, in order: reap, read (the deadline file), scan,
    cgroup (its kill), a signal's name with its pid, log."""
    events: list[str] = []
    table, children = rig.table, rig.children
    signal_ = table.signal

    def traced_signal(pid: int, start: int, signum: int) -> str:
        if signum:
            events.append(f"{signal.Signals(signum).name} {pid}")
        return signal_(pid, start, signum)

    table.signal = traced_signal  # type: ignore[method-assign]
    table.table = _traced(events, "scan", table.table)  # type: ignore[method-assign]
    children.reap = _traced(events, "reap", children.reap)  # type: ignore[method-assign]
    children.kill_cgroup = _traced(events, "cgroup", children.kill_cgroup)  # type: ignore[method-assign]
    rig.renewals.take = _traced(events, "read", rig.renewals.take)  # type: ignore[method-assign]
    rig.sup.say = _traced(events, "log", rig.sup.say)
    return events


@pytest.mark.parametrize("setup", [Rig.scheduler, Rig.daemon, Rig.handed_off], ids=["running", "daemon", "watching"])
def test_a_leash_that_wakes_past_its_kill_time_kills_first_and_sends_no_sigterm(
    tmp_path: Path, setup: Callable[[Rig], object]
) -> None:
    rig = Rig(tmp_path, linger=60.0).started()
    setup(rig)
    rig.step(0.5)  # a look: it knows its tree
    known = [pid for pid, _start in rig.sup.view.tree + rig.sup.view.watched]
    assert known, rig.log()
    events = _trace(rig)
    rig.step(rig.sup.deadline + 3.0 - rig.clock.now)  # it slept (frozen) from before the stop to past the deadline
    first = events[: 2 + len(known)]  # the deadline file alone is read first (a renewal meanwhile)
    assert first == ["read", "cgroup"] + [f"SIGKILL {pid}" for pid in known], events
    assert not rig.table.sent(signal.SIGTERM), events
    assert rig.state in (S.KILLING, S.DONE)
    assert "deadline reached: SIGKILL to" in rig.log() and "3.10s late (the leash was frozen or starved)" in rig.log()
    rig.run_until(S.DONE)
    assert not rig.table.schedulers("airflow scheduler")


def test_a_leash_that_wakes_past_its_kill_time_takes_up_a_renewal_written_meanwhile(tmp_path: Path) -> None:
    """Only the leash was starved: the controller renewed the placement and wrote the deadline. That
    deadline is a placement still valid, so the scheduler is kept, not killed and restarted."""
    rig = Rig(tmp_path, linger=60.0).started()
    rig.scheduler()
    rig.step(0.5)
    late = rig.sup.deadline + 3.0
    rig.renewals.pending.append((late + 30.0, ""))
    rig.step(late - rig.clock.now)
    assert not rig.table.sent(signal.SIGKILL) and not rig.table.sent(signal.SIGTERM), rig.log()
    assert rig.state is S.RUNNING and rig.sup.deadline == late + 30.0


def test_a_leash_that_wakes_past_its_kill_time_while_terminating_kills_first(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    scheduler = rig.scheduler(ignores=frozenset({signal.SIGTERM}))
    rig.run_until(S.TERMINATING)
    events = _trace(rig)
    rig.step(rig.sup.kill_at + 1.0 - rig.clock.now)
    assert events[:3] == ["read", "cgroup", f"SIGKILL {scheduler}"], events
    assert rig.state is S.DONE and "1.00s late" in rig.log()
    assert rig.sup.kill_at == rig.clock.now  # KILL_GIVE_UP counts from the kill, not the missed kill time


def test_a_leash_on_time_says_no_more_than_deadline_reached(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    rig.scheduler(ignores=frozenset({signal.SIGTERM}))
    rig.run_until(S.KILLING)
    [line] = [m for _level, m in rig.lines if m.startswith("deadline reached")]
    assert line == "deadline reached: SIGKILL to 1 process(es)"  # the start command obeyed SIGTERM


def test_what_survives_sigkill_is_left_after_a_while(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    rig.scheduler(ignores=frozenset({signal.SIGTERM, signal.SIGKILL}))
    rig.run_until(S.DONE)
    give_up = rig.sup.kill_at + KILL_GIVE_UP
    assert give_up < rig.clock.now < give_up + STOP_POLL + 0.02
    assert "survive SIGKILL (uninterruptible?); leaving" in rig.lines[-1][1]
