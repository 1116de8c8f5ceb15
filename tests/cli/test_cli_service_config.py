"""A bad service section or variable on the command line: exit 2, one line naming the section and
key, no traceback; a good one is read by every command that loads the config."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scheduler_failover_controller.config import CONFIG_ENV

from .cli_support import ENTRY_POINT, NO_MATCH, Cli, assert_no_traceback, assert_one_error_line

SVC = "AIRFLOW__SCHEDULER_FAILOVER_SERVICE_"
SECTION = "[scheduler_failover_service_beat]"
GOOD = f"{SECTION}\nstart_command = celery beat\nprocess_match = celery beat\n"

BAD_SECTIONS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("unknown-key", "beat", GOOD + "frobnicate = 1\n", (SECTION, "frobnicate", "unknown key")),
    ("missing-start", "beat", f"{SECTION}\nprocess_match = celery beat\n", (SECTION, "start_command", "required")),
    ("no-section", "beat", "", ("[scheduler_failover_service_beat]", "no such section")),
    ("not-listed", "", GOOD, (SECTION, "'beat' is not named in services")),
    ("bad-name", "Beat", GOOD, ("services", "'Beat'")),
    ("unknown-node", "beat", GOOD + "nodes = node-z\n", (SECTION, "nodes", "node-z")),
    ("colocate-itself", "beat", GOOD + "colocate_with = beat\n", (SECTION, "colocate_with", "itself")),
    ("anti-scheduler-one-node", "beat", GOOD + "anti_colocate_with = scheduler\n", (SECTION, "anti_colocate_with")),
    (
        "match-clash",
        "beat",
        GOOD.replace("match = celery beat", f"match = {NO_MATCH} beat"),
        (SECTION, "process_match"),
    ),
]


@pytest.mark.parametrize(
    ("services", "sections", "needles"), [c[1:] for c in BAD_SECTIONS], ids=[c[0] for c in BAD_SECTIONS]
)
@pytest.mark.parametrize("command", [["get_current_host"], ["status", "--json"], ["start"]])
def test_a_bad_service_section_exits_2_with_one_line(
    services: str, sections: str, needles: tuple[str, ...], command: list[str], cli: Cli
) -> None:
    cli.write(extra=sections, services=services or None)
    assert_one_error_line(cli(*command), 2, str(cli.config), *needles)


def test_a_bad_service_variable_exits_2_with_one_line(cli: Cli) -> None:
    result = cli("get_current_host", **{SVC + "BEAT__START_COMAND": "celery beat"})
    assert_one_error_line(result, 2, SVC + "BEAT__START_COMAND", "<NAME>__<KEY>")
    result = cli("get_current_host", **{SVC + "BEAT__START_COMMAND": "celery beat"})
    assert_one_error_line(result, 2, SVC + "BEAT__START_COMMAND", "'beat' is not named in services")


def test_the_console_entry_point_prints_one_line_for_a_bad_service(cli: Cli) -> None:
    """The real entry point (not CliRunner): exit 2, one 'Error:' line on stderr, nothing on stdout."""
    cli.write(extra=GOOD + "colocate_with = flower\n", services="beat")
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
    assert SECTION in err[0] and "colocate_with" in err[0] and "'flower'" in err[0]


@pytest.mark.parametrize("command", [["get_current_host"], ["status"], ["status", "--json"], ["metadata"]])
def test_commands_read_a_config_with_services(command: list[str], cli: Cli) -> None:
    cli.write(extra=GOOD + "colocate_with = scheduler\n", services="beat")
    result = cli(*command, **{SVC + "BEAT__STOP_TIMEOUT": "0.5"})
    assert_no_traceback(result)
    assert "Error:" not in result.output, result.output
    # status exits 2 while no scheduler runs (README, Command line); nothing else may fail.
    assert result.exit_code in ((0, 2) if command[0] == "status" else (0,)), result.output
