"""Fixtures of the metastore contract: ``be`` (every backend of metastore_backends.py), ``sql_be``
(the SQL ones), ``store`` (a client of ``be``) and ``other`` (more clients of the same store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler_failover_controller.metastore.base import (
    Metastore,
)
from tests.contract.metastore_backends import Backend, make_backend


@pytest.fixture(params=["fake", "sqlite", "mariadb", "postgresql", "postgresql+psycopg", "zookeeper"])
def be(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request, tmp_path)


@pytest.fixture(params=["sqlite", "mariadb", "postgresql", "postgresql+psycopg"])
def sql_be(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The SQL backends alone, for what only they have (tables, columns)."""
    return make_backend(request, tmp_path)


@pytest.fixture
def store(be: Backend) -> Iterator[Metastore]:
    s = be.open()
    yield s
    s.close()


@pytest.fixture
def other(be: Backend) -> Iterator[Any]:
    """Opens more independent clients of the same store; closes them after the test."""
    opened: list[Metastore] = []

    def make() -> Metastore:
        opened.append(be.open())
        return opened[-1]

    yield make
    for s in opened:
        s.close()
