"""fence_command's output is bounded and it gets none of the controller's own settings (the real
commands are in tests/process/test_fence_command.py)."""

from __future__ import annotations

import pytest

from scheduler_failover_controller.controller.fencing import OUTPUT_TAIL, keep_tail, run_command

SECRET = "AIRFLOW__SCHEDULER_FAILOVER__ALERT_WEBHOOK_URL"


def test_the_tail_is_at_most_output_tail_bytes() -> None:
    tail = bytearray()
    for n in range(100):
        keep_tail(tail, bytes([n % 256]) * 1000)
    assert len(tail) == OUTPUT_TAIL
    assert tail[-1] == 99


def test_the_environment_given_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    given: dict[str, object] = {}

    class Stop(Exception):
        pass

    def popen(argv: list[str], **kwargs: object) -> None:
        given.update(kwargs)
        raise Stop

    monkeypatch.setenv(SECRET, "http://hook.invalid/Secret-4417")
    monkeypatch.setattr("subprocess.Popen", popen)
    with pytest.raises(Stop):
        run_command(["true"], 1)
    env = given["env"]
    assert isinstance(env, dict) and SECRET not in env and "PATH" in env
