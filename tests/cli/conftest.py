"""Fixtures of the command line's tests: ``cli``, a :class:`Cli` in tmp_path with a valid config."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.cli_support import Cli, make_cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return make_cli(tmp_path)
