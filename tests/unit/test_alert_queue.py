"""The daemon's alerts: one sending thread, a bounded queue, drops said once and counted."""

from __future__ import annotations

import logging
import threading

import pytest

from scheduler_failover_controller.alerts import Alerter
from tests.unit.fakes import make_config


class _Blocking(Alerter):
    """Delivers by waiting on ``release`` (a channel that does not answer)."""

    def __init__(self, queue_size: int) -> None:
        super().__init__(make_config(alert_webhook_url="http://127.0.0.1:9/hook"), queue_size=queue_size)
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self.delivered: list[str] = []

    def deliver(self, summary: str, body: str) -> None:
        self.started.release()
        self.release.wait(30)
        self.delivered.append(summary)


def _alert_threads() -> int:
    return sum(t.name == "alert" for t in threading.enumerate())


def test_a_slow_channel_keeps_one_thread_and_drops_the_excess_once(caplog: pytest.LogCaptureFixture) -> None:
    alerter = _Blocking(queue_size=2)
    before = _alert_threads()
    try:
        alerter.notify("first", "")
        assert alerter.started.acquire(timeout=10)  # the worker holds "first"
        with caplog.at_level(logging.INFO, logger="scheduler_failover_controller.alerts"):
            for i in range(10):
                alerter.notify(f"more {i}", "")
        assert _alert_threads() == before + 1
        assert alerter.dropped == 8 and alerter.dropped_total == 8
        drops = [r for r in caplog.records if "new alerts are dropped" in r.getMessage()]
        assert len(drops) == 1, [r.getMessage() for r in caplog.records]
    finally:
        alerter.release.set()
    for _ in range(200):
        if len(alerter.delivered) == 3:
            break
        threading.Event().wait(0.05)
    assert alerter.delivered == ["first", "more 0", "more 1"]
    with caplog.at_level(logging.INFO, logger="scheduler_failover_controller.alerts"):
        alerter.notify("later", "")
    assert any("8 alert(s) were dropped" in r.getMessage() for r in caplog.records)
    assert alerter.dropped == 0
