"""The controller's own secrets: read from a command, used, never shown, and
kept from processes of the controller's own user.

A controller runs as root without any capability (so that another process of the same uid and
no privilege is a fair reader), with its webhook URL from ``AIRFLOW__..._ALERT_WEBHOOK_URL_CMD``.
Its alert reaches the URL the command printed; its DEBUG log never shows it; and an unprivileged
process of the same uid cannot read ``/proc/<controller>/environ``, while it can read the
(dumpable) scheduler's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.process.harness import SFC, Cluster
from tests.support.hook import OK, ScriptedHook
from tests.support.waiting import wait_for

TOKEN = "Cmd-Planted-5521"
ENV_MARK = "Env-Planted-8830"
NO_CAPS = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]


def _read_environ(pid: int) -> subprocess.CompletedProcess[bytes]:
    """``/proc/PID/environ`` as read by a process of this uid without any capability."""
    return subprocess.run([*NO_CAPS, "cat", f"/proc/{pid}/environ"], capture_output=True, timeout=10, check=False)


def test_a_webhook_url_from_a_command_is_used_never_shown_and_the_environ_is_closed(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("dropping capabilities needs root")
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    with ScriptedHook([OK]) as hook:
        script = tmp_path / "webhook-url"
        script.write_text(f"#!/bin/sh\nprintf '%s\\n' 'http://127.0.0.1:{hook.port}/hooks/{TOKEN}'\n")
        script.chmod(0o700)
        cluster.config.write_text(cluster.config.read_text() + "retry_count_before_alerting = 1\n")
        env = {
            **cluster.env("n1"),
            "AIRFLOW__SCHEDULER_FAILOVER__ALERT_WEBHOOK_URL_CMD": str(script),
            "SFC_TEST_MARK": ENV_MARK,
        }
        log = (cluster.tmp / "n1.log").open("ab")
        cluster.observer.start()
        controller = subprocess.Popen(
            [*NO_CAPS, *SFC, "--config", str(cluster.config), "start"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        cluster.procs["n1"] = controller
        wait_for(lambda: len(cluster.observer.current()) == 1, 60, "the scheduler running")
        scheduler = cluster.observer.current()[0].pid
        # The reader can read a dumpable process of this uid (the scheduler), not the controller.
        assert _read_environ(scheduler).returncode == 0
        closed = _read_environ(controller.pid)
        assert closed.returncode != 0 and ENV_MARK.encode() not in closed.stdout, closed
        # An alert goes to the URL the command printed.
        os.kill(scheduler, signal.SIGKILL)
        wait_for(lambda: hook.paths, 30, "the alert to reach the webhook")
        assert hook.paths[0] == f"/hooks/{TOKEN}"
        wait_for(lambda: "alert sent" in cluster.log("n1"), 30, "the alert logged as sent")
        shown = {args: cluster.cli(*args.split()) for args in ("status", "send_test_email")}
        with contextlib.suppress(ProcessLookupError):
            controller.send_signal(signal.SIGTERM)
        controller.wait(timeout=30)
    assert "logging_level = DEBUG" in cluster.config.read_text()
    assert TOKEN not in cluster.log("n1")
    for args, done in shown.items():
        assert TOKEN not in done.stdout + done.stderr, args


@pytest.fixture(autouse=True)
def _no_inherited_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))
