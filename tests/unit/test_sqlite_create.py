"""The SQLite metastore's file and the directories above it are created private to this user."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler_failover_controller.metastore.sql_engine import create_private


@pytest.fixture
def lax_umask() -> Iterator[None]:
    old = os.umask(0)  # the worst case: nothing masked
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_missing_directories_are_0700_and_the_file_0600(tmp_path: Path, lax_umask: None) -> None:
    db = tmp_path / "a" / "b" / "x.db"
    create_private(db)
    assert (_mode(tmp_path / "a"), _mode(tmp_path / "a" / "b"), _mode(db)) == (0o700, 0o700, 0o600)
    assert db.stat().st_size == 0  # an empty file is an empty SQLite database


def test_an_existing_file_and_directory_are_left_as_they_are(tmp_path: Path, lax_umask: None) -> None:
    db = tmp_path / "x.db"
    db.write_bytes(b"kept")
    db.chmod(0o640)
    tmp_path.chmod(0o750)
    create_private(db)
    assert (_mode(tmp_path), _mode(db), db.read_bytes()) == (0o750, 0o640, b"kept")


def test_a_link_in_place_of_the_file_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "x.db").symlink_to(target)
    create_private(tmp_path / "x.db")
    assert not target.exists()


def test_sqlites_side_files_take_the_databases_mode(tmp_path: Path, lax_umask: None) -> None:
    from scheduler_failover_controller.metastore.sql import SQLMetastore

    db = tmp_path / "d" / "x.db"
    store = SQLMetastore(f"sqlite:///{db}", 2.0)
    try:
        store.setup()
        store.read_state()
        sides = [db.with_name("x.db-wal"), db.with_name("x.db-shm")]
        assert all(side.exists() for side in sides)  # WAL mode, a connection open
        assert [_mode(p) for p in [db, *sides]] == [0o600, 0o600, 0o600]
    finally:
        store.close()
