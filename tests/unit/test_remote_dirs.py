"""The sh side of the state_dir rule (remote_dirs), run here with ``/bin/sh -s`` as root, with
``nobody`` as the other user; and the deadline write of ``leash --serve`` under the same rule."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler_failover_controller.boot import start_ticks
from scheduler_failover_controller.leash.deadline import write_deadline
from scheduler_failover_controller.nodes.local import end_session, session_record
from scheduler_failover_controller.nodes.ssh import remote_dirs, scripts

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to play another user's files")


def sh(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-s"], input=script, capture_output=True, text=True, timeout=30, check=False)


def guarded(dirs: list[Path], files: tuple[Path, ...] = ()) -> subprocess.CompletedProcess[str]:
    return sh(remote_dirs.guard(dirs, files) + "echo passed\n")


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refusal prints (and checks it is one line, on both streams, exit 1)."""
    assert result.returncode == 1 and "passed" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sfc: ")
    assert remote_dirs.refused(result.stdout) == lines[0][len("sfc: ") :]
    return lines[0]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    tmp_path.chmod(0o700)
    return tmp_path


def test_creates_missing_directories_private(base: Path) -> None:
    result = guarded([base / "state", base / "state" / "locks"])
    assert result.returncode == 0 and "passed" in result.stdout, result.stderr
    assert (base / "state" / "locks").stat().st_mode & 0o777 == 0o700


def test_a_directory_of_another_user(base: Path) -> None:
    (base / "state").mkdir(mode=0o700)
    os.chown(base / "state", NOBODY, NOBODY)
    assert f"{base / 'state'} belongs to uid {NOBODY}" in refusal(guarded([base / "state"]))


@pytest.mark.parametrize("mode", [0o770, 0o702, 0o1777])
def test_a_directory_others_may_write(base: Path, mode: int) -> None:
    (base / "state").mkdir()
    (base / "state").chmod(mode)
    assert "is writable by other users" in refusal(guarded([base / "state"]))


def test_a_parent_of_another_user(base: Path) -> None:
    (base / "theirs").mkdir()
    os.chown(base / "theirs", NOBODY, NOBODY)
    line = refusal(guarded([base / "theirs" / "state"]))
    assert f"{base / 'theirs'} (above {base / 'theirs' / 'state'}) belongs to uid {NOBODY}" in line


def test_a_world_writable_parent_needs_the_sticky_bit(base: Path) -> None:
    (base / "open").mkdir()
    (base / "open").chmod(0o777)
    assert "writable by everyone without the sticky bit" in refusal(guarded([base / "open" / "state"]))
    (base / "open").chmod(0o1777)
    assert guarded([base / "open" / "state2"]).returncode == 0


def test_a_link_of_another_user_and_a_link_of_ours(base: Path) -> None:
    (base / "real").mkdir(mode=0o700)
    (base / "theirs").symlink_to(base / "real")
    os.lchown(base / "theirs", NOBODY, NOBODY)
    assert f"{base / 'theirs'} is a symbolic link of uid {NOBODY}" in refusal(guarded([base / "theirs"]))
    (base / "ours").symlink_to(base / "real")
    assert guarded([base / "ours"]).returncode == 0


def test_a_linked_file_is_refused_and_its_target_untouched(base: Path) -> None:
    (base / "state").mkdir(mode=0o700)
    secret = base / "secret"
    secret.write_text("root's own\n")
    (base / "state" / "scheduler.log").symlink_to(secret)
    line = refusal(guarded([base / "state"], (base / "state" / "scheduler.log",)))
    assert "scheduler.log is a symbolic link" in line
    assert secret.read_text() == "root's own\n"


def test_check_reports_and_goes_on(base: Path) -> None:
    (base / "state").mkdir(mode=0o700)
    os.chown(base / "state", NOBODY, NOBODY)
    result = sh(remote_dirs.check([base / "missing", base / "state"]) + "echo went on\n")
    assert result.returncode == 0 and "went on" in result.stdout
    assert "belongs to uid" in remote_dirs.refused(result.stdout)
    assert not (base / "missing").exists()


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    """A process leading a session of its own: what a planted session record would name."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def test_a_session_record_in_a_dir_of_another_user_kills_nothing(base: Path, victim: subprocess.Popen[bytes]) -> None:
    locks = base / "state" / "locks"
    locks.mkdir(parents=True, mode=0o700)
    os.chown(locks, NOBODY, NOBODY)
    record = locks / "node.session"
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    record.write_text(f"{victim.pid} - {boot} 0\n")
    result = sh(scripts.end_session_script(record))
    assert f"{locks} belongs to uid {NOBODY}" in result.stderr
    assert victim.poll() is None, "a session named in another user's directory was killed"
    assert record.exists()


def test_the_leash_deadline_is_not_written_where_another_user_could_replace_it(base: Path) -> None:
    state = base / "state"
    (state / "leash").mkdir(parents=True, mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    assert write_deadline(state, "node", 1e9) is False
    assert list((state / "leash").iterdir()) == []


def test_kill_local_ends_no_session_named_in_a_dir_of_another_user(base: Path, victim: subprocess.Popen[bytes]) -> None:
    """The Python side of a stop on the node (``kill_local --session-file``) under the same rule."""
    locks = base / "state" / "locks"
    locks.mkdir(parents=True, mode=0o700)
    os.chown(locks, NOBODY, NOBODY)
    record = locks / "node.session"
    ticks = start_ticks(victim.pid)
    assert ticks is not None
    record.write_text(session_record(victim.pid, ticks))
    record.chmod(0o600)
    end_session(record, "node")
    assert victim.poll() is None, "a session named in another user's directory was killed"
    os.chown(locks, 0, 0)  # the same record in a private directory is acted on
    end_session(record, "node")
    assert victim.wait(10) is not None
