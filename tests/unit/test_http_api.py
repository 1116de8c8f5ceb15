"""The HTTP API's routes and its auth rule, on real controllers over fakes with an injected clock."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from scheduler_failover_controller.config import Config
from scheduler_failover_controller.controller.cycle import Controller
from scheduler_failover_controller.http_api import ApiServer, is_loopback
from scheduler_failover_controller.http_listener import Deferred, Reply, Request
from scheduler_failover_controller.liveness import Liveness
from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.status import history_json, read_status
from tests.support.http_ask import ask as _ask

from .controller_support import active_on_n1
from .fakes import Cluster

TOKEN = "s3cret-token-0123456789"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    yield cluster
    cluster.close()


def _api(controller: Controller, **settings: object) -> ApiServer:
    """An API server for ``controller`` (on 127.0.0.1, an ephemeral port), its clock the cluster's."""
    config: Config = replace(controller.config, **settings)  # type: ignore[arg-type]
    server = ApiServer(controller, config, Liveness(config, controller.monotonic), 0, controller.monotonic)
    return server


def _get(server: ApiServer, path: str, **headers: str) -> Reply:
    reply = server.handle(Request("GET", path, {k.lower(): v for k, v in headers.items()}))
    if isinstance(reply, Deferred):
        reply = reply.work()
    return reply


@pytest.fixture
def servers() -> Iterator[list[ApiServer]]:
    made: list[ApiServer] = []
    yield made
    for server in made:
        server.server_close()


def test_health_follows_the_cycle_and_the_renewals(cluster: Cluster, servers: list[ApiServer]) -> None:
    c1 = active_on_n1(cluster)
    api = _api(c1)
    servers.append(api)
    live = api.liveness  # poll 1, renewals every renew_interval
    assert _get(api, "/health").status == 200
    cluster.clock.advance(1.5)
    live.cycle_began()
    live.cycle_ended()
    live.renewed()
    body = json.loads(_get(api, "/health").body)
    assert body["alive"] is True and body["role"] == "active" and body["problems"] == []
    cluster.clock.advance(2.1)  # no cycle for more than two polls
    live.renewed()
    reply = _get(api, "/health")
    assert reply.status == 503 and "the last cycle ended 2.1s ago" in json.loads(reply.body)["problems"][0]
    live.cycle_began()  # one under way: alive until two polls plus its start and stop allowance
    assert _get(api, "/health").status == 200
    cluster.clock.advance(2 + live.cycle_allowance + 0.1)
    live.renewed()
    assert _get(api, "/health").status == 503
    live.cycle_ended()
    assert _get(api, "/health").status == 200
    cluster.clock.advance(2 * c1.config.renew_interval + 0.1)  # renewals silent
    live.cycle_ended()
    reply = _get(api, "/health")
    assert reply.status == 503 and "the last renewal" in reply.body.decode()


def test_leader_answers_200_only_on_the_active(cluster: Cluster, servers: list[ApiServer]) -> None:
    c1 = active_on_n1(cluster)
    c2 = cluster.controller("n2")
    c2.run_cycle()
    servers.extend([_api(c1), _api(c2)])
    assert _get(servers[0], "/leader").status == 200
    assert json.loads(_get(servers[0], "/leader").body) == {"leader": True, "host": "n1", "epoch": 1}
    assert _get(servers[1], "/leader").status == 503
    cluster.clock.advance(c1.ttl)  # the lease runs out unrenewed: not the leader any more
    assert _get(servers[0], "/leader").status == 503


def test_scheduler_answers_200_only_where_it_runs_under_the_placement(
    cluster: Cluster, servers: list[ApiServer]
) -> None:
    c1 = active_on_n1(cluster)
    c2 = cluster.controller("n2")
    c2.run_cycle()
    servers.extend([_api(c1), _api(c2)])
    c1.renew()
    c2.renew()  # each looks at its own node
    assert _get(servers[0], "/scheduler").status == 200
    assert json.loads(_get(servers[0], "/scheduler").body)["pids"] == list(cluster.runners["n1"].pids)
    assert _get(servers[1], "/scheduler").status == 503
    cluster.runners["n1"].die()
    c1.renew()
    reply = _get(servers[0], "/scheduler")
    assert reply.status == 503 and json.loads(reply.body)["state"] == "stopped"
    cluster.runners["n1"].run()
    c1.renew()
    assert _get(servers[0], "/scheduler").status == 200
    cluster.clock.advance(2 * c1.config.renew_interval + 0.1)  # the last look is too old to say
    assert _get(servers[0], "/scheduler").status == 503


def test_status_and_history_are_the_cli_json_read_on_the_worker(cluster: Cluster, servers: list[ApiServer]) -> None:
    c1 = active_on_n1(cluster)
    api = _api(c1)
    servers.append(api)
    deferred = api.handle(Request("GET", "/status"))
    assert isinstance(deferred, Deferred)  # the metastore is never read on the listener's thread
    reply = deferred.work()
    assert reply.status == 200 and reply.content_type == "application/json"
    assert json.loads(reply.body) == json.loads(json.dumps(read_status(cluster.store, c1.config).to_json()))
    history = _get(api, "/history")
    assert json.loads(history.body) == json.loads(json.dumps(history_json(cluster.store.events(50))))
    assert any(e["kind"] == str(EventKind.ELECTED) for e in json.loads(history.body))


def test_status_is_reused_for_a_second_and_a_store_down_is_a_503(cluster: Cluster, servers: list[ApiServer]) -> None:
    c1 = active_on_n1(cluster)
    api = _api(c1)
    servers.append(api)
    first = _get(api, "/status")
    cluster.store.fail = True
    assert _get(api, "/status") is first  # within CACHE_SECONDS: no second read
    cluster.clock.advance(1.0)
    reply = _get(api, "/status")
    assert reply.status == 503 and reply.body == b"the metastore did not answer\n"


def test_reads_are_open_on_loopback_without_a_token(cluster: Cluster, servers: list[ApiServer]) -> None:
    api = _api(active_on_n1(cluster))
    servers.append(api)
    for path in ("/health", "/leader", "/scheduler", "/status", "/history", "/metrics"):
        assert _get(api, path).status != 401, path


def test_a_token_guards_status_history_and_metrics(cluster: Cluster, servers: list[ApiServer]) -> None:
    api = _api(active_on_n1(cluster), http_token=TOKEN)
    servers.append(api)
    for path in ("/status", "/history", "/metrics"):
        refused = _get(api, path)
        assert refused.status == 401 and ("WWW-Authenticate", 'Bearer realm="scheduler_failover_controller"') in (
            refused.headers
        )
        assert _get(api, path, Authorization=f"Bearer {TOKEN}x").status == 401
        assert _get(api, path, Authorization=f"Basic {TOKEN}").status == 401
        assert _get(api, path, Authorization=f"bearer {TOKEN}").status == 200
        assert TOKEN.encode() not in refused.body
    for path in ("/health", "/leader", "/scheduler"):  # anyone, token or not
        assert _get(api, path).status in (200, 503), path
    assert _get(api, "/nowhere", Authorization=f"Bearer {TOKEN}").status == 404


def test_beyond_loopback_without_a_token_the_state_is_refused(cluster: Cluster, servers: list[ApiServer]) -> None:
    api = _api(active_on_n1(cluster))
    servers.append(api)
    api.open_reads = is_loopback("0.0.0.0")  # as bound to every address (not bound so in a test)
    assert _get(api, "/status").status == 401 and _get(api, "/metrics").status == 401
    assert _get(api, "/health").status == 200 and _get(api, "/leader").status == 200


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.3.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.1")


def test_over_a_socket_head_and_non_200_and_the_worker(cluster: Cluster, servers: list[ApiServer]) -> None:
    c1 = active_on_n1(cluster)
    c2 = cluster.controller("n2")
    c2.run_cycle()
    api = _api(c2, http_token=TOKEN)
    thread = threading.Thread(target=api.serve_forever, daemon=True)
    thread.start()
    try:
        port = api.server_address[1]
        head = _ask(port, b"HEAD /leader HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and head.endswith(b"\r\n\r\n")
        assert _ask(port, b"GET /status HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 401 Unauthorized\r\n")
        answer = _ask(port, f"GET /status HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["active_controller"] == "n1"
        head = _ask(port, f"HEAD /history HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    finally:
        api.shutdown()
        thread.join(timeout=5)
    assert not thread.is_alive() and c1.role.value == "active"
