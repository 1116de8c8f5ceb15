"""Lab scenarios of their own for ``node_control = self`` (hosts with no sshd at all, each
controller acting on its own host only; docs/design.md, 5a), a metastore restart in both modes,
and the README's move of a running cluster from ssh to self and back. The scenarios shared with
ssh mode are parametrized by mode in test_lab.py and test_self_fencing.py (scenarios.cases).
Same observer, checks and figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import pytest

from tests.lab.harness import Lab
from tests.lab.scenarios import (
    ALL,
    POLL,
    TTL,
    MakeLab,
    cases,
    finish,
    finish_without_outage,
    recovered,
    scheduler_moved_to_h2,
    settled,
    takeover_bound,
)
from tests.lab.tools import METASTORE_IP
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab


@cases(ssh=())
def test_scheduler_host_crashed_while_a_standby(make_lab: MakeLab) -> None:
    """The scheduler runs on h2 (a standby); h2 crashes: its placement runs out, another host starts one."""
    lab = make_lab()
    old = scheduler_moved_to_h2(lab)
    since = time.monotonic()
    lab.host("h2").crash()
    took = recovered(lab, since, old, timeout=30, elsewhere=True)
    assert lab.active() == "h1"
    finish(lab, "scheduler host (a standby) crashed", took, takeover_bound(lab))


@cases(ssh=())
def test_active_host_drops_what_the_metastore_sends(make_lab: MakeLab) -> None:
    """One-way partition: h1 (active, scheduler) drops every packet from the metastore host; what
    it sends still arrives. It can renew nothing, so it fences itself before its placement runs
    out, and another host starts the scheduler; healed, h1 comes back as a standby."""
    lab = make_lab()
    lab.boot()
    old = lab.observer.one()
    assert old is not None and old.node == "h1"
    h1 = lab.host("h1")
    since = time.monotonic()
    h1.iptables("-A", "INPUT", "-s", METASTORE_IP, "-j", "DROP")
    try:
        took = recovered(lab, since, old, timeout=30, elsewhere=True)
        gone_at = lab.observer.first_after(since, lambda real: all(s.pid != old.pid for s in real))
        new_at = lab.observer.first_after(since, lambda real: any(s.node != "h1" for s in real))
        assert gone_at is not None and new_at is not None and gone_at < new_at
    finally:
        h1.iptables("-D", "INPUT", "-s", METASTORE_IP, "-j", "DROP")
    mark = len(h1.log())
    wait_for(lambda: "standby: h" in h1.log()[mark:], 20, "h1 back as a standby")
    time.sleep(2 * POLL + 1)
    assert len(lab.observer.current()) == 1, lab.observer.describe()
    finish(
        lab,
        "active host drops the metastore's packets (one-way)",
        took,
        takeover_bound(lab),
        note=f"fenced {gone_at - since:.2f}s, new start {new_at - since:.2f}s after the cut",
    )


@cases(ssh=())
def test_controller_killed_and_restarted_adopts_its_scheduler(make_lab: MakeLab) -> None:
    """h1's controller (active, its scheduler on h1) is SIGKILLed and started again at once: the
    leash keeps the scheduler up meanwhile, and the new controller adopts it (same pid, no
    outage), whoever holds the lease by then.

    With a lease of its own: the restart must be done within the leash's deadline, which the
    lab's 3 s lease does not leave (a controller takes about 2 s from its start to its first
    cycle: interpreter, imports, two renewal intervals watching its registry row).
    """
    lease = 8.0
    lab = make_lab(config={"lease_ttl": f"{lease:g}"})
    lab.boot()
    old = lab.observer.one()
    assert old is not None and old.node == "h1"
    h1 = lab.host("h1")
    h1.kill_controller()
    h1.restart_controller()
    wait_for(lambda: len(lab.store.controllers()) == len(lab.hosts), 20, "every controller registered")
    time.sleep(lease + 2 * POLL)  # past the placement deadline the killed controller last gave its leash
    assert lab.observer.current() == (old,), lab.observer.describe()
    assert settled(lab)
    finish_without_outage(lab, "controller SIGKILLed and restarted: adopts its scheduler", note="same pid")


@cases(ssh=("mariadb",), ssh_in_ci=False)
def test_metastore_restarted(make_lab: MakeLab) -> None:
    """The metastore server is stopped (as an operator's restart does) and started again on the
    same address and data. h1 fences if the server stays away longer than its placement allows;
    once the server serves again, one scheduler runs within the takeover bound, never two."""
    lab = make_lab()
    lab.boot()
    old = lab.observer.one()
    assert old is not None and old.node == "h1"
    since = time.monotonic()
    lab.site.restart(down=TTL + 1)  # away long enough that every placement runs out
    back_at = time.monotonic()
    with contextlib.suppress(AssertionError):  # judged below, once the figures are on record
        wait_for(lambda: settled(lab), 30, "one scheduler, placed where it runs")
    gone = lab.observer.first_after(since, lambda real: not real)  # the history holds changes only
    back = None if gone is None else lab.observer.first_after(gone, lambda real: len(real) == 1)
    took = 0.0 if gone is None else None if back is None else max(0.0, back - back_at)
    fenced = gone is not None
    finish(
        lab,
        "metastore restarted",
        took,
        takeover_bound(lab),
        note=f"server away {back_at - since:.1f}s; scheduler {'fenced' if fenced else 'kept'} meanwhile",
    )


def move_cluster(lab: Lab, to: str) -> None:
    """The README's procedure to move a running cluster to ``node_control = to``: pause, record the
    new value, change every config and restart every controller (each within lease_ttl; the one
    beside the scheduler first), check that every master runs a controller, resume."""
    assert lab.cli("pause").returncode == 0
    wait_for(lambda: all(c.paused for c in lab.store.controllers()), 10, "every controller to act on the pause")
    for host in lab.hosts:
        host.set_setting("node_control", to)
    recorded = lab.cli("node_control", to)
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    running = lab.observer.one()
    assert running is not None, lab.observer.describe()
    where = running.node
    for host in sorted(lab.hosts, key=lambda h: h.name != where):
        host.kill_controller()  # a controller of the old value exits 2 by itself meanwhile
        host.restart_controller()
    wait_for(lambda: len(lab.store.controllers()) == len(lab.hosts), 20, "every controller registered")

    def ready() -> bool:
        """status: every master runs a controller of the new value; in self mode also the
        scheduler, by its node's report. (In ssh mode an active elected while paused probes
        nothing until the resume.)"""
        status = lab.cli("status", "--json")
        data = json.loads(status.stdout)
        assert data["node_control"] == to, status.stdout
        hosts = {c["host"] for c in data["controllers"] if c["heartbeat_age_s"] < lab.config().lease_ttl}
        shown = any(n["host"] == where and n["scheduler"] == "running" for n in data["nodes"])
        return hosts == {h.name for h in lab.hosts} and (shown or to == "ssh")

    wait_for(ready, 15, f"status to show every controller ({to}) and the scheduler on {where}", interval=0.5)
    resumed = lab.cli("resume")
    assert resumed.returncode == 0, resumed.stderr
    wait_for(lambda: not any(c.paused for c in lab.store.controllers()), 10, "every controller to resume")


def scheduler_kill_recovers_in_place(lab: Lab) -> float:
    old = lab.observer.one()
    assert old is not None
    since = time.monotonic()
    os.kill(old.pid, signal.SIGKILL)
    took = recovered(lab, since, old, timeout=15)
    new = lab.observer.one()
    assert new is not None and new.node == old.node
    return took


@pytest.mark.manual  # about 45 s: beyond the lab lane's share for self mode
@pytest.mark.parametrize("lab_metastore", ALL, indirect=True)
def test_running_cluster_moved_from_ssh_to_self_and_back(make_lab: MakeLab) -> None:
    """A cluster in ssh mode is moved to self mode and back by the README's procedure while its
    scheduler runs: the scheduler stays (same pid, no outage) through both moves, in self mode no
    host sends a packet to a port 22, and a killed scheduler is restarted in each mode.

    With a lease of its own (8 s): a controller of the old value exits as soon as the new one is
    recorded, so every controller must be back within the leash's deadline from then on, and a
    controller takes about 2 s from its start to its first renewal (more than the lab's 3 s
    lease leaves after the recording).
    """
    lease = 8.0
    lab = make_lab(config={"lease_ttl": f"{lease:g}"})
    lab.boot()
    old = lab.observer.one()
    assert old is not None and old.node == "h1"
    move_cluster(lab, "self")
    for host in lab.hosts:
        host.count_ssh_packets()
    time.sleep(lease + 2 * POLL)  # past every leash deadline given before the move
    assert lab.observer.current() == (old,), lab.observer.describe()
    assert lab.observer.seconds_none == 0, lab.observer.describe()
    in_self = scheduler_kill_recovers_in_place(lab)
    tried = lab.ssh_attempts()
    assert not any(tried.values()), f"self mode: packets to port 22: {tried}"
    kept = lab.observer.one()
    move_cluster(lab, "ssh")
    time.sleep(lease + 2 * POLL)
    assert lab.observer.current() == (kept,), lab.observer.describe()
    in_ssh = scheduler_kill_recovers_in_place(lab)
    # The same counters see ssh mode's probes: what the self-mode check relies on does count.
    wait_for(lambda: sum(lab.ssh_attempts().values()) > 0, 10, "ssh mode's probes counted on port 22")
    finish(
        lab,
        "running cluster moved ssh -> self -> ssh",
        None,
        None,
        note=f"no outage across the moves; a killed scheduler back in {in_self:.2f}s (self), {in_ssh:.2f}s (ssh)",
    )
