"""A service's records in a real ZooKeeper ensemble, read and wiped by real CLI processes:
``sfc metadata --json`` lists each service's placement, request, reports and failed starts, and
events name their service; ``sfc clear-metadata --yes`` wipes the services with the rest."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kazoo.client import KazooClient

from scheduler_failover_controller.metastore.base import Observation
from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.metastore.reports import NodeReport
from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore
from tests.process.harness import ZK_PREFIX, Cluster

pytestmark = pytest.mark.process

ROOT = "/scheduler_failover_controller"  # metadata_service_zookeeper_root's default, which the cluster's config keeps
TTL = 3.0  # the cluster's lease_ttl: the session timeout its controllers negotiate


def _metadata(cluster: Cluster) -> dict[str, Any]:
    out = cluster.cli("metadata", "--json")
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert isinstance(found, dict)
    return found


def test_the_cli_shows_and_wipes_each_services_records(make_cluster: Callable[..., Cluster], zk_hosts: str) -> None:
    cluster = make_cluster(ZK_PREFIX + zk_hosts, 3)
    store = ZooKeeperMetastore(zk_hosts, ROOT, TTL, 5.0)  # as a controller of this fleet, in this process
    try:
        lease = store.acquire_or_renew("h1", "n1", TTL)
        assert lease is not None
        assert store.set_placement("n1", "h1", lease.epoch, 0, 30) is not None
        beat = store.for_service("beat")
        assert beat.set_placement("n2", "h1", lease.epoch, 0, 30) is not None
        beat.request_switchover("n3", "controlled", "req-7")
        beat.write_report(NodeReport("n2", "h1", "running", (42,), True, (), "", 1, 1, 1))
        beat.record_failure("n3")
        assert beat.record_observations("h1", lease.epoch, [Observation("n2", "running", (42,), "ok", by_host="n1")])
        store.add_event("n1", EventKind.START, "scheduler up", lease.epoch)
        beat.add_event("n1", EventKind.START, "beat up", lease.epoch)
        store.release("h1")
    finally:
        store.close()

    shown = _metadata(cluster)
    assert shown["placement"]["node"] == "n1" and shown["switchover_requested"] is None
    assert [(s["name"], s["placement"]["node"]) for s in shown["services"]] == [("beat", "n2")]
    beat_shown = shown["services"][0]
    assert beat_shown["switchover_requested"] == {"to": "n3", "mode": "controlled", "id": "req-7"}
    assert [(r["node"], r["state"]) for r in beat_shown["reports"]] == [("n2", "running")]
    assert [(f["node"], f["strikes"]) for f in beat_shown["failures"]] == [("n3", 1)]
    assert [(o["node"], o["state"]) for o in beat_shown["observations"]] == [("n2", "running")]
    assert [(e["service"], e["message"]) for e in shown["events"]] == [
        ("scheduler", "scheduler up"),
        ("beat", "beat up"),
    ]
    text = cluster.cli("metadata")  # the text form too
    assert text.returncode == 0 and "service beat: node=n2 " in text.stdout, text.stdout + text.stderr
    assert "beat: beat up" in text.stdout

    wiped = cluster.cli("clear-metadata", "--yes")
    assert wiped.returncode == 0, wiped.stderr
    after = _metadata(cluster)
    assert [(s["name"], s["placement"]["node"], s["switchover_requested"]) for s in after["services"]] == [
        ("beat", None, None)
    ]
    assert after["services"][0]["reports"] == after["services"][0]["failures"] == []
    raw = KazooClient(hosts=zk_hosts, timeout=10)
    raw.start(timeout=30)
    try:
        placement = json.loads(raw.get(f"{ROOT}/services/beat/placement")[0])
        assert placement["node"] is None and placement["version"] > 1  # past every version it held
        assert json.loads(raw.get(f"{ROOT}/services/beat/observations")[0]) == {}
    finally:
        raw.stop()
        raw.close()
