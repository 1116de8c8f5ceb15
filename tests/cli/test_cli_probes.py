"""The probe and connection commands: is_scheduler_running (local and remote) and test_connection.

The environment is cleared of SCHEDULER_FAILOVER_CONTROLLER_CONFIG and AIRFLOW__* and AIRFLOW_HOME
points at a tmp dir. Network use is limited to 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cli_support import CLOSED_DB, HOST, Cli, as_json, assert_no_traceback, assert_one_error_line

# --- probes and connections --------------------------------------------------------------------


def test_is_scheduler_running_json_when_stopped(cli: Cli) -> None:
    result = cli("is_scheduler_running", "--json")
    assert result.exit_code == 1, result.output
    expected = {"node": HOST, "state": "stopped", "pids": [], "detail": "", "leashed": False, "foreign": []}
    assert as_json(result) == [expected]
    text = cli("is_scheduler_running")
    assert text.exit_code == 1
    assert text.output.strip() == f"{HOST}: stopped"


@pytest.fixture
def fake_scheduler(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    word = f"sfc_cli_fake_scheduler_{uuid.uuid4().hex[:12]}"
    script = tmp_path / word  # a program of that name, run by the interpreter as a script is
    script.write_text("import time\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script)])
    try:
        yield word, proc
    finally:
        proc.kill()
        proc.wait()


def test_is_scheduler_running_json_when_running(cli: Cli, fake_scheduler: tuple[str, subprocess.Popen[bytes]]) -> None:
    word, proc = fake_scheduler
    cli.write(scheduler_process_match=word)
    result = cli("is_scheduler_running", "--json")
    assert result.exit_code == 0, result.output
    expected = {"node": HOST, "state": "running", "pids": [proc.pid], "detail": "", "leashed": False, "foreign": []}
    assert as_json(result) == [expected]


# A remote node that cannot be reached: a loopback address (no name lookup, so no DNS query ever
# leaves this machine) on a port where nothing listens.
REMOTE = "127.0.0.9"


def unreachable_remote(cli: Cli, **keys: str) -> None:
    from tests.support.ports import free_port

    nodes = {"scheduler_nodes_in_cluster": f"node-a,{REMOTE}", "ssh_port": str(free_port()), "ssh_timeout": "1"}
    nodes["node_control"] = "ssh"  # the other node is reached over SSH
    cli.write_keys({**nodes, **keys})


def test_is_scheduler_running_remote_node_is_unknown(cli: Cli) -> None:
    unreachable_remote(cli, metadata_service_sql_conn=CLOSED_DB, metastore_timeout="1")
    result = cli("is_scheduler_running", "--json")
    assert result.exit_code == 1
    probes = as_json(result)
    assert isinstance(probes, list)
    states = {p["node"]: p["state"] for p in probes}
    assert states == {HOST: "stopped", REMOTE: "unknown"}


def test_test_connection_single_local_node_with_sqlite(cli: Cli) -> None:
    result = cli("test_connection")
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert f"node {HOST} (local): ok" in result.output
    assert "metastore sql sqlite:///" in result.output and ": ok" in result.output


def test_test_connection_fails_for_unreachable_node(cli: Cli, mariadb_url: str) -> None:
    unreachable_remote(cli, metadata_service_sql_conn=mariadb_url)
    result = cli("test_connection")
    assert_no_traceback(result)
    assert result.exit_code == 1, result.output
    assert f"node {REMOTE} (remote): FAILED" in result.output
    assert ": ok (epoch" in result.output  # the metastore itself was reachable


def test_test_connection_closed_mysql_port_fails_without_leaking_password(cli: Cli) -> None:
    cli.write(metadata_service_sql_conn="mysql+pymysql://u:Pw-S3cret-42@127.0.0.1:1/x", metastore_timeout="1")
    result = cli("test_connection")
    assert_no_traceback(result)
    assert result.exit_code == 1, result.output
    assert "metastore sql mysql+pymysql://u:***@127.0.0.1:1/x: FAILED" in result.output
    assert "Pw-S3cret-42" not in result.output


def test_store_command_with_closed_mysql_port_is_one_line(cli: Cli) -> None:
    cli.write(metadata_service_sql_conn="mysql+pymysql://u:Pw-S3cret-42@127.0.0.1:1/x", metastore_timeout="1")
    for command in (["status", "--json"], ["metadata"], ["pause"]):
        line = assert_one_error_line(cli(*command), 1, "127.0.0.1:1")
        assert "Pw-S3cret-42" not in line
