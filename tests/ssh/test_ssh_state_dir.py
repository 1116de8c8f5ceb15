"""The state_dir on a node reached over SSH: what another user could write is refused, not followed.

The node is this machine (see conftest.py); the SSH user is root, ``nobody`` plays the other user.
Each refusal is one line naming the path, nothing is written through a planted link, and no
scheduler starts.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scheduler_failover_controller.exceptions import CommandFailed
from scheduler_failover_controller.probe_result import SchedulerState
from tests.ssh.conftest import MODES, Env, later

NOBODY = 65534


def root_only(env: Env) -> tuple[Path, bytes]:
    """A file only root may read or write, and its content."""
    secret = env.tmp / "root_only"
    secret.write_bytes(b"root's own\n")
    secret.chmod(0o600)
    return secret, secret.read_bytes()


def refused_start(env: Env, mode: dict[str, str]) -> str:
    runner = env.runner(**mode)
    with pytest.raises(CommandFailed) as caught:
        runner.start(later())
    assert not env.schedulers(), "a scheduler started in an untrusted state_dir"
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_log_linked_by_another_user_is_not_followed(env: Env, mode: dict[str, str]) -> None:
    state = env.tmp / "state"
    state.mkdir(mode=0o700)
    secret, before = root_only(env)
    log = state / "scheduler.log"
    log.symlink_to(secret)
    message = refused_start(env, mode)
    assert f"{log} is a symbolic link" in message
    assert secret.read_bytes() == before and log.is_symlink()


def test_a_state_dir_of_another_user_is_refused(env: Env, mode: dict[str, str]) -> None:
    state = env.tmp / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    secret, before = root_only(env)
    (state / "scheduler.log").symlink_to(secret)
    os.lchown(state / "scheduler.log", NOBODY, NOBODY)
    message = refused_start(env, mode)
    assert f"{state} belongs to uid {NOBODY}" in message
    assert secret.read_bytes() == before
    assert not (state / "locks").exists()


def test_a_group_writable_state_dir_is_refused(env: Env, mode: dict[str, str]) -> None:
    state = env.tmp / "state"
    state.mkdir()
    state.chmod(0o770)
    message = refused_start(env, mode)
    assert f"{state} is writable by other users" in message


def test_a_locks_dir_linked_by_another_user_is_refused(env: Env) -> None:
    state = env.tmp / "state"
    state.mkdir(mode=0o700)
    elsewhere = env.tmp / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    os.chown(elsewhere, NOBODY, NOBODY)
    (state / "locks").symlink_to(elsewhere)
    os.lchown(state / "locks", NOBODY, NOBODY)
    message = refused_start(env, MODES["fallback"])
    assert f"{state / 'locks'} is a symbolic link of uid {NOBODY}" in message
    assert not any(elsewhere.iterdir())


def test_test_connection_names_the_refused_state_dir(env: Env) -> None:
    state = env.tmp / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    report = env.runner().check()
    assert report.probe is not None and report.probe.state is SchedulerState.STOPPED
    assert str(state) in report.state_dir_problem and "belongs to" in report.state_dir_problem
    assert not report.ok


def test_a_private_state_dir_still_starts(env: Env, mode: dict[str, str]) -> None:
    runner = env.runner(**mode)
    runner.start(later())
    assert runner.probe().state is SchedulerState.RUNNING
    assert runner.check().state_dir_problem == ""
