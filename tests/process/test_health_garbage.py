"""A scheduler health URL that answers garbage is a failed check, not a broken probe: the
controller restarts the scheduler as unhealthy, as for any failing check, instead of calling its
node unknown (which blocks every restart and move)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.process.harness import Cluster
from tests.support.hook import GARBAGE, ScriptedHook
from tests.support.waiting import wait_for


def test_a_garbage_health_answer_makes_the_scheduler_unhealthy(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    with ScriptedHook([GARBAGE]) as hook:
        cluster.config.write_text(
            cluster.config.read_text()
            + f"scheduler_health_url = http://127.0.0.1:{hook.port}/health\nscheduler_health_failures = 2\n"
        )
        cluster.observer.start()
        cluster.start("n1")
        wait_for(lambda: len(cluster.observer.current()) == 1, 60, "the scheduler running")
        first = cluster.observer.current()[0].pid
        wait_for(
            lambda: [seen.pid for seen in cluster.observer.current()] not in ([], [first]),
            60,
            "the scheduler restarted as unhealthy",
        )
    # The cycle that restarted it says why once it is done: the new scheduler may show first.
    wait_for(lambda: "health check failed: BadStatusLine" in cluster.log("n1"), 30, "the failed check in the log")
    log = cluster.log("n1")
    assert "probe failed" not in log and "Traceback" not in log, log[-3000:]


@pytest.fixture(autouse=True)
def _no_inherited_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))
