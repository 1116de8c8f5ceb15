"""The renewal thread keeps its rhythm from each round's start: after a round that hung on a
frozen store, the next comes at once, so a stall that ends is renewed through before the leash's
deadline. Driven by a fake clock: the stop event's wait advances it."""

from __future__ import annotations

import threading
import types

from scheduler_failover_controller import daemon
from scheduler_failover_controller.liveness import Liveness
from tests.unit.fakes import make_config

INTERVAL = 2.0


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Stop:
    """``wait`` lets the fake time pass instead of the real one; set after ``rounds`` rounds."""

    def __init__(self, clock: _Clock, rounds: int) -> None:
        self.clock, self.rounds = clock, rounds
        self.started: list[float] = []

    def wait(self, timeout: float) -> bool:
        self.clock.now += timeout
        return len(self.started) >= self.rounds


class _Controller:
    """A renewal that takes ``took[i]`` seconds in round ``i`` (a hung store: metastore_timeout)."""

    def __init__(self, clock: _Clock, stop: _Stop, took: list[float]) -> None:
        self.clock, self.stop, self.took = clock, stop, took
        self.identity = types.SimpleNamespace(heartbeats=0)

    def renew(self) -> bool:
        self.stop.started.append(self.clock.now)
        self.clock.now += self.took[len(self.stop.started) - 1]
        return False


def _run(took: list[float]) -> list[float]:
    clock = _Clock()
    stop = _Stop(clock, len(took))
    controller = _Controller(clock, stop, took)
    daemon._renewals(
        controller,  # type: ignore[arg-type]
        INTERVAL,
        stop,  # type: ignore[arg-type]
        threading.Event(),
        Liveness(make_config()),
        monotonic=clock,
    )
    return stop.started


def test_rounds_start_an_interval_apart_however_long_each_took() -> None:
    started = _run([0.1, 0.4, 1.9, 0.0])
    assert [round(b - a, 6) for a, b in zip(started, started[1:])] == [INTERVAL] * 3


def test_a_round_that_hung_past_the_interval_is_followed_at_once() -> None:
    # The second round hangs 2.5 s (metastore_timeout + 1 s at the defaults): the third starts as
    # it ends, not an interval later, and the rhythm goes on from there.
    started = _run([0.1, 2.5, 0.1, 0.1])
    assert round(started[2] - started[1], 6) == 2.5
    assert round(started[3] - started[2], 6) == INTERVAL
