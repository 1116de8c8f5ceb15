"""Helpers of the SSHNodeRunner tests (tests/ssh/test_ssh_*.py) against the real sshd of conftest.py:
stand-in schedulers started through a plain SSH session, and the local probe each remote result is
compared with (the "remote" node is this machine reached over SSH)."""

from __future__ import annotations

import psutil

from scheduler_failover_controller.nodes import LocalNodeRunner, SSHNodeRunner
from scheduler_failover_controller.probe_result import ProbeResult
from tests.ssh.conftest import FAKE, NODE, PYTHON, Env, spawn_remote
from tests.support.waiting import wait_for


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
