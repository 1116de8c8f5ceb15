"""Two controllers with the same current_host (issue 10, class 6): one of them refuses to run.

Both would write one registry row and each would take the node's scheduler for its own: status
showed one healthy row, and stopping the duplicate stopped the active one's scheduler.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.process.harness import SFC, Cluster
from tests.support.waiting import holds_for, wait_for


def _second(cluster: Cluster, node: str, name: str) -> subprocess.Popen[bytes]:
    log = (cluster.tmp / f"{name}.log").open("ab")
    return subprocess.Popen(
        [*SFC, "--config", str(cluster.config), "start"], env=cluster.env(node), stdout=log, stderr=subprocess.STDOUT
    )


def test_a_second_controller_with_the_same_identity_refuses_to_start(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 2)
    cluster.observer.start()
    cluster.start("n1")
    cluster.start("n2")
    wait_for(lambda: len(cluster.observer.current()) == 1, 60, "one scheduler")
    running = cluster.observer.current()
    twin = _second(cluster, "n1", "twin")
    try:
        assert twin.wait(timeout=30) == 2
    finally:
        if twin.poll() is None:
            twin.kill()
            twin.wait()
    text = (cluster.tmp / "twin.log").read_text()
    assert "another controller is running as 'n1'" in text and "Traceback" not in text, text
    holds_for(lambda: cluster.observer.current() == running, 1.0, "the scheduler left alone")
    assert cluster.observer.max_seen == 1
    assert all(proc.poll() is None for proc in cluster.procs.values())


def test_two_controllers_started_together_with_one_identity_leave_one(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    """Started at once, neither sees the other at start-up; the first heartbeat of the other in
    the shared row gives it away, and one stops without touching the node's scheduler."""
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    cluster.observer.start()
    first = cluster.start("n1")
    twin = _second(cluster, "n1", "twin")
    try:
        wait_for(lambda: first.poll() is not None or twin.poll() is not None, 60, "one of the two to stop")
        time.sleep(2.0)
        codes = sorted(code for code in (first.poll(), twin.poll()) if code is not None)
        assert codes == [2], codes
        survivor = twin if first.poll() is not None else first
        wait_for(lambda: len(cluster.observer.current()) == 1, 30, "the scheduler")
        status = cluster.status()
        assert any("two controllers ran as n1" in p for p in status.get("problems", [])), status
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=30) == 0
        assert cluster.observer.max_seen == 1
    finally:
        if twin.poll() is None:
            twin.kill()
            twin.wait()
