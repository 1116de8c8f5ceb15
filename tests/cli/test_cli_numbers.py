"""Every number of seconds on the command line is finite: ``nan`` passes click's FloatRange (no
comparison with it is true) and made ``kill-local --timeout nan`` and ``switchover --wait nan``
wait for ever."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from scheduler_failover_controller.cli import main
from scheduler_failover_controller.cli.params import Seconds
from tests.cli.cli_support import ENTRY_POINT, NO_MATCH, assert_no_traceback, lines, make_cli

BAD = ["nan", "NaN", "-nan", "inf", "+inf", "1e999"]


def _commands(group: click.Group) -> list[click.Command]:
    found: list[click.Command] = []
    for command in group.commands.values():
        found.append(command)
        if isinstance(command, click.Group):
            found.extend(_commands(command))
    return found


def test_every_float_option_is_a_finite_number_of_seconds() -> None:
    loose = [
        f"{command.name} {param.name}"
        for command in _commands(main)
        for param in command.params
        if isinstance(param.type, click.types.FloatParamType) and not isinstance(param.type, Seconds)
    ]
    assert loose == []
    assert any(isinstance(p.type, Seconds) for c in _commands(main) for p in c.params)


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("args", [["kill-local", "--match", NO_MATCH, "--timeout"], ["switchover", "node-b", "--wait"]])
def test_a_non_finite_number_is_one_error_line(tmp_path: Path, args: list[str], value: str) -> None:
    cli = make_cli(tmp_path)
    result = cli(*args, value)
    assert_no_traceback(result)
    assert result.exit_code == 2, result.output
    errors = [line for line in lines(result) if line.startswith("Error:")]
    assert len(errors) == 1 and "is not a finite number of seconds" in errors[0], result.output


def test_finite_numbers_still_pass() -> None:
    assert Seconds(0, 3600).convert("2.5", None, None) == 2.5
    with pytest.raises(click.BadParameter):
        Seconds(0, 3600).convert("-1", None, None)


def test_kill_local_with_a_nan_timeout_exits_at_once(tmp_path: Path) -> None:
    """The real entry point: exit 2 and one 'Error:' line, instead of a wait that never ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", ENTRY_POINT, "kill-local", "--match", NO_MATCH, "--timeout", "nan"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: Invalid value for '--timeout': 'nan' is not a finite number of seconds"], proc.stderr
