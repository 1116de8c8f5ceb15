"""The HTTP API from ``curl`` against real controllers: the routes, the token, and a flood of idle
connections from another local user under a low open-file limit, while a killed scheduler is
still restarted in time and ``/health`` still answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.process.harness import SFC, Cluster
from tests.support.idle_flood import idle_flood
from tests.support.ports import free_ports
from tests.support.waiting import holds_for, wait_for

TOKEN = "process-test-token-5f1c0a77"
NOFILE = 128  # the flooded controller's open-file limit
IDLE = 1000  # idle connections nobody holds


def curl(port: int, path: str, *options: str, timeout: float = 5) -> tuple[int, str]:
    """(HTTP status, body) of ``curl`` for ``path``; status 0 when it got no answer."""
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            f"{timeout:g}",
            "-w",
            "\n%{http_code}",
            *options,
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=timeout + 5,
    )
    body, _, code = out.stdout.rpartition("\n")
    return int(code or 0), body


def _bearer(token: str = TOKEN) -> tuple[str, str]:
    return "-H", f"Authorization: Bearer {token}"


def _started(cluster: Cluster, node: str, port: int, prefix: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """Start ``node``'s controller with its own http_port (by the environment), under ``prefix``."""
    env = {**cluster.env(node), "AIRFLOW__SCHEDULER_FAILOVER__HTTP_PORT": str(port)}
    log = (cluster.tmp / f"{node}.log").open("ab")
    proc = subprocess.Popen(
        [*prefix, *SFC, "--config", str(cluster.config), "start"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    cluster.procs[node] = proc
    return proc


def test_routes_answer_curl_on_real_controllers(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 2)
    cluster.extra_env["AIRFLOW__SCHEDULER_FAILOVER__HTTP_TOKEN"] = TOKEN  # a secret: never passed on
    cluster.observer.start()
    ports = dict(zip(("n1", "n2"), free_ports(2)))
    _started(cluster, "n1", ports["n1"])
    wait_for(lambda: curl(ports["n1"], "/leader")[0] == 200, 30, "n1 active")
    _started(cluster, "n2", ports["n2"])
    wait_for(lambda: len(cluster.observer.current()) == 1, 30, "the scheduler running")
    where, scheduler = cluster.observer.current()[0].node, cluster.observer.current()[0].pid
    assert TOKEN.encode() not in Path(f"/proc/{scheduler}/environ").read_bytes()
    other = "n2" if where == "n1" else "n1"
    for node, port in ports.items():
        wait_for(lambda port=port: curl(port, "/health")[0] == 200, 30, f"/health 200 on {node}")  # type: ignore[misc]
    assert curl(ports["n1"], "/leader")[0] == 200 and curl(ports["n2"], "/leader")[0] == 503
    wait_for(lambda: curl(ports[where], "/scheduler")[0] == 200, 10, f"/scheduler 200 on {where}")
    code, body = curl(ports[other], "/scheduler")
    assert code == 503 and json.loads(body)["scheduler"] is False
    head = subprocess.run(
        ["curl", "-sS", "-I", "--max-time", "5", f"http://127.0.0.1:{ports['n2']}/leader"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    assert head.startswith("HTTP/1.1 503 ") and "Content-Length: " in head
    for path in ("/status", "/history", "/metrics"):
        assert curl(ports["n1"], path)[0] == 401, path
        assert curl(ports["n1"], path, *_bearer("wrong-token-0123456789"))[0] == 401, path
    code, body = curl(ports["n2"], "/status", *_bearer())
    status, cli = json.loads(body), cluster.status()
    assert code == 200 and status.keys() == cli.keys()
    for field in ("active_controller", "epoch", "scheduler_node", "node_control"):
        assert status[field] == cli[field], field
    code, body = curl(ports["n1"], "/history", *_bearer())
    assert code == 200 and any(e["kind"] == "elected" and e["host"] == "n1" for e in json.loads(body))
    code, body = curl(ports["n1"], "/metrics", *_bearer())
    assert code == 200 and "sfc_active 1.0" in body
    # After a graceful stop of the active, the other takes the lead and says so.
    cluster.signal("n1", signal.SIGTERM)
    cluster.procs["n1"].wait(timeout=20)
    wait_for(lambda: curl(ports["n2"], "/leader")[0] == 200, 20, "/leader 200 on n2 after the hand-over")
    for node in ("n1", "n2"):
        assert TOKEN not in cluster.log(node)


def test_a_flood_of_idle_connections_neither_stops_health_nor_a_restart(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("acting as nobody needs root")
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    cluster.observer.start()
    (port,) = free_ports(1)
    controller = _started(cluster, "n1", port, ("prlimit", f"--nofile={NOFILE}:{NOFILE}"))
    wait_for(lambda: len(cluster.observer.current()) == 1, 60, "the scheduler running")
    wait_for(lambda: curl(port, "/health")[0] == 200, 30, "/health answering")
    first = cluster.observer.current()[0].pid
    with idle_flood(port, IDLE) as held:
        assert held > 0
        latencies = []
        for _ in range(5):  # /health answers while the connections are held
            began = time.monotonic()
            code, _body = curl(port, "/health", timeout=10)
            latencies.append(time.monotonic() - began)
            assert code == 200, (code, latencies)
        os.kill(first, signal.SIGKILL)
        killed = time.monotonic()
        # Restarted within one poll plus its start time (scheduler_start_timeout 5 s), and as much
        # again for a loaded machine's process start; a controller out of descriptors never would.
        wait_for(
            lambda: [s.pid for s in cluster.observer.current()] not in ([], [first]),
            2 * (cluster.poll + 5),
            "the killed scheduler restarted in time under the flood",
        )
        restarted = time.monotonic() - killed
        holds_for(lambda: len(cluster.observer.current()) == 1, 2 * cluster.poll, "one scheduler")
        code, body = curl(port, "/health", timeout=10)
        assert code == 200 and json.loads(body)["alive"] is True
        code, _body = curl(port, "/scheduler", timeout=10)
        assert code == 200
    assert controller.poll() is None
    assert "Too many open files" not in cluster.log("n1")
    print(f"restart {restarted:.2f}s under {held} idle connections; /health {max(latencies):.3f}s at most")
