"""Real controller and CLI processes on one SQL database: two fleets with their own table prefixes
each keep their own scheduler, and ``sfc metadata`` / ``sfc clear_metadata`` show and wipe the
records of the services beside the scheduler."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from scheduler_failover_controller.metastore.base import Observation
from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.metastore.sql import SQLMetastore
from tests.process.harness import Cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.process


def with_prefix(cluster: Cluster, prefix: str) -> Cluster:
    cluster.config.write_text(cluster.config.read_text() + f"metadata_service_sql_table_prefix = {prefix}\n")
    return cluster


def test_two_fleets_with_their_own_prefixes_each_keep_one_scheduler(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    """Fleet a (the default prefix, as every existing database has) and fleet b (``fleet_b_``) on one
    database: each elects its own active, in its own first term, and runs its own scheduler. With one
    set of tables for both, b's controller would stand by behind a's lease and run none."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a = make_cluster(url, 1, poll=1.0, ttl=6.0)
    b = with_prefix(make_cluster(url, 2, poll=1.0, ttl=6.0), "fleet_b_")
    for cluster, node in ((a, "n1"), (b, "n2")):
        cluster.observer.start()
        cluster.start(node)
    wait_for(lambda: len(a.observer.current()) == 1 == len(b.observer.current()), 60, "a scheduler of each fleet")
    assert (a.status().get("active_controller"), a.status().get("epoch")) == ("n1", 1)
    assert (b.status().get("active_controller"), b.status().get("epoch")) == ("n2", 1)
    for cluster in (a, b):
        cluster.observer.stop()
        assert cluster.observer.max_seen == 1, cluster.observer.history


def test_metadata_shows_the_services_and_clear_metadata_wipes_them(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'metastore.db'}"
    cluster = with_prefix(make_cluster(url, 1), "fleet_")
    store = SQLMetastore(url, 2.0, prefix="fleet_")
    try:
        lease = store.acquire_or_renew("h1", "n1", 30)
        assert lease is not None
        beat = store.for_service("beat")
        assert beat.set_placement("n1", "h1", lease.epoch, beat.read_state().placement.version, 30) is not None
        assert beat.record_observations("h1", lease.epoch, [Observation("n1", "running", (42,), "")])
        beat.add_event("n1", EventKind.START, "started beat on n1", lease.epoch)
    finally:
        store.close()
    shown = cluster.cli("metadata", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    [service] = data["services"]
    assert (service["name"], service["placement"]["node"]) == ("beat", "n1")
    assert [(o["node"], o["pids"]) for o in service["observations"]] == [("n1", [42])]
    assert [(e["service"], e["message"]) for e in data["events"]] == [("beat", "started beat on n1")]
    text = cluster.cli("metadata")
    assert "service beat: node=n1" in text.stdout and "beat: started beat on n1" in text.stdout, text.stdout
    wiped = cluster.cli("clear_metadata", "--yes")
    assert wiped.returncode == 0, wiped.stderr
    [service] = json.loads(cluster.cli("metadata", "--json").stdout)["services"]
    assert (service["placement"]["node"], service["observations"]) == (None, [])
