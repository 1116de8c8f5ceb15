"""The exit channel (scheduler_failover_controller/exit_channel.py, exit_listener.py): who is heard,
how much is read, and that a message does nothing but wake the cycle."""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

import pytest

from scheduler_failover_controller import daemon, exit_listener
from scheduler_failover_controller.exit_channel import MAX_SIZE, MESSAGE, ShortPath, exit_socket_name, send_exit
from scheduler_failover_controller.exit_listener import BURST, RATE, Datagram, ExitListener, Gate
from scheduler_failover_controller.leash.records import leash_dir
from scheduler_failover_controller.leash.states import State
from tests.support.waiting import holds_for, wait_for

from .fakes import FakeClock
from .test_daemon import _config, _Controller
from .test_leash_states import SCENARIOS

ME = os.geteuid()
LEASH = 4242


def gate(clock: FakeClock | None = None) -> Gate:
    return Gate(ME, lambda pid: pid == LEASH, (clock or FakeClock()).monotonic)


def from_leash(**changes: object) -> Datagram:
    fields: dict[str, object] = {"data": MESSAGE, "truncated": False, "pid": LEASH, "uid": ME}
    fields.update(changes)
    return Datagram(**fields)  # type: ignore[arg-type]


def test_only_a_live_leash_of_this_user_saying_exactly_its_message_is_heard() -> None:
    g = gate()
    assert g.refusal(from_leash()) is None
    assert g.refusal(from_leash(uid=ME + 1)) == (
        f"uid {ME + 1}",
        f"sent by uid {ME + 1} (pid {LEASH}), not this controller's user (uid {ME})",
    )
    assert g.refusal(from_leash(pid=LEASH + 1)) == ("leash", f"pid {LEASH + 1} is not a live leash of this node")
    assert g.refusal(from_leash(pid=None, uid=None)) == ("credentials", "no sender credentials")
    assert g.refusal(from_leash(data=b"sfc-exit 2\n")) is not None
    assert g.refusal(from_leash(truncated=True))[0] == "size"  # type: ignore[index]
    assert g.refusal(from_leash(data=MESSAGE + b"x" * MAX_SIZE))[0] == "size"  # type: ignore[index]


def test_reading_is_bounded_by_a_rate() -> None:
    clock = FakeClock()
    g = gate(clock)
    assert [g.wait() for _ in range(BURST)] == [0.0] * BURST
    pause = g.wait()
    assert 0 < pause <= 1 / RATE
    clock.advance(pause)
    assert g.wait() == 0.0  # refilled at RATE per second, never past BURST
    clock.advance(3600)
    assert [g.wait() for _ in range(BURST)] == [0.0] * BURST and g.wait() > 0


def test_a_flood_of_refused_messages_is_one_warning_a_minute(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    woken: list[int] = []
    listener = ExitListener(tmp_path, "n1", woken.append, clock.monotonic)
    with caplog.at_level(logging.WARNING, logger=exit_listener.__name__):
        for _ in range(1000):
            assert not listener.handle(from_leash(uid=ME + 1))
        clock.advance(exit_listener.WARN_EVERY)
        assert not listener.handle(from_leash(uid=ME + 1))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert "999 more like it" in warnings[1]
    assert woken == []


def test_a_message_taken_only_wakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    woken: list[int] = []
    listener = ExitListener(tmp_path, "n1", woken.append)
    monkeypatch.setattr(listener, "_is_leash", lambda pid: pid == LEASH)
    assert listener.handle(from_leash())
    assert woken == [LEASH]


@pytest.fixture
def long_state_dir(tmp_path: Path) -> Path:
    """A state_dir whose socket path is too long for ``sockaddr_un`` (reached through /proc/self/fd)."""
    path = tmp_path / ("d" * 60) / ("e" * 60)
    path.mkdir(parents=True, mode=0o700)
    return path


def test_real_socket_checks_credentials_and_answers_a_leash(
    long_state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    woken: list[int] = []
    listener = ExitListener(long_state_dir, "n1", woken.append)
    assert listener.open()
    listener.start()
    try:
        path = leash_dir(long_state_dir) / exit_socket_name("n1")
        assert len(str(path)) > 108 and (path.stat().st_mode & 0o777) == 0o600
        # This process is no leash: refused, and no answer (send_exit waits its bound, then False).
        assert not send_exit(long_state_dir, "n1", wait=0.3)
        holds_for(lambda: woken == [], 0.3, "nothing woken")
        # Oversize: refused.
        monkeypatch.setattr(listener, "_is_leash", lambda pid: pid == os.getpid())
        where = ShortPath(leash_dir(long_state_dir), exit_socket_name("n1"))
        with where, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(MESSAGE * 10, where.path)
        holds_for(lambda: woken == [], 0.3, "nothing woken")
        # A live leash (as the registrations would say): heard, answered, the cycle woken.
        assert send_exit(long_state_dir, "n1", wait=5)
        wait_for(lambda: woken == [os.getpid()], 5, "the wake")
    finally:
        listener.close()
    assert not path.exists()


def test_nothing_listening_costs_the_leash_nothing(tmp_path: Path) -> None:
    assert not send_exit(tmp_path, "n1", wait=30)  # no socket: at once, never the wait


def test_the_daemon_runs_a_cycle_at_once_on_a_leash_message_and_not_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = threading.Event()
    controller = _Controller(stop, cycles_before_stop=2)  # the woken cycle ends the run
    leashes: set[int] = set()
    monkeypatch.setattr(ExitListener, "_is_leash", lambda _self, pid: pid in leashes)
    config = _config(tmp_path, poll_frequency="60", lease_ttl="40")
    runner = threading.Thread(target=daemon.run, args=(config, controller, stop), daemon=True)
    runner.start()
    try:
        wait_for(lambda: controller.cycles == 1, 10, "the first cycle")
        wait_for(lambda: (leash_dir(tmp_path) / exit_socket_name("n1")).exists(), 10, "the exit socket")
        assert not send_exit(tmp_path, "n1", wait=0.5)  # not a leash: no answer, no cycle
        holds_for(lambda: controller.cycles == 1, 1, "no cycle for a refused message")
        leashes.add(os.getpid())
        assert send_exit(tmp_path, "n1", wait=5)
        wait_for(lambda: controller.cycles == 2, 5, "a cycle at once, not after the 60 s poll")
        send_exit(tmp_path, "n1", wait=5)  # that cycle stopped the run: wake the loop to see it
    finally:
        stop.set()
        runner.join(15)
    assert controller.shut and not (leash_dir(tmp_path) / exit_socket_name("n1")).exists()


@pytest.mark.parametrize(
    "change", [c for c in SCENARIOS if c[1] is State.DONE], ids=lambda c: f"{c[0].value}->{c[1].value}"
)
def test_the_leash_tells_its_controller_only_of_an_exit_on_the_schedulers_own(
    tmp_path: Path, change: tuple[State, State]
) -> None:
    """Done from a live state (the scheduler exited, or never showed): told. Done after a stop it
    was asked for or its deadline (the controller or the deadline ended it): not."""
    rig = SCENARIOS[change](tmp_path)
    before, _done = rig.sup.changes[-1]
    assert rig.sup.exited is before.live, (rig.sup.changes, rig.log())
