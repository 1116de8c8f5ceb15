"""SSHNodeRunner against a real sshd on 127.0.0.1 (see conftest.py): probe, start, stop, host keys,
authentication, timeouts, connection reuse, quoting, the ps fallback and starts that timed out.

The "remote" node is this machine reached over SSH, so every remote process is also visible to a
local probe: each remote result is compared with the local one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from scheduler_failover_controller.controller.cycle import Controller
from scheduler_failover_controller.exceptions import CommandFailed, NodeUnreachable
from scheduler_failover_controller.nodes import LocalNodeRunner, NodeRunner, SSHNodeRunner, make_runners
from scheduler_failover_controller.nodes import ssh as ssh_module
from scheduler_failover_controller.probe_result import ProbeResult, SchedulerState
from tests.ssh.conftest import CONTROLLER, FAKE, NODE, PYTHON, Env, Sshd, later, spawn_remote
from tests.support.ports import free_port
from tests.support.waiting import holds_for, wait_for
from tests.unit.fakes import FakeStore, RecordingAlerter

MODES = {"project": {}, "fallback": {"ssh_remote_command": "sfc_no_such_command_here"}}


@pytest.fixture(params=sorted(MODES))
def mode(request: pytest.FixtureRequest) -> dict[str, str]:
    """Probe through the project's own ``probe --json`` on the node, or through the ps fallback."""
    return dict(MODES[request.param])


def spawn(env: Env, node: str = NODE, *extra: str) -> psutil.Process:
    """A stand-in scheduler started through a plain SSH session; returns its (local) process."""
    before = {p.pid for p in env.schedulers(node)}
    spawn_remote(env.sshd, f"{PYTHON} {FAKE} --cluster {env.token} --node {node} {' '.join(extra)}")
    found: list[psutil.Process] = []

    def up() -> bool:
        found[:] = [p for p in env.schedulers(node) if p.pid not in before]
        return bool(found) and all(p.children() for p in found)

    wait_for(up, 10, "the stand-in scheduler")
    return found[0]


def local_probe(runner: SSHNodeRunner) -> ProbeResult:
    return LocalNodeRunner(runner.node, runner.config).probe()


def tree(proc: psutil.Process) -> list[psutil.Process]:
    return [proc, *proc.children(recursive=True)]


# --- probing --------------------------------------------------------------------------------------


def test_probe_stopped_equals_local(env: Env, mode: dict[str, str]) -> None:
    runner = env.runner(**mode)
    result = runner.probe()
    assert result == ProbeResult(NODE, SchedulerState.STOPPED)
    assert result == local_probe(runner)
    assert runner.remote_project is (not mode)


def test_probe_running_equals_local(env: Env, mode: dict[str, str]) -> None:
    proc = spawn(env)
    runner = env.runner(**mode)
    result = runner.probe()
    assert result == ProbeResult(NODE, SchedulerState.RUNNING, (proc.pid,))
    assert result == local_probe(runner)


def test_probe_counts_tree_roots_only_and_each_scheduler(env: Env, mode: dict[str, str]) -> None:
    first = spawn(env)
    second = spawn(env)
    runner = env.runner(**mode)
    result = runner.probe()
    # each stand-in has a child (not counted); two roots are two schedulers, oldest first
    assert result.state is SchedulerState.RUNNING
    assert set(result.pids) == {first.pid, second.pid}
    assert result.detail == "2 scheduler processes"
    assert result == local_probe(runner)


def test_probe_of_a_stopped_scheduler_is_unhealthy(env: Env, mode: dict[str, str]) -> None:
    proc = spawn(env)
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        runner = env.runner(**mode)
        result = runner.probe()
        assert result == ProbeResult(NODE, SchedulerState.UNHEALTHY, (proc.pid,), f"pid {proc.pid} is stopped")
        assert result == local_probe(runner)
    finally:
        os.kill(proc.pid, signal.SIGCONT)


def test_probe_ignores_other_nodes_and_other_clusters(env: Env, mode: dict[str, str]) -> None:
    spawn(env, "other-node")
    runner = env.runner(**mode)
    assert runner.probe().state is SchedulerState.STOPPED


def test_empty_remote_command_always_uses_the_fallback(env: Env) -> None:
    proc = spawn(env)
    runner = env.runner(ssh_remote_command="")
    assert runner.probe() == ProbeResult(NODE, SchedulerState.RUNNING, (proc.pid,))
    assert runner.remote_project is False


# --- start and stop -------------------------------------------------------------------------------


def test_start_then_running_then_stop_kills_the_whole_tree(env: Env, mode: dict[str, str]) -> None:
    runner = env.runner(**mode)
    runner.start(later())
    wait_for(lambda: runner.probe().state is SchedulerState.RUNNING, 10, "the started scheduler")
    [root] = env.schedulers()
    wait_for(lambda: len(tree(root)) == 2, 10, "the stand-in's child")  # it forks right after starting
    procs = tree(root)
    leashed = not mode  # under a leash where the project is installed; the fallback starts it bare
    expected = ProbeResult(NODE, SchedulerState.RUNNING, (root.pid,), leashed=leashed)
    assert runner.probe() == expected == local_probe(runner)
    result = runner.stop()
    assert result == ProbeResult(NODE, SchedulerState.STOPPED)
    for proc in procs:
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    assert local_probe(runner).state is SchedulerState.STOPPED
    # its output went to the log in state_dir (on the node)
    assert (env.tmp / "state" / "scheduler.log").exists()


def test_start_is_detached_from_the_ssh_session(env: Env) -> None:
    runner = env.runner()
    runner.start(later())
    wait_for(lambda: bool(env.schedulers()), 10, "the started scheduler")
    [root] = env.schedulers()
    runner.close()  # the session ends; the scheduler must stay
    holds_for(root.is_running, 0.5, "the scheduler outliving its SSH session")
    assert root.pid not in {p.pid for s in env.sshd.processes() for p in s.children(recursive=True)}


def test_start_does_nothing_when_a_scheduler_runs(env: Env) -> None:
    proc = spawn(env)
    runner = env.runner()
    runner.start(later())
    holds_for(lambda: [p.pid for p in env.schedulers()] == [proc.pid], 0.5, "only the scheduler that was there")


def test_two_controllers_starting_at_once_start_one_scheduler(env: Env) -> None:
    runners = [env.runner(), env.runner(ssh_remote_command="sfc_no_such_command_here")]
    for runner in runners:
        assert runner.probe().state is SchedulerState.STOPPED  # both connected
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(runners))

    def start(runner: SSHNodeRunner) -> None:
        barrier.wait()
        try:
            runner.start(later())
        except CommandFailed as exc:  # "another controller is starting the scheduler" is fine
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    holds_for(lambda: len(env.schedulers()) == 1, 1.0, f"one scheduler ({errors})")
    assert all("another controller" in str(e) for e in errors)


def test_stop_of_a_stopped_node_is_stopped(env: Env, mode: dict[str, str]) -> None:
    assert env.runner(**mode).stop() == ProbeResult(NODE, SchedulerState.STOPPED)


def test_stop_kills_a_scheduler_that_ignores_sigterm(env: Env, mode: dict[str, str]) -> None:
    stubborn = env.tmp / "stubborn" / "fake_scheduler.py"  # the program the match names
    stubborn.parent.mkdir()
    stubborn.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)\n")
    spawn_remote(env.sshd, f"{PYTHON} {stubborn} --cluster {env.token} --node {NODE}")
    wait_for(lambda: bool(env.schedulers()), 10, "the stubborn scheduler")
    runner = env.runner(scheduler_stop_timeout=1, **mode)
    began = time.monotonic()
    assert runner.stop().state is SchedulerState.STOPPED
    assert time.monotonic() - began < 1 + 3 + 2
    assert not env.schedulers()


def test_stop_runs_the_configured_stop_command_first(env: Env) -> None:
    proc = spawn(env)
    marker = env.tmp / "stop command ran"
    runner = env.runner(airflow_scheduler_stop_command=f"touch '{marker}' && kill -TERM {proc.pid}")
    assert runner.stop().state is SchedulerState.STOPPED
    assert marker.exists()
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE


def test_stop_kills_what_the_stop_command_left(env: Env) -> None:
    proc = spawn(env)
    marker = env.tmp / "ran"
    runner = env.runner(airflow_scheduler_stop_command=f"touch {marker}")
    assert runner.stop().state is SchedulerState.STOPPED
    assert marker.exists()
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE


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


# --- connections ----------------------------------------------------------------------------------


def serve_processes(sshd: Sshd) -> list[psutil.Process]:
    """The ``probe --serve`` processes running in our sshd's sessions."""
    found = []
    for proc in sshd.processes():  # the listener and all below it
        try:
            if "--serve" in proc.cmdline():
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_probes_are_answered_by_one_server_process_per_connection(env: Env) -> None:
    proc = spawn(env)
    runner = env.runner()
    for _ in range(5):
        assert runner.probe() == ProbeResult(NODE, SchedulerState.RUNNING, (proc.pid,))
    [server] = serve_processes(env.sshd)
    assert env.match.replace("{node}", NODE) not in " ".join(server.cmdline())  # the match is in its environment
    assert runner.remote_project is True
    runner.close()  # its end of input: the server exits
    wait_for(lambda: not server.is_running() or server.status() == psutil.STATUS_ZOMBIE, 10, "the server to exit")


def test_a_dead_probe_server_is_replaced(env: Env) -> None:
    runner = env.runner()
    assert runner.probe().state is SchedulerState.STOPPED
    [server] = serve_processes(env.sshd)
    server.kill()
    proc = spawn(env)
    # the probe right after finds the server gone and answers with ps; the next one starts a new server
    assert runner.probe() == ProbeResult(NODE, SchedulerState.RUNNING, (proc.pid,))
    assert runner.probe() == ProbeResult(NODE, SchedulerState.RUNNING, (proc.pid,))
    wait_for(lambda: len(serve_processes(env.sshd)) == 1, 10, "a new server")
    assert runner.connections_opened == 1


def test_one_connection_is_reused_across_probes(env: Env, mode: dict[str, str]) -> None:
    runner = env.runner(**mode)
    accepted_before = env.sshd.log.read_text().count("Accepted publickey")
    for _ in range(5):
        assert runner.probe().state is SchedulerState.STOPPED
    runner.stop()
    assert runner.connections_opened == 1
    assert env.sshd.log.read_text().count("Accepted publickey") == accepted_before + 1


def test_parallel_probes_share_the_connection(env: Env) -> None:
    runner = env.runner()
    results: list[ProbeResult] = []
    threads = [threading.Thread(target=lambda: results.append(runner.probe())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [r.state for r in results] == [SchedulerState.STOPPED] * 8
    assert runner.connections_opened == 1


def test_connection_is_reopened_after_sshd_restarts(env: Env, sshd: Sshd) -> None:
    runner = env.runner()
    assert runner.probe().state is SchedulerState.STOPPED
    sshd.restart()
    # the old connection is broken; the next call opens a new one instead of failing
    assert runner.probe().state is SchedulerState.STOPPED
    assert runner.connections_opened == 2
    proc = spawn(env)
    assert runner.probe() == ProbeResult(NODE, SchedulerState.RUNNING, (proc.pid,))
    assert runner.connections_opened == 2


def test_down_then_up_again(env: Env, sshd: Sshd) -> None:
    runner = env.runner()
    assert runner.probe().state is SchedulerState.STOPPED
    sshd.stop()
    try:
        assert runner.probe().state is SchedulerState.UNKNOWN
    finally:
        sshd.start()
    assert runner.probe().state is SchedulerState.STOPPED


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


# --- a start that timed out ----------------------------------------------------------------------


def _lose_launch_answer(runner: SSHNodeRunner, monkeypatch: pytest.MonkeyPatch, *, run_it: bool) -> list[str]:
    """Make the launch command time out: after it ran (its answer lost), or before it was sent."""
    real = SSHNodeRunner._exec
    scripts: list[str] = []

    def exec_(self: SSHNodeRunner, conn: Any, script: str, deadline: Any, budget: float | None = None) -> Any:
        if "@@sfc-launched@@" in script and not scripts:
            scripts.append(script)
            if run_it:
                real(self, conn, script, deadline, budget)
            raise ssh_module.SSHFailure("timeout", "command did not finish within 3s (simulated)")
        return real(self, conn, script, deadline, budget)

    monkeypatch.setattr(SSHNodeRunner, "_exec", exec_)
    return scripts


def test_a_start_whose_answer_was_lost_counts_until_seen(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = env.runner()
    _lose_launch_answer(runner, monkeypatch, run_it=True)
    with pytest.raises(NodeUnreachable, match="may still come up"):
        runner.start(later())
    assert runner._pending
    # the next probe settles it: the start had run, so the scheduler is seen
    assert runner.probe().state is SchedulerState.RUNNING
    assert not runner._pending


def test_a_start_that_never_arrived_is_cancelled_for_good(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = env.runner()
    scripts = _lose_launch_answer(runner, monkeypatch, run_it=False)
    with pytest.raises(NodeUnreachable, match="may still come up"):
        runner.start(later())
    assert runner._pending
    assert runner.probe().state is SchedulerState.STOPPED  # settled: cancelled
    assert not runner._pending
    # the launch arrives late (a frozen sshd thawing): it must not start anything any more
    late = env.runner()
    deadline = ssh_module.Deadline(5)
    status, out, _err = late._session(deadline, lambda conn: late._exec(conn, scripts[0], deadline))
    assert "@@sfc-cancelled@@" in out and status != 0
    holds_for(lambda: not env.schedulers(), 0.5, "no scheduler from the late launch")


def test_a_start_after_one_that_launched_unseen_starts_nothing_more(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the chaos soak (PostgreSQL, a metastore restart): a start's answer was lost, the
    next start found it had launched but its scheduler did not show yet (a slow leash), and
    launched a second one on the same node: two schedulers for 0.5 s."""
    slow = f"sleep 2; exec {PYTHON} {FAKE} --cluster {env.token} --node {{node}}"  # shows 2 s late
    runner = env.runner(airflow_scheduler_start_command=slow)
    _lose_launch_answer(runner, monkeypatch, run_it=True)
    with pytest.raises(NodeUnreachable, match="may still come up"):
        runner.start(later())
    assert not env.schedulers()  # not yet
    runner.start(later())  # settles the first: it had run, so nothing more is launched
    assert not runner._pending
    wait_for(lambda: env.schedulers(), 15, "the first start's scheduler")
    holds_for(lambda: len(env.schedulers()) == 1, 3, "one scheduler on the node")


def test_a_script_whose_shell_dies_without_an_exit_status_is_a_failure_not_an_answer(env: Env) -> None:
    """paramiko reports -1 for a channel closed with no exit status (its connection closed under
    it by another call's deadline, or its shell killed): the script's outcome is unknown, so it
    must not pass for a status (a start taken as failed for good may still launch)."""
    runner = env.runner()
    deadline = ssh_module.Deadline(5)
    with pytest.raises(ssh_module.SSHFailure, match="ended without an exit status"):
        runner._session(deadline, lambda conn: runner._exec(conn, "kill -KILL $$\n", deadline))
    status, out, _err = runner._session(deadline, lambda conn: runner._exec(conn, "echo fine\n", deadline))
    assert (status, out) == (0, "fine\n")


def test_probe_does_not_call_a_pending_start_stopped_while_unreachable(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = env.runner(ssh_timeout=3)  # the settling probe after the thaw reconnects: room for a loaded machine
    _lose_launch_answer(runner, monkeypatch, run_it=False)
    with pytest.raises(NodeUnreachable):
        runner.start(later())
    pids = env.sshd.freeze()
    try:
        assert runner.probe().state is SchedulerState.UNKNOWN
    finally:
        env.sshd.thaw(pids)
    assert runner._pending  # still in doubt until settled on the node
    assert runner.probe().state is SchedulerState.STOPPED
    assert not runner._pending


# --- make_runners ---------------------------------------------------------------------------------


def test_make_runners_local_for_own_node_ssh_for_others(env: Env) -> None:
    runners = make_runners(env.config())
    assert isinstance(runners[CONTROLLER], LocalNodeRunner)
    assert isinstance(runners[NODE], SSHNodeRunner)
    runners = make_runners(env.config(local_nodes=NODE))
    assert isinstance(runners[NODE], LocalNodeRunner)


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
