"""Peers that answer one byte per second (run as ``nobody``): a scheduler health URL, an alert webhook,
an SMTP server. Every exchange with them ends at its deadline with a reason; no thread waits on
them for ever, none piles up, and SIGTERM still stops the controller at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.process.harness import SFC, Cluster
from tests.support.slow_peer import SlowPeer
from tests.support.waiting import wait_for

TOKEN = "Hook-Secret-5521"


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_a_slow_health_url_is_a_failing_check_and_sigterm_still_stops(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    with SlowPeer(tmp_path) as peer:
        cluster.config.write_text(
            cluster.config.read_text()
            + f"scheduler_health_url = {peer.url}/health\nscheduler_health_failures = 2\nssh_timeout = 2\n"
        )
        cluster.observer.start()
        proc = cluster.start("n1")
        wait_for(lambda: len(cluster.observer.current()) == 1, 60, "the scheduler running")
        first = cluster.observer.current()[0].pid
        most = 0

        def restarted() -> bool:
            nonlocal most
            most = max(most, _threads(proc.pid))
            return [seen.pid for seen in cluster.observer.current()] not in ([], [first])

        # Each look at the health URL ends after 2 s: two in a row past the start grace restart it.
        wait_for(restarted, 60, "the scheduler restarted as unhealthy")
        connections = peer.connections
        wait_for(lambda: peer.connections >= connections + 3, 30, "the controller still probing")
        most = max(most, _threads(proc.pid))
        assert most <= 12, f"{most} threads in the controller"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the controller still runs {time.monotonic() - started:.0f}s after SIGTERM")
    log = cluster.log("n1")
    assert "health check failed: timed out after 2s" in log, log[-3000:]
    assert "probe failed: \n" not in log and "probe failed: (" not in log and "Traceback" not in log, log[-3000:]


def _send_test_email(cluster: Cluster) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [*SFC, "--config", str(cluster.config), "send_test_email"],
        env=cluster.env("n1"),
        capture_output=True,
        text=True,
        timeout=40,
    )
    return done, time.monotonic() - started


def test_send_test_email_to_a_slow_webhook_ends_at_its_deadline(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    with SlowPeer(tmp_path) as peer:
        cluster.config.write_text(
            cluster.config.read_text() + f"alert_webhook_url = {peer.url}/hooks/{TOKEN}\n[smtp]\nsmtp_timeout = 3\n"
        )
        done, took = _send_test_email(cluster)
        assert peer.connections == 1
    text = (done.stdout + done.stderr).strip()
    assert done.returncode == 1, text
    assert len(text.splitlines()) == 1 and "Traceback" not in text, text
    assert "webhook" in text and "timed out after 3s" in text and TOKEN not in text, text
    assert took < 15, f"took {took:.1f}s"


def test_send_test_email_to_a_slow_smtp_server_ends_at_its_deadline(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    with SlowPeer(tmp_path) as peer:
        cluster.config.write_text(
            cluster.config.read_text()
            + "alert_to_email = ops@example.com\n"
            + f"[smtp]\nsmtp_host = 127.0.0.1\nsmtp_port = {peer.port}\nsmtp_timeout = 3\n"
            + "smtp_starttls = False\nsmtp_ssl = False\n"
        )
        done, took = _send_test_email(cluster)
        assert peer.connections == 1
    text = (done.stdout + done.stderr).strip()
    assert done.returncode == 1, text
    assert len(text.splitlines()) == 1 and "Traceback" not in text, text
    assert f"email via 127.0.0.1:{peer.port} failed: timed out after 3s" in text, text
    assert took < 15, f"took {took:.1f}s"


def test_a_daemon_abandons_a_slow_alert_and_sends_the_next(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    with SlowPeer(tmp_path, slow=1) as peer:
        cluster.config.write_text(
            cluster.config.read_text()
            + f"alert_webhook_url = {peer.url}/hooks/{TOKEN}\nretry_count_before_alerting = 1\n"
            + "[smtp]\nsmtp_timeout = 3\n"
        )
        cluster.observer.start()
        cluster.start("n1")
        # Each kill of the scheduler is a failure, alerted once per incident: kill until a second
        # alert reached the peer (its first answer is the slow one), a bounded number of times.
        for _ in range(10):
            wait_for(lambda: len(cluster.observer.current()) == 1, 60, "a scheduler running")
            before = peer.connections
            os.kill(cluster.observer.current()[0].pid, signal.SIGKILL)
            with contextlib.suppress(AssertionError):
                wait_for(lambda: peer.connections > before, 8, "an alert")  # noqa: B023 - called at once
            if peer.connections >= 2:
                break
        wait_for(lambda: peer.connections >= 2, 60, "a second alert at the webhook")
        wait_for(lambda: "alert sent" in cluster.log("n1"), 30, "the second alert logged as sent")
    log = cluster.log("n1")
    failures = [line for line in log.splitlines() if "alert not delivered" in line]
    assert len(failures) == 1 and "webhook" in failures[0] and "timed out after 3s" in failures[0], failures
    assert "Traceback" not in log and TOKEN not in log, log[-3000:]


@pytest.fixture(autouse=True)
def _no_inherited_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))
