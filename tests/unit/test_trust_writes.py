"""Where a file may be written without following another user's link (trust.write_problem)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scheduler_failover_controller.trust import UntrustedFile, open_append_private, write_problem


def test_a_private_directory_and_directories_yet_to_be_made_are_fine(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    assert write_problem(tmp_path / "cfg") is None
    assert write_problem(tmp_path / "a" / "b" / "cfg") is None


def test_a_directory_others_may_write_is_refused_and_sticky_only_for_a_new_file(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert "writable by other users (mode 0777)" in str(write_problem(shared / "cfg"))
    shared.chmod(0o1777)
    assert write_problem(shared / "cfg") is None
    assert write_problem(shared / "db", sticky_ok=False) is not None


def test_a_link_is_judged_by_its_owner_and_by_where_its_target_sits(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    (tmp_path / "link").symlink_to(shared / "cfg")
    assert "shared (holding cfg) is writable" in str(write_problem(tmp_path / "link"))
    if os.geteuid() == 0:
        (tmp_path / "theirs").symlink_to(tmp_path / "x")
        os.lchown(tmp_path / "theirs", 65534, -1)
        assert "is a symbolic link of" in str(write_problem(tmp_path / "theirs"))


def test_appending_never_goes_through_a_link(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("keep")
    (tmp_path / "log").symlink_to(tmp_path / "target")
    with pytest.raises(UntrustedFile, match="symbolic link"):
        open_append_private(tmp_path / "log")
    fd = open_append_private(tmp_path / "new.log")
    os.close(fd)
    assert (tmp_path / "new.log").stat().st_mode & 0o777 == 0o600


def test_the_log_handler_rotates_and_refuses_a_link_at_reopen(tmp_path: Path) -> None:
    import logging

    from scheduler_failover_controller.log_file import PrivateRotatingFileHandler

    handler = PrivateRotatingFileHandler(tmp_path / "sfc.log", when="S", backupCount=2)
    try:
        handler.emit(logging.makeLogRecord({"msg": "one"}))
        handler.doRollover()
        handler.emit(logging.makeLogRecord({"msg": "two"}))
        assert (tmp_path / "sfc.log").read_text() == "two\n"
        assert len(list(tmp_path.glob("sfc.log.*"))) == 1
        (tmp_path / "target").write_text("keep")
        os.rename(tmp_path / "sfc.log", tmp_path / "moved")
        (tmp_path / "sfc.log").symlink_to(tmp_path / "target")  # planted between rotate and reopen
        with pytest.raises(UntrustedFile):
            handler._open()
        assert (tmp_path / "target").read_text() == "keep"
    finally:
        handler.close()
