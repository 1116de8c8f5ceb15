"""fence_command run for real: bounded in time and output, and given none of the controller's own
settings (its webhook URL, its ZooKeeper digest) in its environment."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from scheduler_failover_controller.controller.fencing import Fencing, run_command
from tests.unit.fakes import make_config

SECRET = "AIRFLOW__SCHEDULER_FAILOVER__ALERT_WEBHOOK_URL"


def test_a_flood_of_output_ends_in_its_last_line() -> None:
    status, said = run_command(["/bin/sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo last words"], 10)
    assert (status, said) == (0, "last words")


def test_a_command_that_hangs_is_killed_and_a_leftover_child_does_not_hold_us() -> None:
    began = time.monotonic()
    status, _ = run_command(["/bin/sh", "-c", "sleep 30 & sleep 30"], 0.5)
    assert status is None
    assert time.monotonic() - began < 5


def test_the_controllers_settings_do_not_reach_fence_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dump = tmp_path / "env"
    monkeypatch.setenv(SECRET, "http://hook.invalid/Secret-4417")
    monkeypatch.setenv("TEST_KEPT_VAR", "kept-1")
    config = make_config(fence_command=f"env > {dump}; false")
    events: list[tuple[str, str]] = []
    fencing = Fencing(config, None, None, lambda kind, text, **_: events.append((kind, text)))  # type: ignore[arg-type]
    assert fencing.fence("n3", 1) is False
    text = dump.read_text()
    assert "TEST_KEPT_VAR=kept-1" in text
    assert "AIRFLOW__SCHEDULER_FAILOVER" not in text
    assert events == [("fence", "fence_command for n3 failed (1)")]
