"""SSHNodeRunner against an sshd that is not there, frozen, or behind a resolver that fails or
hangs: the node is UNKNOWN within ssh_timeout, one slow node does not hold up the cycle, and
it is said once at WARNING.

The "remote" node is this machine reached over SSH (tests/ssh/conftest.py), so every remote
process is also visible to a local probe (tests/ssh/runner_support.py).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from scheduler_failover_controller.controller.cycle import Controller
from scheduler_failover_controller.exceptions import NodeUnreachable
from scheduler_failover_controller.nodes import LocalNodeRunner, NodeRunner, SSHNodeRunner, make_runners
from scheduler_failover_controller.probe_result import SchedulerState
from tests.ssh.conftest import CONTROLLER, NODE, Env, later
from tests.support.ports import free_port
from tests.support.waiting import holds_for
from tests.unit.fakes import FakeStore, RecordingAlerter

# --- unreachable nodes and timeouts --------------------------------------------------------------


def test_closed_port_is_unknown_at_once(env: Env) -> None:
    runner = env.runner(ssh_port=free_port())
    began = time.monotonic()
    result = runner.probe()
    assert time.monotonic() - began < 2
    assert result.state is SchedulerState.UNKNOWN
    assert "cannot connect" in result.detail
    assert result.unreachable  # no answer at all: what fence_command may act on
    with pytest.raises(NodeUnreachable):
        runner.stop()


def test_name_that_does_not_resolve_is_unknown(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    config = env.config(scheduler_nodes_in_cluster=f"{CONTROLLER},master-b")
    result = SSHNodeRunner("master-b", config).probe()
    assert result.state is SchedulerState.UNKNOWN
    assert "cannot resolve master-b" in result.detail


def test_hanging_resolver_does_not_block_past_the_timeout(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hang(*_args: Any, **_kwargs: Any) -> Any:
        release.wait(30)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    config = env.config(scheduler_nodes_in_cluster=f"{CONTROLLER},master-b", ssh_timeout=1)
    began = time.monotonic()
    try:
        result = SSHNodeRunner("master-b", config).probe()
    finally:
        release.set()
    assert time.monotonic() - began < 1.5
    assert result.state is SchedulerState.UNKNOWN
    assert "cannot resolve master-b within 1s" in result.detail


def test_frozen_sshd_makes_probe_unknown_within_the_timeout(env: Env, mode: dict[str, str]) -> None:
    runner = env.runner(ssh_timeout=2, **mode)
    assert runner.probe().state is SchedulerState.STOPPED  # connected: the frozen one is reused
    pids = env.sshd.freeze()
    try:
        for what, subject in (("reused connection", runner), ("new connection", env.runner(ssh_timeout=2, **mode))):
            began = time.monotonic()
            result = subject.probe()
            took = time.monotonic() - began
            assert result.state is SchedulerState.UNKNOWN, what
            assert result.detail.startswith("ssh: "), what
            assert 1.5 <= took < 2.7, (what, took)
    finally:
        env.sshd.thaw(pids)
    assert runner.probe().state is SchedulerState.STOPPED  # reconnected
    assert runner.connections_opened == 2


def test_frozen_sshd_makes_start_and_stop_unreachable_within_their_bound(env: Env) -> None:
    runner = env.runner(ssh_timeout=1, scheduler_stop_timeout=1)
    assert runner.probe().state is SchedulerState.STOPPED
    pids = env.sshd.freeze()
    try:
        # each step (connecting, opening a channel) gives up after ssh_timeout
        began = time.monotonic()
        with pytest.raises(NodeUnreachable, match="within 1s"):
            runner.start(later())  # on the frozen connection
        assert time.monotonic() - began < 1.7
        began = time.monotonic()
        with pytest.raises(NodeUnreachable, match="within 1s"):
            runner.stop()  # on a new connection: no banner
        assert time.monotonic() - began < 1.7
    finally:
        env.sshd.thaw(pids)
    # the start never reached the node (it timed out before the launch)
    holds_for(lambda: not env.schedulers(), 1.0, "no scheduler on the node")


def test_one_slow_node_does_not_hold_up_the_cycle(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller probes in parallel; a frozen node costs at most ssh_timeout, once."""
    config = env.config(
        scheduler_nodes_in_cluster=f"{CONTROLLER},{NODE},127.0.0.2,127.0.0.3",
        ssh_timeout=1,
    )
    runners: dict[str, NodeRunner] = make_runners(config)
    assert isinstance(runners[CONTROLLER], LocalNodeRunner)
    # 127.0.0.2 and .3 are this sshd too (it listens on 127.0.0.1 only: they are refused at once)
    store = FakeStore()
    controller = Controller(config, store, runners, RecordingAlerter(config))
    try:
        assert runners[NODE].probe().state is SchedulerState.STOPPED
        pids = env.sshd.freeze()
        try:
            began = time.monotonic()
            decision = controller.run_cycle()
            took = time.monotonic() - began
        finally:
            env.sshd.thaw(pids)
        # the lease was renewed before any probe (after the cluster's node_control was claimed)
        assert next(c for c in store.calls if c != "claim_node_control") == "acquire_or_renew", store.calls
        assert took < 1 + 1.0, (took, decision)
        assert controller.last_probes[NODE].state is SchedulerState.UNKNOWN
        assert controller.last_probes["127.0.0.2"].state is SchedulerState.UNKNOWN
        assert "cannot connect" in controller.last_probes["127.0.0.2"].detail
    finally:
        controller._pool.shutdown(wait=True)
        for runner in runners.values():
            runner.close()


def test_an_unreachable_node_is_a_warning_once_and_reachable_again_is_info(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A node whose probes time out is said at WARNING when it turns unknown, not every cycle."""
    import logging

    runner = env.runner(ssh_timeout=3)  # the probe after the thaw reconnects: room for a loaded machine
    assert runner.probe().state is SchedulerState.STOPPED
    pids = env.sshd.freeze()
    try:
        with caplog.at_level(logging.DEBUG, logger="scheduler_failover_controller"):
            for _ in range(3):
                assert runner.probe().state is SchedulerState.UNKNOWN
    finally:
        env.sshd.thaw(pids)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unreachable over SSH" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="scheduler_failover_controller"):
        assert runner.probe().state is SchedulerState.STOPPED
    assert any("reachable over SSH again" in r.getMessage() for r in caplog.records), caplog.text
