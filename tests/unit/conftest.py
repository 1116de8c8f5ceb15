"""Fixtures of the config tests: an AIRFLOW_HOME in tmp_path, the ``env`` dict they load with, and
``make``, which writes a valid config file (one node, ``node-a``) plus the given keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.config_support import HOST, render


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "airflow_home"
    path.mkdir()
    return path


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return {"AIRFLOW_HOME": str(home)}


@pytest.fixture
def make(tmp_path: Path) -> Callable[..., Path]:
    """Write a config file with a valid base (one node, ``node-a``) plus the given keys."""

    def write(extra: str = "", name: str = "sfc.cfg", **keys: str | None) -> Path:
        base: dict[str, str | None] = {
            "scheduler_nodes_in_cluster": HOST,
            "current_host": HOST,
            "state_dir": str(tmp_path / "state"),
        }
        base.update(keys)
        path = tmp_path / name
        path.write_text(render(base, extra), encoding="utf-8")
        return path

    return write
