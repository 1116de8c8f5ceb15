"""``leash --serve`` reads request lines of a bounded length."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

from scheduler_failover_controller.leash.deadline import LINE_MAX, bounded_lines, deadline_path, read_deadline_file
from scheduler_failover_controller.leash.spec import ENV_NODE, ENV_STATE_DIR, LOCAL_ARGV, SERVE_BANNER
from tests.unit.test_leash import ROOT


def test_a_line_over_the_limit_is_given_as_none_and_read_on_to_its_newline() -> None:
    data = b"clock\n" + b"x" * 10 + b"\nset 1\n" + b"y" * 25 + b"\n" + b"z" * 8 + b"\n" + b"w" * 30
    lines = list(bounded_lines(io.BytesIO(data), limit=8))
    assert lines == [b"clock\n", None, b"set 1\n", None, b"z" * 8 + b"\n", None]


def test_serve_answers_a_too_long_line_with_an_error_and_goes_on(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), ENV_NODE: "n1", ENV_STATE_DIR: str(tmp_path)}
    huge = "set " + "9" * (4 * LINE_MAX) + "\n"
    result = subprocess.run(
        [*LOCAL_ARGV, "--serve"], input=huge + "set 42.5\n", env=env, capture_output=True, text=True, timeout=30
    )
    assert result.stdout.splitlines() == [SERVE_BANNER, "error line too long", "ok"]
    assert read_deadline_file(deadline_path(tmp_path, "n1")) == 42.5
