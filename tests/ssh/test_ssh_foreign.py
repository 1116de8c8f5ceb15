"""Over SSH, the remote probe (``probe --serve``, and the ps fallback) applies the ownership rule:
another user's look-alike scheduler on the node is reported as foreign, never counted or killed."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from scheduler_failover_controller.probe_result import ForeignProcess, SchedulerState
from tests.ssh.conftest import NODE, Env
from tests.ssh.runner_support import spawn
from tests.support.foreign import Lookalikes, can_run_as_nobody, lookalike_dir
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(not can_run_as_nobody(), reason="needs root and setpriv")


@pytest.fixture
def lookalikes() -> Iterator[Lookalikes]:
    with lookalike_dir() as path:
        made = Lookalikes(path)
        try:
            yield made
        finally:
            made.close()


def test_nobodys_lookalike_is_foreign_and_survives_a_stop(
    env: Env, mode: dict[str, str], lookalikes: Lookalikes
) -> None:
    real = spawn(env)
    decoy = lookalikes.start(["--cluster", env.token, "--node", NODE])
    runner = env.runner(**mode)
    result = runner.probe()
    assert result.state is SchedulerState.RUNNING and result.pids == (real.pid,), result
    assert result.foreign == (ForeignProcess(decoy.pid, "nobody"),)
    after = runner.stop(grace=2)
    assert after.state is SchedulerState.STOPPED, after
    assert after.foreign == (ForeignProcess(decoy.pid, "nobody"),)
    wait_for(lambda: not psutil.pid_exists(real.pid) or real.status() == psutil.STATUS_ZOMBIE, 10, "the real one gone")
    assert decoy.poll() is None, "nobody's process was signalled"


def test_a_configured_scheduler_user_is_the_one_that_counts_there(
    env: Env, mode: dict[str, str], lookalikes: Lookalikes
) -> None:
    root_one = spawn(env)
    nobodys = lookalikes.start(["--cluster", env.token, "--node", NODE])
    runner = env.runner(scheduler_user="nobody", **mode)
    result = runner.probe()
    assert result.state is SchedulerState.RUNNING and result.pids == (nobodys.pid,), result
    assert result.foreign == (ForeignProcess(root_one.pid, "root"),)
    unknown = env.runner(scheduler_user="4294967294", **mode).probe()  # a uid: no user needed
    assert unknown.pids == () and len(unknown.foreign) == 2
