"""Every listener is bounded: idle connections from another local user cannot exhaust the
controller's file descriptors.

A controller with a metrics endpoint and a lowered open-file limit; a process running as
``nobody`` opens hundreds of idle connections to it and reopens each one the server closes. The
controller keeps its scheduler, its descriptors stay bounded, and ``/metrics`` still answers.
"""

from __future__ import annotations

import os
import resource
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from scheduler_failover_controller.http_listener import MAX_CONNECTIONS
from tests.process.harness import SFC, Cluster
from tests.support.idle_flood import idle_flood
from tests.support.ports import free_port
from tests.support.waiting import holds_for, wait_for

NOFILE = 128  # the controller's open-file limit in this test
IDLE = 400  # connections nobody holds: far more than the limit


def _lowered_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _scrape(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as response:
            return response.status == 200 and b"sfc_cycles_total" in response.read()
    except OSError:
        return False


def test_idle_connections_of_another_user_do_not_exhaust_the_controller(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("acting as nobody needs root")
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    port = free_port()
    cluster.config.write_text(cluster.config.read_text() + f"metrics_port = {port}\n")
    cluster.observer.start()
    log = (cluster.tmp / "n1.log").open("ab")
    controller = subprocess.Popen(
        [*SFC, "--config", str(cluster.config), "start"],
        env=cluster.env("n1"),
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_lowered_limit,
    )
    cluster.procs["n1"] = controller
    wait_for(lambda: len(cluster.observer.current()) == 1, 60, "the scheduler running")
    wait_for(lambda: _scrape(port), 30, "/metrics answering")
    scheduler = cluster.observer.current()[0].pid
    baseline = _fds(controller.pid)
    with idle_flood(port, IDLE) as held:
        assert held > 0, held  # as many as the server let in
        most = [0]

        def steady() -> bool:
            most[0] = max(most[0], _fds(controller.pid))
            mine = [seen.pid for seen in cluster.observer.current()]
            return controller.poll() is None and mine == [scheduler]

        # Two leases long: the leash deadline is written several times meanwhile.
        holds_for(steady, 2 * cluster.ttl, "the controller keeping its scheduler")
        wait_for(lambda: _scrape(port), 20, "/metrics answering while the connections are held")
        # The capped connections, and a few for what the controller opens meanwhile (9 -> 43 seen).
        assert most[0] <= baseline + MAX_CONNECTIONS + 16, (
            f"{most[0]} descriptors (from {baseline}) with {held} idle connections"
        )
    assert "Too many open files" not in cluster.log("n1")
    assert controller.poll() is None and [seen.pid for seen in cluster.observer.current()] == [scheduler]
