"""Operations per service on a real controller, from real CLI runs and ``curl``: the scheduler
answers as a service (``/service/scheduler``, ``status``'s ``services``, ``history``'s
``service``, the metrics' ``service`` label), and a name the config does not have is refused."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from tests.process.harness import Cluster
from tests.process.test_http_api import _started, curl
from tests.support.ports import free_ports
from tests.support.waiting import wait_for


def test_the_scheduler_is_the_first_service_everywhere(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    cluster.observer.start()
    (port,) = free_ports(1)
    _started(cluster, "n1", port)
    wait_for(lambda: len(cluster.observer.current()) == 1, 60, "the scheduler running")
    pid = cluster.observer.current()[0].pid
    wait_for(lambda: curl(port, "/service/scheduler")[0] == 200, 20, "/service/scheduler 200")
    _code, body = curl(port, "/service/scheduler")
    answer = json.loads(body)
    assert (answer["service"], answer["running"], answer["host"], answer["pids"]) == ("scheduler", True, "n1", [pid])
    assert curl(port, "/scheduler")[0] == 200  # as it was
    assert curl(port, "/service/beat")[0] == 404  # a service this fleet does not run
    running = re.compile(r'^sfc_scheduler_running\{node="n1",service="scheduler"\} 1\.0$', re.M)
    # No token, on loopback: /metrics, /status and /history are open.
    wait_for(lambda: running.search(curl(port, "/metrics")[1]), 20, "the running scheduler in /metrics")
    metrics = curl(port, "/metrics")[1]
    assert re.search(r'^sfc_events_total\{kind="elected",service="scheduler"\} 1\.0$', metrics, re.M), metrics

    def status() -> dict[str, object]:
        code, body = curl(port, "/status")  # what status --json says (its CLI runs are slow under load)
        return json.loads(body) if code == 200 else {}

    wait_for(lambda: status().get("health") == "healthy", 20, "status healthy")
    services = status()["services"]
    assert isinstance(services, list)
    assert [(s["name"], s["node"], s["state"]) for s in services] == [("scheduler", "n1", "running")]
    history = json.loads(curl(port, "/history")[1])
    assert history and {e["service"] for e in history} == {"scheduler"}

    refused = cluster.cli("switchover", "--to", "n1", "--service", "beat")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        f"Error: --service: no service 'beat' in {cluster.config} (services: scheduler)"
    ]
