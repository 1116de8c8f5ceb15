"""Drain, undrain and failback in the lab (self mode, MariaDB, 3 hosts, failback on): an operator
on another host drains the scheduler's host; the drain outlives a restart of that host's
controller; once undrained, the preferred host takes the scheduler back by a controlled
switchover and keeps it. The observer's two-scheduler check (``finish``) holds throughout.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.lab.scenarios import POLL, TTL, MakeLab, finish, settled
from tests.support.waiting import holds_for, wait_for

pytestmark = pytest.mark.lab

FAILBACK_DELAY = 2.0  # short, as the lab's other timings: a failback within seconds of the undrain


@pytest.mark.parametrize(
    ("lab_node_control", "lab_metastore"), [pytest.param("self", "mariadb", id="self-mariadb")], indirect=True
)
def test_drain_restart_undrain_and_failback(make_lab: MakeLab) -> None:
    lab = make_lab(config={"failback": "true", "failback_delay": f"{FAILBACK_DELAY:g}"})
    lab.boot()
    first = lab.observer.one()
    assert first is not None and first.node == "h1", lab.observer.describe()

    # Drained from h2 (its config, its CLI): the scheduler leaves h1 by a controlled switchover.
    began = time.monotonic()
    drained = lab.cli("drain", "h1", "--wait", "20", host="h2", timeout=60)
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert drained.stdout.startswith("h1 is drained: controlled switchover from h1 to "), drained.stdout
    wait_for(lambda: settled(lab) and lab.observer.current()[0].node != "h1", 10, "the scheduler placed off h1")
    off = lab.observer.first_after(began, lambda real: len(real) == 1 and real[0].node != "h1")
    assert off is not None
    to_elsewhere = off - began
    moved = lab.observer.one()
    assert moved is not None
    elsewhere = moved.node

    # h1's controller restarts (as `systemctl restart` does): h1 stays drained, nothing moves.
    h1 = lab.host("h1")
    h1.signal_controller(signal.SIGTERM)
    wait_for(lambda: not h1.controller_running(), 20, "h1's controller to stop")
    h1.restart_controller()
    wait_for(lambda: len(lab.store.controllers()) == len(lab.hosts), 20, "every controller registered")
    holds_for(lambda: lab.observer.current() == (moved,), TTL + 2 * POLL, f"the scheduler kept on {elsewhere}")
    status = json.loads(lab.cli("status", "--json").stdout)
    assert status["drained"] == ["h1"], status

    # Undrained with failback on: back to h1, the first-listed host, once healthy for the delay.
    began = time.monotonic()
    undrained = lab.cli("undrain", "h1", host="h3")
    assert undrained.returncode == 0 and undrained.stdout.strip() == "undrained h1", undrained.stdout
    wait_for(lambda: settled(lab) and lab.observer.current()[0].node == "h1", 30, "the failback to h1")
    back_at = lab.observer.first_after(began, lambda real: len(real) == 1 and real[0].node == "h1")
    assert back_at is not None
    to_failback = back_at - began
    assert to_failback >= FAILBACK_DELAY, f"failback {to_failback:.2f}s after the undrain, before failback_delay"
    back = lab.observer.one()
    assert back is not None

    # No loop: the scheduler stays on h1 for several failback delays.
    holds_for(lambda: lab.observer.current() == (back,), 3 * FAILBACK_DELAY, "the scheduler kept on h1")
    failbacks = [e.message for e in lab.events() if "failback to" in e.message]
    assert len(failbacks) == 1, failbacks
    why = f"failback to h1, more preferred than {elsewhere}: controlled switchover from {elsewhere} to h1"
    assert why in failbacks[0], failbacks
    finish(
        lab,
        "drain, controller restart, undrain and failback",
        note=f"drain -> running on {elsewhere} {to_elsewhere:.2f}s; undrain -> back on h1 {to_failback:.2f}s",
    )
