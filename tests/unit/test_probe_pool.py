"""The probe pool: a hung probe is abandoned at its deadline, costs one thread, and blocks no other node."""

from __future__ import annotations

import threading

from scheduler_failover_controller.controller.health import Health
from scheduler_failover_controller.probe_pool import ProbePool
from scheduler_failover_controller.probe_result import ProbeResult, SchedulerState
from tests.unit.fakes import make_config


class StepClock:
    """A monotonic clock that moves ``step`` seconds at each look: a wait ends after a few looks."""

    def __init__(self, step: float = 1.0) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _pool_threads() -> int:
    return sum(t.name.startswith("probe-") for t in threading.enumerate())


def test_a_hung_call_is_abandoned_and_not_started_again_while_it_hangs() -> None:
    release = threading.Event()
    pool = ProbePool(monotonic=StepClock())
    calls = {"hung": lambda: release.wait(30), "fine": lambda: True}
    try:
        first = pool.run_all(calls, timeout=1.5)  # waits 0.5 s: the clock moves 1 s a look
        assert first["fine"].value is True
        assert first["hung"].value is None and first["hung"].running_for is not None and not first["hung"].busy
        before = _pool_threads()
        for _ in range(5):
            again = pool.run_all(calls, timeout=5)
            assert again["hung"].busy and again["fine"].value is True
        assert _pool_threads() <= before + 1  # the "fine" one may still be ending: never a pile
        assert pool.running() == 1
    finally:
        release.set()
    for _ in range(100):
        if pool.running() == 0:
            break
        threading.Event().wait(0.05)
    assert pool.run_all(calls, timeout=5)["hung"].value is True


def test_an_error_is_handed_back() -> None:
    def broken() -> bool:
        raise TimeoutError()

    out = ProbePool(monotonic=StepClock()).run_all({"broken": broken}, timeout=50)
    assert isinstance(out["broken"].error, TimeoutError) and out["broken"].value is None


class _Runner:
    def __init__(self, node: str, result: ProbeResult | None = None, error: BaseException | None = None) -> None:
        self.node, self.result, self.error = node, result, error
        self.release = threading.Event()

    def probe(self) -> ProbeResult:
        if self.error is not None:
            raise self.error
        if self.result is None:
            self.release.wait(30)
            return ProbeResult(self.node, SchedulerState.STOPPED)
        return self.result


def test_probe_all_names_why_a_node_is_unknown() -> None:
    health = Health(make_config(ssh_timeout=1), None, StepClock())
    pool = ProbePool(monotonic=StepClock())
    hung = _Runner("n3")
    runners = {
        "n1": _Runner("n1", ProbeResult("n1", SchedulerState.STOPPED)),
        "n2": _Runner("n2", error=TimeoutError()),
        "n3": hung,
    }
    try:
        first = health.probe_all(runners, pool)  # type: ignore[arg-type]
        second = health.probe_all(runners, pool)  # type: ignore[arg-type]
    finally:
        hung.release.set()
    assert first["n1"].state is SchedulerState.STOPPED
    assert first["n2"].state is SchedulerState.UNKNOWN and first["n2"].detail == "probe failed: timed out"
    assert first["n3"].state is SchedulerState.UNKNOWN and first["n3"].detail.startswith("probe timed out after ")
    assert second["n3"].detail.startswith("its previous probe still hangs after ")
    assert second["n1"].state is SchedulerState.STOPPED
