"""The HTTP API's ``/service/NAME``: as ``/scheduler`` for each service the controller runs, 404
for any other name; and ``/status`` lists the services."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from scheduler_failover_controller.controller.cycle import Controller
from scheduler_failover_controller.http_api import ApiServer
from scheduler_failover_controller.http_listener import Deferred, Reply, Request
from scheduler_failover_controller.liveness import Liveness

from .controller_support import active_on_n1
from .fakes import Cluster
from .ops_support import BEAT, with_beat


@pytest.fixture
def clusters() -> Iterator[tuple[Cluster, Cluster]]:
    """The scheduler's cluster and beat's: each controller runs its service on its own fakes."""
    made = (Cluster(), Cluster())
    yield made
    for cluster in made:
        cluster.close()


@pytest.fixture
def servers() -> Iterator[list[ApiServer]]:
    made: list[ApiServer] = []
    yield made
    for server in made:
        server.server_close()


def _api(controller: Controller, services: dict[str, Controller], servers: list[ApiServer]) -> ApiServer:
    config = controller.config
    server = ApiServer(
        controller, config, Liveness(config, controller.monotonic), 0, controller.monotonic, services=services
    )
    servers.append(server)
    return server


def _get(server: ApiServer, path: str) -> Reply:
    reply = server.handle(Request("GET", path, {}))
    return reply.work() if isinstance(reply, Deferred) else reply


def test_service_answers_200_only_where_that_service_runs(
    clusters: tuple[Cluster, Cluster], servers: list[ApiServer]
) -> None:
    scheduler, beat_cluster = clusters
    c1 = active_on_n1(scheduler)
    beat = active_on_n1(beat_cluster)
    c1.renew()
    beat.renew()
    api = _api(c1, {BEAT: beat}, servers)
    reply = _get(api, f"/service/{BEAT}")
    assert reply.status == 200, reply.body
    body = json.loads(reply.body)
    assert body == {
        "service": BEAT,
        "running": True,
        "host": "n1",
        "placed": True,
        "state": "running",
        "pids": list(beat_cluster.runners["n1"].pids),
    }
    beat_cluster.runners["n1"].die()  # beat stops; the scheduler runs on
    beat.renew()
    reply = _get(api, f"/service/{BEAT}")
    assert reply.status == 503 and json.loads(reply.body)["state"] == "stopped"
    assert _get(api, "/scheduler").status == 200
    assert _get(api, "/service/scheduler").status == 200
    assert json.loads(_get(api, "/service/scheduler").body)["service"] == "scheduler"


def test_an_unknown_service_is_404(clusters: tuple[Cluster, Cluster], servers: list[ApiServer]) -> None:
    scheduler, _ = clusters
    api = _api(active_on_n1(scheduler), {}, servers)
    for path in (f"/service/{BEAT}", "/service/", "/service/scheduler/x"):
        assert _get(api, path).status == 404, path
    assert _get(api, "/scheduler").status in (200, 503)


def test_status_lists_the_services(clusters: tuple[Cluster, Cluster], servers: list[ApiServer]) -> None:
    scheduler, _ = clusters
    c1 = active_on_n1(scheduler)
    api = _api(c1, {}, servers)
    api.config = with_beat(c1.config)
    status = json.loads(_get(api, "/status").body)
    assert [(s["name"], s["node"]) for s in status["services"]] == [("scheduler", "n1"), (BEAT, None)]
    assert "beat not running" in status["problems"]
