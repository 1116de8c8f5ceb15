"""The exit channel with real processes: a scheduler's exit restarts it without waiting for the
poll (here 60 s), and nobody but a live leash of the node is heard on it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scheduler_failover_controller.exit_channel import MESSAGE, ShortPath, exit_socket_name
from scheduler_failover_controller.leash.records import leash_dir
from tests.process.harness import Cluster
from tests.process.test_failover import assert_never_two, started
from tests.process.test_self_mode import finish, on, self_cluster, switch_to
from tests.support.foreign import AS_NOBODY, can_run_as_nobody
from tests.support.waiting import holds_for, wait_for

pytestmark = pytest.mark.process

POLL = 60.0  # the 2016 default: a restart that waited for the poll would take up to a minute
SYSTEM_PYTHON = "/usr/bin/python3"  # nobody cannot read the test's virtualenv


def send_on_fd(fd: int) -> str:
    """A script that sends the leash's exact message on the connected socket it inherits as ``fd``."""
    return f"import socket; socket.socket(fileno={fd}).send({MESSAGE!r})"


@pytest.mark.parametrize("node_control", ["ssh", "self"])
def test_killed_scheduler_restarts_on_its_exit_at_poll_60(
    make_cluster: Callable[..., Cluster], tmp_path: Path, node_control: str
) -> None:
    url = f"sqlite:///{tmp_path / 'metastore.db'}"
    size = 2 if node_control == "ssh" else 1  # self mode on SQLite: one node per host
    settings: dict[str, Any] = {"node_control": node_control, "poll": POLL, "ttl": 8.0}
    cluster = started(make_cluster, url, size, **settings)
    (pid,) = cluster.observer.pids()
    os.kill(pid, signal.SIGKILL)
    # Far less than the poll: only the leash's message can have woken the cycle this early.
    wait_for(
        lambda: len(cluster.observer.current()) == 1 and cluster.observer.pids() != (pid,),
        POLL / 3,
        "a new scheduler, long before the next poll",
    )
    # The cycle's sentence is logged once the start is confirmed.
    wait_for(lambda: "restarted it in place (attempt 1/3" in cluster.log("n1"), 20, "the restart logged")
    assert "says the scheduler exited; probing now" in cluster.log("n1")
    assert_never_two(cluster)


def test_self_mode_a_killed_scheduler_on_a_standby_node_is_restarted_within_a_renewal_at_poll_60(
    make_cluster: Callable[..., Cluster], mariadb_url: str
) -> None:
    """n2's leash tells n2's controller, which reports at once; the active (n1) reads that report
    with its next renewal (every 2 s here) and restarts it, long before its next poll."""
    cluster = self_cluster(make_cluster, mariadb_url, size=2, poll=POLL, ttl=8.0)
    pid = switch_to(cluster, "n2")
    assert cluster.active() == "n1"
    mark = len(cluster.log("n1")), len(cluster.log("n2"))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: cluster.observer.pids() not in ((), (pid,)), POLL / 3, "a new scheduler, long before the poll")
    on(cluster, "n2")
    said = "scheduler was stopped on n2; restarted it in place"
    wait_for(lambda: said in cluster.log("n1")[mark[0] :], 20, "the active's restart logged")
    assert "says the scheduler exited; probing now" in cluster.log("n2")[mark[1] :]
    finish(cluster)


def _connected_to_exit_socket(cluster: Cluster, node: str) -> socket.socket:
    """A datagram socket connected (by the test, as root) to ``node``'s exit channel."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with ShortPath(leash_dir(cluster.tmp / "state"), exit_socket_name(node)) as where:
        sock.connect(where.path)
    return sock


def _cycles_logged(cluster: Cluster) -> int:
    """How many of n1's cycles have logged their sentence (the active's say so first)."""
    return cluster.log("n1").count("]: active (epoch")


@pytest.mark.skipif(not can_run_as_nobody(), reason="needs root and setpriv")
def test_exit_channel_ignores_other_users_and_processes_that_are_no_leash(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'metastore.db'}"
    cluster = started(make_cluster, url, 1, poll=POLL, ttl=8.0)
    (pid,) = cluster.observer.pids()
    wait_for(lambda: _cycles_logged(cluster) >= 1, 20, "the first cycle's sentence")
    cycles = _cycles_logged(cluster)
    path = leash_dir(cluster.tmp / "state") / exit_socket_name("n1")

    # nobody cannot even reach the socket by its path (the leash directory is the controller's).
    connect = f"import socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).connect({str(path)!r})"
    reach = subprocess.run(
        [*AS_NOBODY, SYSTEM_PYTHON, "-c", connect],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert reach.returncode != 0 and "PermissionError" in reach.stderr, reach

    # Given a socket already connected to it, nobody is heard as nobody: its message is dropped.
    with _connected_to_exit_socket(cluster, "n1") as sock:
        sent = subprocess.run(
            [*AS_NOBODY, SYSTEM_PYTHON, "-c", send_on_fd(sock.fileno())],
            pass_fds=(sock.fileno(),),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert sent.returncode == 0, sent.stderr
        wait_for(lambda: "ignored a message: sent by uid 65534" in cluster.log("n1"), 20, "nobody's message refused")

        # A process of the controller's own user that is no leash: dropped too.
        sock.send(MESSAGE)
        wait_for(lambda: "is not a live leash of this node" in cluster.log("n1"), 20, "a non-leash refused")

    # Neither woke the cycle (at poll 60 no cycle runs in these seconds) nor touched the scheduler.
    holds_for(
        lambda: _cycles_logged(cluster) == cycles and cluster.observer.pids() == (pid,),
        3,
        "no cycle woken and the scheduler kept",
    )
    assert "says the scheduler exited" not in cluster.log("n1")
    assert_never_two(cluster)
