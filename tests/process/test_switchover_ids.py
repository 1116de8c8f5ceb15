"""Switchovers asked in quick succession, by real CLI processes against real controllers: each CLI
reports the outcome of its own request, found by the request's id, never another request's."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.process.harness import SFC, ZK_PREFIX, Cluster
from tests.process.test_failover import assert_never_two, started
from tests.support.waiting import wait_for

pytestmark = pytest.mark.process


@pytest.fixture(params=["sqlite", "zookeeper"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metastore.db'}"
    return ZK_PREFIX + str(request.getfixturevalue("zk_hosts"))


@contextmanager
def asking(cluster: Cluster) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Starts ``switchover`` CLIs in the background; any still running at the end is killed (by pid)."""
    procs: list[subprocess.Popen[str]] = []

    def ask(target: str) -> subprocess.Popen[str]:
        args = [*SFC, "--config", str(cluster.config), "switchover", "--to", target, "--wait", "60"]
        procs.append(
            subprocess.Popen(args, env=cluster.env("n1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
        return procs[-1]

    try:
        yield ask
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=15)


def pending(cluster: Cluster) -> Any:
    """The pending switchover request as ``metadata --json`` shows it (None: none)."""
    out = cluster.cli("metadata", "--json")
    return json.loads(out.stdout).get("switchover_requested") if out.returncode == 0 else "unreadable"


def finished(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Exit code, output, and the last line of the errors (ZooKeeper without auth warns before it)."""
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out.strip(), (err.strip().splitlines() or [""])[-1]


def test_two_quick_switchovers_each_get_their_own_outcome(make_cluster: Callable[..., Cluster], url: str) -> None:
    cluster = started(make_cluster, url, 3)
    with asking(cluster) as ask:
        # Held while paused: the second request takes the place of the first before either is carried out.
        assert cluster.cli("pause").returncode == 0
        first = ask("n2")
        wait_for(lambda: (pending(cluster) or {}).get("to") == "n2", 30, "the first request")
        second = ask("n3")
        wait_for(lambda: (pending(cluster) or {}).get("to") == "n3", 30, "the second request")
        assert cluster.cli("resume").returncode == 0
        code, out, err = finished(second)
        assert code == 0, err
        assert out.startswith("controlled switchover from n1 to n3: stopped ['n1'], started"), out
        code, out, err = finished(first)
        assert code == 1 and out == ""
        assert (
            err == "Error: the switchover request to n2 was replaced by another one (to n3) before it was carried out"
        )
        # Two more, one right after the other: each reports its own move.
        third = ask("n1")
        code, out, err = finished(third)
        assert code == 0 and out.startswith("controlled switchover from n3 to n1: "), (out, err)
        fourth = ask("n2")
        code, out, err = finished(fourth)
        assert code == 0 and out.startswith("controlled switchover from n1 to n2: "), (out, err)
    assert cluster.status().get("scheduler_node") == "n2"
    history = json.loads(cluster.cli("history", "--json").stdout)
    requests = [e["request_id"] for e in history if e["kind"] == "switchover"]
    outcomes = [e["request_id"] for e in history if e["kind"].startswith("switchover_")]
    assert len(set(requests)) == 4 and "" not in requests
    assert outcomes == requests[1:]  # the first was replaced: it has no outcome
    wait_for(lambda: len(cluster.observer.current()) == 1, 10, "the scheduler on n2")
    cluster.observer.stop()
    assert_never_two(cluster)
