"""``event_command`` on fakes: the order of runs, a full queue's drops, timeouts and failures as one
line each, the environment built from nothing, and the controller's events reaching it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from scheduler_failover_controller.event_hook import (
    EventHook,
    HookEvent,
    hook_environment,
    run_hook,
    run_now,
    timestamp,
)
from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.redaction import config_secrets

from .controller_support import tick
from .fakes import Cluster, make_config

SECRET_URL = "mysql+pymysql://sfc:Metastore-Pw-8812@db.invalid/sfc"
AT = 1_796_651_401.25  # 2026-12-07T13:50:01.250Z


class FakeRunner:
    """Records each run's environment; answers with ``status`` (None: timed out), or blocks on ``gate``."""

    def __init__(self, status: int | None = 0, said: str = "") -> None:
        self.status, self.said = status, said
        self.envs: list[dict[str, str]] = []
        self.timeouts: list[float] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Semaphore(0)

    def __call__(self, argv: list[str], env: Mapping[str, str], timeout: float) -> tuple[int | None, str]:
        assert argv[:2] == ["/bin/sh", "-c"]
        self.envs.append(dict(env))
        self.timeouts.append(timeout)
        self.entered.release()
        if self.gate is not None:
            assert self.gate.wait(30)
        return self.status, self.said


def _hook(runner: FakeRunner, queue_size: int = 64, sql_conn: str = "") -> EventHook:
    more = {"metadata_service_sql_conn": sql_conn} if sql_conn else {}
    config = make_config("n1", event_command="notify-me", event_command_timeout=7, **more)
    return EventHook(config, runner=runner, clock=lambda: AT, queue_size=queue_size)


def test_events_run_one_at_a_time_in_the_order_they_came() -> None:
    runner = FakeRunner()
    others = set(threading.enumerate())  # other tests' hooks may still have a worker of their own
    hook = _hook(runner)
    for i in range(20):
        hook.emit(EventKind.RESTART, f"restart {i}", node="n2", epoch=3)
    assert hook.wait_idle(10)
    assert [env["SFC_MESSAGE"] for env in runner.envs] == [f"restart {i}" for i in range(20)]
    assert runner.timeouts == [7.0] * 20
    assert sum(t.name == "event-command" for t in set(threading.enumerate()) - others) == 1


def test_the_environment_holds_the_event_and_nothing_of_the_controllers() -> None:
    config = make_config(metadata_service_sql_conn=SECRET_URL)
    env = hook_environment(
        hook_event("move", f"moved: {SECRET_URL} said no", node="n2", from_node="n1", epoch=4),
        config_secrets(config),
        {
            "PATH": "/opt/bin:/usr/bin",
            "LANG": "C.UTF-8",
            "AIRFLOW__SCHEDULER_FAILOVER__METADATA_SERVICE_SQL_CONN": SECRET_URL,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": SECRET_URL,
            "AWS_SECRET_ACCESS_KEY": "aws-secret",
            "NOTIFY_SOCKET": "/run/systemd/notify",
        },
    )
    assert env == {
        "PATH": "/opt/bin:/usr/bin",
        "LANG": "C.UTF-8",
        "SFC_EVENT": "move",
        "SFC_NODE": "n2",
        "SFC_FROM_NODE": "n1",
        "SFC_EPOCH": "4",
        "SFC_CONTROLLER": "n1",
        "SFC_MESSAGE": "moved: mysql+pymysql://sfc:***@db.invalid/sfc said no",
        "SFC_TIME": "2026-12-07T13:50:01.250+00:00",
        "SFC_SERVICE": "scheduler",
    }


def hook_event(kind: str, message: str, node: str = "", from_node: str = "", epoch: int = 0) -> HookEvent:
    return HookEvent(kind, message, "n1", AT, node, from_node, epoch)


def test_without_path_the_command_gets_a_plain_one() -> None:
    env = hook_environment(hook_event("start", "x"), [], {})
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert timestamp(0) == "1970-01-01T00:00:00.000+00:00"


def test_a_full_queue_drops_events_says_so_once_and_counts_them(caplog: pytest.LogCaptureFixture) -> None:
    runner = FakeRunner()
    runner.gate = threading.Event()
    hook = _hook(runner, queue_size=2)
    hook.emit(EventKind.ELECTED, "first")
    assert runner.entered.acquire(timeout=10)  # the worker runs "first" and hangs there
    with caplog.at_level(logging.INFO, logger="scheduler_failover_controller.event_hook"):
        began = time.monotonic()
        for i in range(12):
            hook.emit(EventKind.RESTART, f"restart {i}")
        assert time.monotonic() - began < 1.0  # emitting never waits for the command
        assert hook.dropped == hook.dropped_total == 10
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == ["event_command is 2 event(s) behind; dropping new events until it catches up"]
        runner.gate.set()
        assert hook.wait_idle(10)
        hook.emit(EventKind.STOP, "last")
        assert hook.wait_idle(10)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == ["event_command caught up; 10 event(s) were dropped"]
    assert [e["SFC_MESSAGE"] for e in runner.envs] == ["first", "restart 0", "restart 1", "last"]
    assert hook.counts == {"elected": 1, "restart": 12, "stop": 1}  # dropped events are still counted


def test_a_timeout_or_a_failure_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="scheduler_failover_controller.event_hook"):
        timed_out = _hook(FakeRunner(status=None))
        timed_out.emit(EventKind.FENCE, "f", node="n1")
        assert timed_out.wait_idle(10)
        failed = _hook(FakeRunner(status=3, said="pager said Metastore-Pw-8812"), sql_conn=SECRET_URL)
        failed.emit(EventKind.MOVE, "m")
        assert failed.wait_idle(10)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines == [
        (logging.WARNING, "event_command for the fence event timed out after 7s; its process group was killed"),
        (logging.WARNING, "event_command for the move event failed (exit 3): pager said ***"),
    ]
    assert (timed_out.failures, failed.failures, timed_out.self_fences) == (1, 1, 1)


def test_a_runner_that_raises_is_one_line_and_the_worker_goes_on() -> None:
    calls: list[str] = []

    def runner(argv: list[str], env: Mapping[str, str], timeout: float) -> tuple[int | None, str]:
        calls.append(env["SFC_MESSAGE"])
        if len(calls) == 1:
            raise FileNotFoundError(2, "No such file or directory")
        return 0, ""

    config = make_config(event_command="x")
    event = hook_event("start", "one")
    assert run_hook("x", 1, event, [], runner) == (
        "event_command for the start event could not be run: No such file or directory"
    )
    hook = EventHook(config, runner=runner)
    hook.emit(EventKind.START, "two")
    hook.emit(EventKind.START, "three")
    assert hook.wait_idle(10)
    assert calls == ["one", "two", "three"]


def test_without_a_command_events_are_only_counted() -> None:
    runner = FakeRunner()
    hook = EventHook(make_config(), runner=runner)
    hook.emit(EventKind.START, "s", node="n1")
    assert hook.wait_idle(1) and runner.envs == [] and hook.counts == {"start": 1}
    assert run_now(make_config(), EventKind.PAUSE, "paused by CLI", runner=runner) is None and runner.envs == []


def test_the_cli_runs_it_at_once_and_reports_a_failure() -> None:
    runner = FakeRunner(status=1, said="no")
    config = make_config(event_command="x")
    assert run_now(config, EventKind.PAUSE, "paused by CLI", runner=runner) == (
        "event_command for the pause event failed (exit 1): no"
    )
    (env,) = runner.envs
    assert (env["SFC_EVENT"], env["SFC_CONTROLLER"], env["SFC_EPOCH"], env["SFC_NODE"]) == ("pause", "n1", "0", "")


def test_the_controllers_events_reach_the_command_with_their_nodes(cluster: Cluster) -> None:
    c1 = cluster.controller("n1", event_command="x")
    runner = FakeRunner()
    c1.hooks.runner = runner
    c1.run_cycle()
    cluster.runners["n1"].die()
    tick(cluster, c1)
    c1.shutdown()
    assert c1.hooks.wait_idle(10)
    seen = [(e["SFC_EVENT"], e["SFC_NODE"], e["SFC_EPOCH"], e["SFC_CONTROLLER"]) for e in runner.envs]
    assert seen == [(kind, "n1", "1", "n1") for kind in ("elected", "start", "restart", "stop")]
    assert c1.hooks.counts == {"elected": 1, "start": 1, "restart": 1, "stop": 1}
    assert cluster.store.kinds() == ["elected", "start", "restart", "stop"]


def test_a_move_names_both_nodes(cluster: Cluster) -> None:
    c1 = cluster.controller("n1", event_command="x", max_restart_attempts=0)
    runner = FakeRunner()
    c1.hooks.runner = runner
    cluster.runners["n2"].run()
    cluster.store.force_placement("n2", 5.0)
    c1.run_cycle()
    cluster.runners["n2"].die()
    for _ in range(3):
        tick(cluster, c1)
        if "move" in cluster.store.kinds():
            break
    assert c1.hooks.wait_idle(10)
    moves = [(e["SFC_NODE"], e["SFC_FROM_NODE"]) for e in runner.envs if e["SFC_EVENT"] == "move"]
    assert moves and moves[0][1] == "n2" and moves[0][0] in ("n1", "n3"), [e["SFC_EVENT"] for e in runner.envs]


def test_close_waits_a_bounded_time_then_drops_what_is_left(caplog: pytest.LogCaptureFixture) -> None:
    runner = FakeRunner()
    runner.gate = threading.Event()
    hook = _hook(runner)
    hook.emit(EventKind.STOP, "first")
    hook.emit(EventKind.STOP, "second")
    assert runner.entered.acquire(timeout=10)
    began = time.monotonic()
    with caplog.at_level(logging.INFO, logger="scheduler_failover_controller.event_hook"):
        hook.close(0.2)
    assert time.monotonic() - began < 5
    assert [r.getMessage() for r in caplog.records] == [
        "exiting: ended the running event_command and dropped 1 queued event(s)"
    ]
    runner.gate.set()
    assert hook.wait_idle(10)
    assert [e["SFC_MESSAGE"] for e in runner.envs] == ["first"]  # "second" never started


def test_the_readme_lists_every_event_kind() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Event hooks (`event_command`)", 1)[1].split("\n## ", 1)[0]
    assert [kind.value for kind in EventKind if f"`{kind.value}`" not in section] == []
