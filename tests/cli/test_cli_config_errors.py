"""A bad configuration on the command line: exit 2, one line naming what is wrong, no traceback.

The environment is cleared of SCHEDULER_FAILOVER_CONTROLLER_CONFIG and AIRFLOW__* and AIRFLOW_HOME
points at a tmp dir. Network use is limited to 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scheduler_failover_controller.config import CONFIG_ENV

from .cli_support import ENTRY_POINT, ENV, Cli, assert_no_traceback, assert_one_error_line, lines

# --- bad configuration: exit 2, one line, no traceback -----------------------------------------

BAD_CONFIGS: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
    ("unknown-key", {"frobnicate": "1"}, ("frobnicate",)),
    ("bad-number", {"poll_frequency": "ten"}, ("poll_frequency",)),
    ("negative-number", {"lease_ttl": "-40"}, ("lease_ttl",)),
    ("zero-number", {"poll_frequency": "0"}, ("poll_frequency",)),
    ("empty-node-list", {"scheduler_nodes_in_cluster": ""}, ("scheduler_nodes_in_cluster",)),
    ("node-twice", {"scheduler_nodes_in_cluster": "node-a,node-b,node-a"}, ("scheduler_nodes_in_cluster",)),
    ("node-metachar", {"scheduler_nodes_in_cluster": "node-a,b;reboot"}, ("scheduler_nodes_in_cluster",)),
    ("node-parenthesis", {"scheduler_nodes_in_cluster": "node-a,node(1)"}, ("scheduler_nodes_in_cluster",)),
    ("current-not-listed", {"scheduler_nodes_in_cluster": "node-b"}, ("current_host",)),
    ("lease-too-short", {"poll_frequency": "10", "lease_ttl": "12", "metastore_timeout": "5"}, ("lease_ttl",)),
    ("stop-timeout-too-long", {"scheduler_stop_timeout": "4"}, ("scheduler_stop_timeout",)),
    ("ssh-timeout-too-long", {"ssh_timeout": "4"}, ("ssh_timeout",)),
    ("bad-logging-level", {"logging_level": "chatty"}, ("logging_level",)),
    ("bad-ssh-policy", {"ssh_host_key_policy": "accept"}, ("ssh_host_key_policy",)),
    ("sql-conn-not-a-url", {"metadata_service_sql_conn": "localhost"}, ("metadata_service_sql_conn",)),
    (
        "sql-conn-bad-port",
        {"metadata_service_sql_conn": "mysql+pymysql://u:pw@h:port/x"},
        ("metadata_service_sql_conn",),
    ),
    ("unbalanced-process-match", {"scheduler_process_match": "airflow 'scheduler"}, ("scheduler_process_match",)),
]


@pytest.mark.parametrize(("keys", "needles"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_exits_2_with_one_line(keys: dict[str, str], needles: tuple[str, ...], cli: Cli) -> None:
    cli.write_keys(keys)
    assert_one_error_line(cli("get_current_host"), 2, str(cli.config), *needles)


@pytest.mark.parametrize(
    "command",
    [
        ["get_current_host"],
        ["test_connection"],
        ["is_scheduler_running", "--json"],
        ["metadata"],
        ["status", "--json"],
        ["history"],
        ["pause"],
        ["resume"],
        ["clear_metadata", "--yes"],
        ["send_test_email"],
    ],
)
def test_every_command_reports_bad_config_as_one_line(command: list[str], cli: Cli) -> None:
    cli.write(poll_frequency="soon")
    assert_one_error_line(cli(*command), 2, str(cli.config), "poll_frequency")


def test_console_entry_point_prints_one_line_on_stderr(cli: Cli) -> None:
    """The real entry point (not CliRunner): exit 2, one 'Error:' line on stderr, nothing on stdout."""
    cli.write(scheduler_nodes_in_cluster="node-a,node-a")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__") and k != CONFIG_ENV}
    env["AIRFLOW_HOME"] = str(cli.home)
    proc = subprocess.run(
        [sys.executable, "-c", ENTRY_POINT, "--config", str(cli.config), "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error:"), proc.stderr
    assert str(cli.config) in err[0] and "scheduler_nodes_in_cluster" in err[0]


def test_unknown_env_key_exits_2(cli: Cli) -> None:
    result = cli("get_current_host", **{ENV + "FROBNICATE": "1"})
    assert_one_error_line(result, 2, ENV + "FROBNICATE")


def test_bad_env_value_exits_2(cli: Cli) -> None:
    result = cli("status", **{ENV + "LEASE_TTL": "-1"})
    assert_one_error_line(result, 2, ENV + "LEASE_TTL", "lease_ttl")


def test_bad_smtp_value_exits_2(cli: Cli) -> None:
    cli.write(extra="[smtp]\nsmtp_port = many\n")
    assert_one_error_line(cli("send_test_email"), 2, str(cli.config), "smtp_port")


def test_missing_config_file_exits_2(cli: Cli) -> None:
    missing = cli.tmp_path / "missing.cfg"
    assert_one_error_line(cli("get_current_host", config=missing), 2, str(missing), "does not exist")


def test_missing_config_file_from_env_var_exits_2(cli: Cli) -> None:
    missing = cli.tmp_path / "missing.cfg"
    result = cli("get_current_host", config=None, **{CONFIG_ENV: str(missing)})
    assert_one_error_line(result, 2, str(missing), "does not exist")


def test_directory_as_config_exits_2_with_one_line(cli: Cli) -> None:
    folder = cli.tmp_path / "folder"
    folder.mkdir()
    assert_one_error_line(cli("get_current_host", config=folder), 2, str(folder))


def test_invalid_utf8_config_exits_2(cli: Cli) -> None:
    cli.config.write_bytes(b"[scheduler_failover]\nscheduler_nodes_in_cluster = n\xe9ud\n")
    assert_one_error_line(cli("get_current_host"), 2, str(cli.config), "not a valid INI file")


@pytest.mark.parametrize(
    "text",
    ["scheduler_nodes_in_cluster = node-a\n", "[scheduler_failover]\nlease_ttl = 1\nlease_ttl = 2\n", "[x\n"],
    ids=["no-section", "duplicate-key", "broken-header"],
)
def test_invalid_ini_exits_2(text: str, cli: Cli) -> None:
    cli.config.write_text(text, encoding="utf-8")
    assert_one_error_line(cli("get_current_host"), 2, str(cli.config), "not a valid INI file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_config_exits_2(cli: Cli) -> None:
    cli.config.chmod(0)
    try:
        assert_one_error_line(cli("get_current_host"), 2, str(cli.config), "cannot read")
    finally:
        cli.config.chmod(0o644)


def test_bad_default_airflow_cfg_exits_2(cli: Cli) -> None:
    airflow_cfg = cli.home / "airflow.cfg"
    airflow_cfg.write_text("[scheduler_failover]\nscheduler_nodes_in_cluster = a,a\n", encoding="utf-8")
    result = cli("get_current_host", config=None)
    assert_one_error_line(result, 2, str(airflow_cfg), "scheduler_nodes_in_cluster")


@pytest.mark.parametrize(
    ("url", "needle"),
    [("oracle://u:Pw-S3cret@db/x", "oracle"), ("mysql+nosuchdriver://u:Pw-S3cret@db/x", "driver")],
    ids=["unsupported-database", "missing-driver"],
)
def test_unusable_sql_conn_exits_2_naming_key_and_file(url: str, needle: str, cli: Cli) -> None:
    cli.write(metadata_service_sql_conn=url)
    line = assert_one_error_line(cli("status"), 2, "metadata_service_sql_conn", str(cli.config), needle)
    assert "Pw-S3cret" not in line
    # test_connection reports the nodes first, then stops at the metastore with the same one line
    result = cli("test_connection")
    assert_no_traceback(result)
    assert result.exit_code == 2, result.output
    errors = [out for out in lines(result) if out.startswith("Error:")]
    assert errors == [line]
    assert "Pw-S3cret" not in result.output
