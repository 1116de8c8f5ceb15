"""The simple commands (version, get_current_host), the hyphenated aliases and an unknown command.

The environment is cleared of SCHEDULER_FAILOVER_CONTROLLER_CONFIG and AIRFLOW__* and AIRFLOW_HOME
points at a tmp dir. Network use is limited to 127.0.0.1.
"""

from __future__ import annotations

import pytest

from scheduler_failover_controller import __version__
from scheduler_failover_controller.config import CONFIG_ENV

from .cli_support import CLOSED_DB, HOST, Cli, assert_no_traceback

# --- simple commands ---------------------------------------------------------------------------


def test_version(cli: Cli) -> None:
    result = cli("version", config=None)
    assert result.exit_code == 0
    assert result.output.strip() == __version__


def test_get_current_host(cli: Cli) -> None:
    result = cli("get_current_host")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == HOST


def test_get_current_host_from_env_config_path(cli: Cli) -> None:
    other = cli.write(
        path=cli.tmp_path / "other.cfg",
        scheduler_nodes_in_cluster="x1,x2",
        current_host="x2",
        metadata_service_sql_conn=CLOSED_DB,
    )
    result = cli("get-current-host", config=None, **{CONFIG_ENV: str(other)})
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "x2"


@pytest.mark.parametrize(
    ("alias", "extra", "code"),
    [
        ("test-connection", [], 0),
        ("get-current-host", [], 0),
        ("is-scheduler-running", ["--json"], 1),
        ("clear-metadata", ["--yes"], 0),
        ("send-test-email", [], 1),
    ],
)
def test_hyphenated_aliases(alias: str, extra: list[str], code: int, cli: Cli) -> None:
    result = cli(alias, *extra)
    assert_no_traceback(result)
    assert result.exit_code == code, result.output
    assert "No such command" not in result.output


def test_unknown_command_is_a_usage_error(cli: Cli) -> None:
    result = cli("frobnicate")
    assert result.exit_code == 2
    assert "No such command" in result.output
