"""Every listener is bounded: idle connections from another local user cannot exhaust the
controller's file descriptors.

A controller with a metrics endpoint and a lowered open-file limit; a process running as
``nobody`` opens hundreds of idle connections to it and reopens each one the server closes. The
controller keeps its scheduler, its descriptors stay bounded, and ``/metrics`` still answers.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from scheduler_failover_controller.http_listener import MAX_CONNECTIONS
from tests.process.harness import SFC, Cluster
from tests.support.ports import free_port
from tests.support.waiting import holds_for, wait_for

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
NOFILE = 128  # the controller's open-file limit in this test
IDLE = 400  # connections nobody holds: far more than the limit

# Run as nobody by the system's Python (the test's virtualenv may be in a directory nobody cannot
# read): opens the connections, then reopens each one the server closes, until stdin closes.
HOLDER = r"""
import select, socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
def connect():
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
        s.setblocking(False)
        return s
    except OSError:
        return None
socks = []
until = time.monotonic() + 15
while len(socks) < count and time.monotonic() < until:
    s = connect()
    if s is not None:
        socks.append(s)
print("holding", len(socks), flush=True)
until = time.monotonic() + 120
while time.monotonic() < until:
    ready, _, _ = select.select([sys.stdin] + socks, [], [], 0.5)
    if sys.stdin in ready:
        break
    for s in ready:
        if s is sys.stdin:
            continue
        try:
            data = s.recv(100)
        except OSError:
            data = b""
        if not data:
            socks.remove(s)
            s.close()
            new = connect()
            if new is not None:
                socks.append(new)
"""


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
    holder = subprocess.Popen(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            HOLDER,
            str(port),
            str(IDLE),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    try:
        assert holder.stdout is not None
        held = holder.stdout.readline().split()
        assert held[:1] == ["holding"] and int(held[1]) > 0, held  # as many as the server let in
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
            f"{most[0]} descriptors (from {baseline}) with {held[1]} idle connections"
        )
    finally:
        with contextlib.suppress(OSError):
            assert holder.stdin is not None
            holder.stdin.close()
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
    assert "Too many open files" not in cluster.log("n1")
    assert controller.poll() is None and [seen.pid for seen in cluster.observer.current()] == [scheduler]
