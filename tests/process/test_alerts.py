"""Alert sends that fail, with real processes: a webhook answering garbage.

A failed send is one line naming the channel and why: ``send_test_email`` exits 1 with it (no
traceback), and a running controller logs it once and still delivers its next alert.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.process.harness import Cluster
from tests.support.hook import GARBAGE, OK, ScriptedHook
from tests.support.waiting import wait_for

TOKEN = "Hook-Secret-4417"


def _with_hook(cluster: Cluster, port: int) -> None:
    cluster.config.write_text(
        cluster.config.read_text()
        + f"alert_webhook_url = http://127.0.0.1:{port}/hooks/{TOKEN}\nretry_count_before_alerting = 1\n"
        + "[smtp]\nsmtp_timeout = 3\n"
    )


def test_send_test_email_to_a_garbage_webhook_is_one_line(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    with ScriptedHook([GARBAGE]) as hook:
        _with_hook(cluster, hook.port)
        done = cluster.cli("send_test_email")
        assert hook.bodies, "the webhook was never called"
    text = (done.stdout + done.stderr).strip()
    assert done.returncode == 1, text
    assert len(text.splitlines()) == 1 and "Traceback" not in text, text
    assert "webhook" in text and "BadStatusLine" in text and TOKEN not in text, text


def test_a_daemon_alert_after_a_garbage_answer_still_goes_out(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    with ScriptedHook([GARBAGE, OK]) as hook:
        _with_hook(cluster, hook.port)
        cluster.observer.start()
        cluster.start("n1")
        # Each kill of the scheduler is a failure, alerted once per incident (an incident ends once
        # the scheduler runs stably again): kill until two alerts reached the webhook, a bounded number of times.
        for _ in range(10):
            wait_for(lambda: len(cluster.observer.current()) == 1, 60, "a scheduler running")
            # The incident ends once it has run 3 polls: a kill before that (a loaded machine's
            # slow start) is the same incident, alerted no more, and backs the node off.
            time.sleep(4 * cluster.poll)
            running = cluster.observer.current()
            if not running:  # it went meanwhile (a loaded machine's slow health check): look again
                continue
            before = len(hook.bodies)
            os.kill(running[0].pid, signal.SIGKILL)
            with contextlib.suppress(AssertionError):
                wait_for(lambda: len(hook.bodies) > before, 4, "an alert")  # noqa: B023 - called at once
            if len(hook.bodies) >= 2:
                break
        assert len(hook.bodies) >= 2, cluster.log("n1")[-3000:]
        wait_for(lambda: "alert sent" in cluster.log("n1"), 30, "the second alert logged as sent")
    log = cluster.log("n1")
    failures = [line for line in log.splitlines() if "alert not delivered" in line]
    assert len(failures) == 1 and "webhook" in failures[0] and "BadStatusLine" in failures[0], failures
    assert "Traceback" not in log, log[-3000:]
    assert TOKEN not in log


@pytest.fixture(autouse=True)
def _no_inherited_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))
