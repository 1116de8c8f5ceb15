"""Fence, then start, in the lab (self mode, MariaDB): the host that runs the scheduler is cut off
(its bridge port down: its controller reaches nothing, its leash keeps the scheduler up until the
placement's deadline), the active's ``fence_command`` has the lab's power switch kill that host
(its PID namespace's PID 1: tests/lab/power.py), and the scheduler starts elsewhere at once,
before the cut-off host's placement could have expired (docs/design.md, 5.3).

The order is checked, not a duration: the old scheduler gone before the new one runs (observer),
the fence's event before the move's, and the move before the old placement's expiry (both on the
metastore server's clock). The recovery time is recorded with the lab's figures.
"""

from __future__ import annotations

import time

import pytest

from tests.lab.power import PowerSwitch
from tests.lab.scenarios import MakeLab, finish, recovered, scheduler_moved_to_h2
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab

LEASE = 10.0  # longer than the lab's 3 s: the fence (two looks at a stale report) must be able to beat it
SETTINGS = {"lease_ttl": f"{LEASE:g}", "metastore_timeout": "1", "ssh_timeout": "5", "fence_command": "/bin/false"}


@pytest.mark.parametrize(
    ("lab_node_control", "lab_metastore"), [pytest.param("self", "mariadb", id="self-mariadb")], indirect=True
)
def test_a_cut_off_scheduler_host_is_powered_off_and_replaced_before_its_placement_ends(make_lab: MakeLab) -> None:
    lab = make_lab(config=SETTINGS)
    power = PowerSwitch(lab)
    try:
        power.install()
        old = scheduler_moved_to_h2(lab)
        since = time.monotonic()
        lab.partition("h2")
        frozen = lab.state().placement  # a renewal still in flight could only make it later
        assert frozen.node == "h2" and frozen.valid, frozen
        took = recovered(lab, since, old, timeout=3 * LEASE, elsewhere=True)
        wait_for(lambda: any("fence_command fenced h2" in e.message for e in lab.events()), 15, "the move's event")
        events = lab.events()
    finally:
        power.close()
    assert [name for name, _at in power.fenced] == ["h2"] and not lab.host("h2").alive
    said = [e.message for e in events]
    fence = said.index("fence_command for h2 succeeded")
    move = next(i for i, text in enumerate(said) if "fence_command fenced h2" in text)
    assert fence < move and events[move].kind == "move", said[-8:]
    assert events[move].at < frozen.expires_at, (events[move].at, frozen.expires_at)  # not waited for
    gone_at = lab.observer.first_after(since, lambda real: all(s.pid != old.pid for s in real))
    new_at = lab.observer.first_after(since, lambda real: any(s.node != "h2" for s in real))
    assert gone_at is not None and new_at is not None and gone_at <= new_at
    _host, off_at = power.fenced[0]
    left = frozen.expires_at - events[move].at
    finish(
        lab,
        "scheduler host cut off, powered off by fence_command",
        took,
        LEASE,
        note=f"powered off {off_at - since:.2f}s after the cut; {left:.1f}s of its placement not waited for",
    )
