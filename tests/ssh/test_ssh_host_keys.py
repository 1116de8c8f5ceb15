"""SSHNodeRunner's host keys and authentication against a real sshd on 127.0.0.1: the three
ssh_host_key_policy values, changed keys, wrong or unreadable client keys, hashed known_hosts.

The "remote" node is this machine reached over SSH (tests/ssh/conftest.py), so every remote
process is also visible to a local probe (tests/ssh/runner_support.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scheduler_failover_controller.exceptions import NodeUnreachable
from scheduler_failover_controller.probe_result import SchedulerState
from tests.ssh.conftest import NODE, Env, later

# --- host keys and authentication -------------------------------------------------------------------


def test_unknown_host_key_is_rejected_by_default(env: Env, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    runner = env.runner(ssh_known_hosts_file=empty)
    result = runner.probe()
    assert result.state is SchedulerState.UNKNOWN
    assert "is not in known_hosts" in result.detail
    assert "ssh_host_key_policy = reject" in result.detail
    with pytest.raises(NodeUnreachable, match="not in known_hosts"):
        runner.start(later())
    with pytest.raises(NodeUnreachable, match="not in known_hosts"):
        runner.stop()
    assert empty.read_text() == ""


def test_unknown_host_key_is_accepted_with_warn(env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    runner = env.runner(ssh_known_hosts_file=empty, ssh_host_key_policy="warn")
    assert runner.probe().state is SchedulerState.STOPPED
    assert "accepted (ssh_host_key_policy = warn)" in caplog.text
    assert empty.read_text() == ""  # warn does not save it


def test_unknown_host_key_is_saved_with_auto_add(env: Env, tmp_path: Path) -> None:
    known = tmp_path / "ssh" / "known_hosts"  # created with its directory
    runner = env.runner(ssh_known_hosts_file=known, ssh_host_key_policy="auto_add")
    assert runner.probe().state is SchedulerState.STOPPED
    kind, key = env.sshd.host_key.with_suffix(".pub").read_text().split()[:2]
    assert known.read_text() == f"[{NODE}]:{env.sshd.port} {kind} {key}\n"
    # from now on the key is known: the default policy accepts it
    assert env.runner(ssh_known_hosts_file=known).probe().state is SchedulerState.STOPPED


@pytest.mark.parametrize("policy", ["reject", "warn", "auto_add"])
def test_changed_host_key_is_always_refused(env: Env, tmp_path: Path, policy: str) -> None:
    other = tmp_path / "other_host_key"
    ssh_keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)]
    subprocess.run(ssh_keygen, check=True, capture_output=True, timeout=30)
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[{NODE}]:{env.sshd.port} {kind} {key}\n")
    runner = env.runner(ssh_known_hosts_file=known, ssh_host_key_policy=policy)
    result = runner.probe()
    assert result.state is SchedulerState.UNKNOWN
    assert "host key mismatch" in result.detail
    assert not result.unreachable
    assert known.read_text() == f"[{NODE}]:{env.sshd.port} {kind} {key}\n"


def test_wrong_key_fails_authentication(env: Env) -> None:
    runner = env.runner(ssh_key_file=env.sshd.wrong_key)
    result = runner.probe()
    assert result.state is SchedulerState.UNKNOWN
    assert "authentication as root with key" in result.detail
    assert not result.unreachable  # the node answered: refused, not silent (never a reason to fence)
    with pytest.raises(NodeUnreachable, match="authentication"):
        runner.start(later())
    assert not env.schedulers()


def test_unreadable_key_file_is_unknown(env: Env, tmp_path: Path) -> None:
    result = env.runner(ssh_key_file=tmp_path / "no_such_key").probe()
    assert result.state is SchedulerState.UNKNOWN
    assert "cannot read ssh_key_file" in result.detail


def test_known_hosts_with_hashed_names_and_bad_lines(env: Env, tmp_path: Path) -> None:
    """Hashed entries are understood; lines paramiko cannot parse are skipped, as OpenSSH does."""
    hashed = tmp_path / "hashed"
    hashed.write_text(env.sshd.known_hosts.read_text())
    subprocess.run(["ssh-keygen", "-H", "-f", str(hashed)], check=True, capture_output=True, timeout=30)
    assert f"[{NODE}]" not in hashed.read_text()
    known = tmp_path / "known_hosts"
    known.write_text(
        "# comment\n"
        "@cert-authority *.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoo\n"
        "other ssh-rsa !!!not-base64\n"
        "|1|abc=|def= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
        "lonely-name\n" + hashed.read_text()
    )
    assert env.runner(ssh_known_hosts_file=known).probe().state is SchedulerState.STOPPED
