"""A lost scheduler host at the timing defaults (lease_ttl and everything derived from it as a
user gets them): replaced within 15 s plus the scheduler's start.

The other lab scenarios run at a short lease (scenarios.TTL) to be quick; this one checks the
defaults' promise (README, "Timing defaults"), in self mode, where it is slowest: a crashed
standby's placement waits for the active to see it expired and for the new node to take it up.
At 2016's poll of 60 s the active's next cycle comes long after the placement ran out: the
renewal that reads it expired wakes the cycle.
"""

from __future__ import annotations

import time

import pytest

from scheduler_failover_controller.config import KEYS
from tests.lab.scenarios import MakeLab, cases, finish, recovered, scheduler_moved_to_h2

pytestmark = pytest.mark.lab

LOST_HOST_BOUND = 15.0  # the defaults' promise; the stand-in scheduler starts at once


@pytest.mark.parametrize(
    ("crashed", "poll"),
    [
        pytest.param("h1", None, id="active-host", marks=pytest.mark.manual),
        pytest.param("h2", None, id="standby-host", marks=pytest.mark.manual),
        pytest.param("h2", "60", id="standby-host-poll-60"),  # CI's pick (self mode, MariaDB): about 15 s
    ],
)
@cases(ssh=(), self_in_ci=True)
def test_scheduler_host_crash_at_the_default_timing(make_lab: MakeLab, crashed: str, poll: str | None) -> None:
    """h1 is active; the scheduler runs on ``crashed`` (h1 itself, or h2 after a switchover);
    that host crashes (every process at once): another host runs the scheduler within 15 s."""
    timing = {key: KEYS[key].default or "" for key in ("poll_frequency", "lease_ttl")}
    lab = make_lab(config={**timing, "poll_frequency": poll or timing["poll_frequency"]})
    config = lab.config()
    assert (config.lease_ttl, config.renew_interval) == (8.0, 2.0), "the registry's defaults changed"
    if crashed == "h2":
        # the active's last cycle was the switchover's: its next one is a poll away
        old = scheduler_moved_to_h2(lab)
    else:
        lab.boot()
        found = lab.observer.one()
        assert found is not None and found.node == "h1"
        old = found
    since = time.monotonic()
    lab.host(crashed).crash()
    took = recovered(lab, since, old, timeout=2 * LOST_HOST_BOUND, elsewhere=True)
    what = "active" if crashed == "h1" else "a standby"
    finish(lab, f"scheduler host ({what}) crashed, lease_ttl 8, poll {config.poll_frequency:g}", took, LOST_HOST_BOUND)
