"""Operations per service on a real fleet (the scheduler, beat, and trig colocated with it) under
a real controller: ``/service/NAME`` and the metrics' ``service`` label from ``curl``, ``status``
and ``history`` from real CLI runs, a real ``switchover --service beat --wait`` carried out, and
``drain --wait`` that returns only once beat has left the drained node."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator

import pytest

from scheduler_failover_controller.config.services import SCHEDULER
from tests.process.harness import Cluster
from tests.process.test_http_api import curl
from tests.process.test_services import Fleet, all_on
from tests.support.ports import free_ports
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.process, pytest.mark.manual]  # about 45 s: `make services` runs it


@pytest.fixture
def fleet(make_cluster: Callable[..., Cluster], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("ops")
    cluster: Cluster = make_cluster(f"sqlite:///{tmp / 'metastore.db'}", 2, node_control="ssh", poll=1.0, ttl=6.0)
    fleet = Fleet(cluster)
    for observer in fleet.observers.values():
        observer.start()
    try:
        yield fleet
    finally:
        for name, observer in fleet.observers.items():
            if name != SCHEDULER:
                observer.stop()
        from scheduler_failover_controller.matching import find_schedulers

        for name, observer in fleet.observers.items():
            for proc in find_schedulers(observer.match) if name != SCHEDULER else []:
                proc.kill()


def test_each_service_answers_for_itself(fleet: Fleet) -> None:
    cluster = fleet.cluster
    (port,) = free_ports(1)
    cluster.extra_env["AIRFLOW__SCHEDULER_FAILOVER__HTTP_PORT"] = str(port)
    cluster.start("n1")  # the only controller: it acts on both nodes (ssh mode, all local)
    all_on(fleet, {SCHEDULER: "n1", "beat": "n1", "trig": "n1"}, "every service on n1")
    for service in ("beat", "trig"):
        wait_for(lambda s=service: curl(port, f"/service/{s}")[0] == 200, 20, f"/service/{service} 200")  # type: ignore[misc]
        answer = json.loads(curl(port, f"/service/{service}")[1])
        assert (answer["service"], answer["pids"]) == (service, [fleet.pid(service)])
    assert curl(port, "/service/nope")[0] == 404
    beat_running = re.compile(r'^sfc_scheduler_running\{node="n1",service="beat"\} 1\.0$', re.M)
    wait_for(lambda: beat_running.search(curl(port, "/metrics")[1]), 20, "beat running in /metrics")

    out = cluster.cli("switchover", "--to", "n2", "--service", "beat", "--wait", "40")
    assert out.returncode == 0, out.stdout + out.stderr
    all_on(fleet, {"beat": "n2", SCHEDULER: "n1", "trig": "n1"}, "beat alone on n2")
    wait_for(lambda: curl(port, "/service/beat")[0] == 503, 20, "/service/beat 503 on n1 once it left")

    status = cluster.status()
    got = {s["name"]: (s["node"], s["state"]) for s in status["services"]}
    assert [s["name"] for s in status["services"]] == [SCHEDULER, "beat", "trig"]
    assert got["beat"] == ("n2", "running") and got[SCHEDULER] == ("n1", "running"), got
    history = json.loads(cluster.cli("history", "--json").stdout)
    assert {"beat", SCHEDULER} <= {e["service"] for e in history}
    assert [e["kind"] for e in history if e["service"] == "beat" and e["kind"].startswith("switchover")][-2:] == [
        "switchover",
        "switchover_done",
    ]

    out = cluster.cli("drain", "n2", "--wait", "40")  # beat must leave n2; the others are not there
    assert out.returncode == 0, out.stdout + out.stderr
    all_on(fleet, {"beat": "n1", SCHEDULER: "n1", "trig": "n1"}, "beat back on n1 after the drain")
    assert fleet.twice() == {}
