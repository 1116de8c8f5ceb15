"""The multi-host lab with ``node_control = self``: hosts that run no sshd at all, each controller
acting on its own host only (docs/design.md, 5a). The same observer and figures as test_lab.py.

A first set of its scenarios; the rest of test_lab.py's in self mode is left for later.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.lab.harness import Lab
from tests.lab.test_lab import POLL, START_TIMEOUT, TTL, MakeLab, finish, recovered
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab

SELF = {"node_control": "self"}


def no_sshd(make_lab: MakeLab) -> Lab:
    lab = make_lab(config=SELF)
    lab.boot()
    for host in lab.hosts:
        assert host.sshd_processes() == [], f"{host.name} runs an sshd"
    return lab


def takeover_bound_self() -> float:
    """L1 for a lost scheduler host in self mode: lease_ttl (its placement runs out), a poll, a
    stale report (2 renewals and 3 metastore calls, about a second here), the start."""
    return TTL + 2 * POLL + 1.0 + START_TIMEOUT


def test_self_scheduler_killed_on_active_node(make_lab: MakeLab) -> None:
    lab = no_sshd(make_lab)
    old = lab.observer.one()
    assert old is not None and old.node == "h1"
    since = time.monotonic()
    os.kill(old.pid, signal.SIGKILL)
    took = recovered(lab, since, old, timeout=15)
    finish(lab, "self mode: scheduler killed on the active node", took, POLL + START_TIMEOUT + 0.5)


def test_self_scheduler_host_crashed(make_lab: MakeLab) -> None:
    """The scheduler runs on h2 (a standby); h2 crashes: its placement runs out, another host starts one."""
    lab = no_sshd(make_lab)
    lab.store.request_switchover("h2", "controlled")
    wait_for(lambda: [s.node for s in lab.observer.current()] == ["h2"], 20, "the scheduler on h2")
    old = lab.observer.one()
    assert old is not None
    since = time.monotonic()
    lab.host("h2").crash()
    took = recovered(lab, since, old, timeout=30, elsewhere=True)
    finish(lab, "self mode: scheduler host crashed", took, takeover_bound_self())
