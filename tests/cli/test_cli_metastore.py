"""The metastore commands (metadata, status, pause, resume, history, clear_metadata), on SQL and on
ZooKeeper.

The environment is cleared of SCHEDULER_FAILOVER_CONTROLLER_CONFIG and AIRFLOW__* and AIRFLOW_HOME
points at a tmp dir. Network use is limited to 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

from scheduler_failover_controller.metastore.base import ControllerInfo, Observation
from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.metastore.reports import NodeReport

from .cli_support import HOST, Cli, as_json, assert_no_traceback, assert_one_error_line

# --- metastore commands ------------------------------------------------------------------------


def test_metadata_text_and_json(cli: Cli) -> None:
    text = cli("metadata")
    assert text.exit_code == 0, text.output
    assert "metastore: sql sqlite:///" in text.output
    assert "paused: False" in text.output

    result = cli("metadata", "--json")
    assert result.exit_code == 0, result.output
    data = as_json(result)
    assert isinstance(data, dict)
    assert {"metastore", "lease", "placement", "paused", "controllers", "observations", "events"} <= data.keys()
    assert data["lease"]["holder"] is None
    assert data["lease"]["epoch"] == 0
    assert data["placement"]["node"] is None
    assert data["controllers"] == [] and data["observations"] == [] and data["events"] == []


def test_status_json_on_empty_cluster_exits_2(cli: Cli) -> None:
    result = cli("status", "--json")
    assert result.exit_code == 2, result.output
    data = as_json(result)
    assert isinstance(data, dict)
    assert data["active_controller"] is None
    assert data["epoch"] == 0
    assert data["scheduler_node"] is None
    assert data["paused"] is False
    assert data["controllers"] == []
    assert data["nodes"] == [
        {"host": HOST, "scheduler": "unknown", "pids": [], "observed_age_s": None, "foreign": [], "report_age_s": None}
    ]


def test_status_text_on_empty_cluster_exits_2(cli: Cli) -> None:
    result = cli("status")
    assert result.exit_code == 2, result.output
    assert "health: no scheduler" in result.output
    assert "(none registered)" in result.output


def test_status_json_of_a_healthy_cluster_exits_0(cli: Cli, mariadb_url: str) -> None:
    cli.write(
        node_control="ssh",  # the active's observations
        scheduler_nodes_in_cluster="node-a,node-b",
        poll_frequency="1",
        lease_ttl="30",
        metadata_service_sql_conn=mariadb_url,
    )
    store = cli.store(mariadb_url)
    try:
        lease = store.acquire_or_renew("holder-a", HOST, 30)
        assert lease is not None
        store.heartbeat(ControllerInfo(HOST, "holder-a", 4242, "9.9", "active", 0.0, 0.0))
        store.heartbeat(ControllerInfo("node-b", "holder-b", 4343, "9.9", "standby", 0.0, 0.0, paused=True))
        assert store.set_placement(HOST, "holder-a", lease.epoch, 0, 30) is not None
        observed = [Observation(HOST, "running", (1234,), ""), Observation("node-b", "stopped", (), "")]
        assert store.record_observations("holder-a", lease.epoch, observed)
    finally:
        store.close()

    result = cli("status", "--json")

    assert result.exit_code == 0, result.output
    data = as_json(result)
    assert isinstance(data, dict)
    assert data["active_controller"] == HOST
    assert data["epoch"] == lease.epoch == 1
    assert data["scheduler_node"] == HOST
    assert data["paused"] is False
    roles = {c["host"]: c["role"] for c in data["controllers"]}
    assert roles == {HOST: "active", "node-b": "standby"}
    assert {c["host"]: c["paused"] for c in data["controllers"]} == {HOST: False, "node-b": True}
    for controller in data["controllers"]:
        assert 0 <= controller["heartbeat_age_s"] < 30
    nodes = {n["host"]: n for n in data["nodes"]}
    assert nodes[HOST]["scheduler"] == "running"
    assert nodes["node-b"]["scheduler"] == "stopped"
    assert all(0 <= n["observed_age_s"] < 30 for n in data["nodes"])

    text = cli("status")
    assert text.exit_code == 0
    assert "health: healthy" in text.output
    assert "node-b: standby (paused), heartbeat" in text.output


def test_status_in_self_mode_shows_each_nodes_own_report_and_its_age(cli: Cli, mariadb_url: str) -> None:
    keys = {"scheduler_nodes_in_cluster": "node-a,node-b", "lease_ttl": "30", "metadata_service_sql_conn": mariadb_url}
    cli.write_keys(keys)
    store = cli.store(mariadb_url)
    try:
        lease = store.acquire_or_renew("holder-a", HOST, 30)
        assert lease is not None
        store.heartbeat(ControllerInfo(HOST, "holder-a", 4242, "9.9", "active", 0.0, 0.0))
        store.heartbeat(ControllerInfo("node-b", "holder-b", 4343, "9.9", "standby", 0.0, 0.0))
        placed = store.set_placement(HOST, "holder-a", lease.epoch, 0, 30)
        assert placed is not None
        # The active's observation says nothing runs: in self mode status reads the node's own report.
        assert store.record_observations("holder-a", lease.epoch, [Observation(HOST, "stopped", (), "")])
        assert store.write_report(NodeReport(HOST, "holder-a", "running", (1234,), True, answers=1, seq=1))
        assert store.write_report(NodeReport("node-b", "holder-b", "stopped", answers=1, seq=1))
        assert store.claim_node_control("self") == "self"
    finally:
        store.close()
    result = cli("status", "--json")
    assert result.exit_code == 0, result.output
    data = as_json(result)
    assert isinstance(data, dict) and data["node_control"] == "self" and data["health"] == "healthy"
    nodes = {n["host"]: n for n in data["nodes"]}
    assert nodes[HOST]["scheduler"] == "running" and nodes[HOST]["pids"] == [1234]
    assert 0 <= nodes[HOST]["report_age_s"] < 30 and nodes[HOST]["observed_age_s"] == nodes[HOST]["report_age_s"]
    text = cli("status")
    assert "node_control: self" in text.output and "reported " in text.output
    probes = as_json(cli("is_scheduler_running", "--json"))
    assert isinstance(probes, list)
    assert {p["node"]: p["state"] for p in probes} == {HOST: "stopped", "node-b": "stopped"}  # n-a: its local look
    assert 0 <= probes[1]["report_age_s"] < 30
    connection = cli("test_connection")
    assert "node node-b (its controller's report): ok: scheduler stopped (reported" in connection.output
    cli.write_keys({**keys, "node_control": "ssh"})
    mismatch = as_json(cli("status", "--json"))
    assert isinstance(mismatch, dict) and any("refuses to act" in p for p in mismatch["problems"])


def test_node_control_is_changed_only_while_paused(cli: Cli) -> None:
    assert cli("status", "--json").exit_code == 2  # the store exists, nothing recorded yet
    assert_one_error_line(cli("node_control", "ssh"), 1, "not paused")
    assert cli("pause").exit_code == 0
    changed = cli("node-control", "ssh")
    assert changed.exit_code == 0, changed.output
    data = as_json(cli("status", "--json"))
    assert isinstance(data, dict) and data["node_control"] == "ssh"
    assert any("refuses to act" in p for p in data["problems"])  # this config says self
    events = as_json(cli("history", "--json"))
    assert isinstance(events, list) and any(e["kind"] == "node_control" for e in events)
    assert cli("node_control", "sideways").exit_code == 2


def test_pause_and_resume_show_in_status_and_history(cli: Cli) -> None:
    paused = cli("pause")
    assert paused.exit_code == 0, paused.output
    status = cli("status", "--json")
    assert status.exit_code == 2  # still no scheduler
    data = as_json(status)
    assert isinstance(data, dict) and data["paused"] is True

    resumed = cli("resume")
    assert resumed.exit_code == 0, resumed.output
    data = as_json(cli("status", "--json"))
    assert isinstance(data, dict) and data["paused"] is False

    history = cli("history", "--json")
    assert history.exit_code == 0, history.output
    events = as_json(history)
    assert isinstance(events, list)
    assert [e["kind"] for e in events] == ["pause", "resume"]
    assert all(e["host"] == HOST for e in events)
    assert {"at", "host", "kind", "epoch", "message"} <= events[0].keys()
    assert "[pause]" in cli("history").output


def test_history_empty(cli: Cli) -> None:
    assert as_json(cli("history", "--json")) == []
    text = cli("history")
    assert text.exit_code == 0
    assert text.stdout.strip() == "no events"


def test_read_commands_create_no_metastore(cli: Cli, tmp_path: Path) -> None:
    """status, metadata and history on a config no controller has run with write nothing."""
    before = sorted(p for p in tmp_path.rglob("*"))
    for args in (["status"], ["status", "--json"], ["metadata"], ["history"]):
        result = cli(*args)
        assert "does not exist yet" in result.stderr, result.output
        assert "Traceback" not in result.output
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_history_limit(cli: Cli) -> None:
    for _ in range(3):
        assert cli("pause").exit_code == 0
    events = as_json(cli("history", "--json", "--limit", "2"))
    assert isinstance(events, list) and len(events) == 2
    assert cli("history", "--limit", "0").exit_code == 2


def test_clear_metadata_refuses_without_yes_when_not_a_tty(cli: Cli) -> None:
    assert cli("pause").exit_code == 0
    result = cli("clear_metadata", stdin="y\n")
    assert_one_error_line(result, 1, "--yes")
    data = as_json(cli("status", "--json"))
    assert isinstance(data, dict) and data["paused"] is True  # nothing was wiped


def test_clear_metadata_with_yes_wipes_but_keeps_epoch(cli: Cli) -> None:
    store = cli.store()
    try:
        assert store.acquire_or_renew("holder-a", HOST, 30) is not None
        store.add_event(HOST, EventKind.ELECTED, "won")
    finally:
        store.close()
    assert cli("pause").exit_code == 0

    result = cli("clear_metadata", "--yes")

    assert result.exit_code == 0, result.output
    assert "metastore cleared" in result.output
    data = as_json(cli("metadata", "--json"))
    assert isinstance(data, dict)
    assert data["paused"] is False
    assert data["events"] == []
    assert data["lease"]["holder"] is None
    assert data["lease"]["epoch"] == 1  # fencing tokens never go back


# --- the same commands on ZooKeeper ------------------------------------------------------------


def test_store_commands_work_on_zookeeper_as_on_sql(cli: Cli, zk_hosts: str) -> None:
    cli.write(metadata_service_type="zookeeper", metadata_service_zookeeper_nodes=zk_hosts)
    result = cli("status", "--json")
    assert result.exit_code == 2, result.output  # nothing runs yet
    data = as_json(result)
    assert isinstance(data, dict) and data["active_controller"] is None and data["paused"] is False
    assert cli("pause").exit_code == 0
    assert as_json(cli("status", "--json"))["paused"] is True  # type: ignore[index]
    assert cli("resume").exit_code == 0
    history = as_json(cli("history", "--json"))
    assert isinstance(history, list) and [e["kind"] for e in history] == ["pause", "resume"]
    meta = cli("metadata", "--json")
    assert meta.exit_code == 0, meta.output
    dumped = as_json(meta)
    assert isinstance(dumped, dict) and dumped["metastore"].startswith("zookeeper ")
    assert cli("clear_metadata", "--yes").exit_code == 0
    assert as_json(cli("history", "--json")) == []
    connection = cli("test_connection")
    assert connection.exit_code == 0, connection.output
    assert "metastore zookeeper" in connection.output and ": ok (epoch" in connection.output


def test_unreachable_zookeeper_is_one_line_and_exit_1(cli: Cli) -> None:
    from tests.support.ports import free_port

    cli.write(metadata_service_type="zookeeper", metadata_service_zookeeper_nodes=f"127.0.0.1:{free_port()}")
    result = cli("status")
    assert_no_traceback(result)
    assert result.exit_code == 1
    assert "cannot connect" in result.output
