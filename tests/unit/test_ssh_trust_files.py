"""known_hosts and ssh_key_file are believed only when no other user can have written them."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import paramiko
import pytest

from scheduler_failover_controller.nodes.ssh.known_hosts import check_key_file, load_known_hosts
from scheduler_failover_controller.trust import UntrustedFile

LINE = "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDzqn1hq1O9b0lS/8oVnrX9pJq3P4vLqa2b6R1n3Ff8m\n"


def _known_hosts(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(LINE)
    path.chmod(mode)
    return path


def test_a_private_known_hosts_file_is_read(tmp_path: Path) -> None:
    keys = paramiko.HostKeys()
    assert load_known_hosts(keys, _known_hosts(tmp_path, 0o644)) == 1


def test_a_missing_known_hosts_file_is_no_keys(tmp_path: Path) -> None:
    assert load_known_hosts(paramiko.HostKeys(), tmp_path / "none") == 0


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_a_known_hosts_file_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    keys = paramiko.HostKeys()
    with pytest.raises(UntrustedFile, match="writable by other users"):
        load_known_hosts(keys, _known_hosts(tmp_path, mode))
    assert len(keys) == 0


def test_a_known_hosts_link_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(_known_hosts(tmp_path))
    with pytest.raises(UntrustedFile, match="symbolic link"):
        load_known_hosts(paramiko.HostKeys(), link)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_known_hosts_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = _known_hosts(tmp_path)
    os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)
    with pytest.raises(UntrustedFile, match="not to this user or root"):
        load_known_hosts(paramiko.HostKeys(), path)


def test_a_key_file_others_may_write_or_a_link_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("key")
    key.chmod(0o600)
    check_key_file(key)  # private: fine
    key.chmod(0o622)
    with pytest.raises(UntrustedFile, match=r"ssh_key_file .* writable by other users"):
        check_key_file(key)
    key.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(key)
    with pytest.raises(UntrustedFile, match="symbolic link"):
        check_key_file(link)
