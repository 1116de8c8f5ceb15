"""SSHNodeRunner quotes what it sends over SSH: shell metacharacters in config values and in
state_dir run nothing, and match words never appear on a remote command line.

The "remote" node is this machine reached over SSH (tests/ssh/conftest.py), so every remote
process is also visible to a local probe (tests/ssh/runner_support.py).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from scheduler_failover_controller.probe_result import ProbeResult, SchedulerState
from tests.ssh.conftest import NODE, Env, later
from tests.ssh.runner_support import spawn
from tests.support.waiting import wait_for

# --- quoting --------------------------------------------------------------------------------------

EVIL = [
    "x; touch {p}/pwned1",
    "$(touch {p}/pwned2)",
    "`touch {p}/pwned3`",
    "a' ; touch {p}/pwned4 ; '",
    "a\ntouch {p}/pwned5",
]


def test_shell_metacharacters_in_values_are_quoted(env: Env, mode: dict[str, str], tmp_path: Path) -> None:
    spawn(env)  # a real scheduler: the stop below must not kill it (its match differs)
    canary = tmp_path / "canary"
    canary.mkdir()
    for evil in EVIL:
        match = evil.format(p=canary)
        runner = env.runner(scheduler_process_match=match.replace("\n", " "), **mode)
        assert runner.probe().state is SchedulerState.STOPPED
        assert runner.stop().state is SchedulerState.STOPPED
    evil_command = f"sfc; touch {canary}/pwned6"
    runner = env.runner(ssh_remote_command=evil_command)
    assert runner.probe().state is SchedulerState.RUNNING  # the fallback: 'sfc;' is no command
    assert runner.remote_project is False
    assert sorted(os.listdir(canary)) == []
    assert len(env.schedulers()) == 1


def test_metacharacters_in_state_dir_are_quoted(env: Env, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    state = tmp_path / f"state $(touch {canary}/pwned7); touch {canary}/pwned8 '"
    runner = env.runner(state_dir=state)
    runner.start(later())
    wait_for(lambda: runner.probe().state is SchedulerState.RUNNING, 10, "the started scheduler")
    assert (state / "scheduler.log").exists()
    assert (state / "locks" / f"{NODE}.lock").exists()
    assert runner.stop().state is SchedulerState.STOPPED
    assert sorted(os.listdir(canary)) == []


def test_match_words_never_appear_on_a_remote_command_line(env: Env) -> None:
    """A single-word match must not make concurrent probes see each other as schedulers."""
    word = f"sfc_single_word_{env.token}"
    runners = [env.runner(scheduler_process_match=word) for _ in range(2)]
    runners.append(env.runner(scheduler_process_match=word, ssh_remote_command=""))
    results: list[ProbeResult] = []
    threads = [threading.Thread(target=lambda r=r: results.extend(r.probe() for _ in range(5))) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 15
    assert {r.state for r in results} == {SchedulerState.STOPPED}, [r for r in results if r.pids]
