"""Quiet logs, for real: a steady controller at poll 0.2 writes (almost) nothing at INFO over many
cycles, and a change (its scheduler killed and restarted) is logged."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from tests.process.harness import Cluster
from tests.support.waiting import holds_for, wait_for

POLL = 0.2
STEADY = 3.0  # seconds watched: 15 cycles


def _info_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if " INFO " in line]


def test_a_steady_controller_is_quiet_and_a_change_is_logged(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 2, poll=POLL, ttl=3.0)
    cluster.config.write_text(cluster.config.read_text().replace("logging_level = DEBUG", "logging_level = INFO"))
    cluster.observer.start()
    for node in cluster.nodes:
        cluster.start(node)
    wait_for(lambda: len(cluster.observer.current()) == 1, 30, "the scheduler running")
    first = cluster.observer.current()[0].pid
    for node in cluster.nodes:  # each controller has said its first decision
        wait_for(lambda node=node: "standby: " in cluster.log(node) or "active (epoch" in cluster.log(node), 30, node)  # type: ignore[misc]
    # Settled: the scheduler has run unchanged for a while (elections, the start, the standby's first word).
    holds_for(lambda: [s.pid for s in cluster.observer.current()] == [first], 2.0, "the scheduler unchanged")
    before = {node: len(_info_lines(cluster.log(node))) for node in cluster.nodes}
    holds_for(lambda: [s.pid for s in cluster.observer.current()] == [first], STEADY, "a steady state")
    added = {node: _info_lines(cluster.log(node))[before[node] :] for node in cluster.nodes}
    # 15 cycles each: a line per cycle would be 15 per controller; a summary is due after 600 s only.
    assert all(not lines for lines in added.values()), added
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: [s.pid for s in cluster.observer.current()] not in ([], [first]), 10, "the restart")
    after = [s.pid for s in cluster.observer.current()]
    wait_for(
        lambda: any(f"(pid {after[0]})" in line for node in cluster.nodes for line in _info_lines(cluster.log(node))),
        10,
        "the change logged at INFO, naming the new scheduler",
    )
    holds_for(lambda: [s.pid for s in cluster.observer.current()] == after, 1.0, "the new scheduler steady")
    marks = {node: len(_info_lines(cluster.log(node))) for node in cluster.nodes}
    holds_for(lambda: [s.pid for s in cluster.observer.current()] == after, 2.0, "quiet again")
    assert {node: len(_info_lines(cluster.log(node))) for node in cluster.nodes} == marks
