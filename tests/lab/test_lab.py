"""Failure scenarios on several simulated master hosts (see harness.py for how the lab is built).

Every scenario boots its own hosts h1..h3 (own network, PID, UTS and mount namespaces; sshd in
ssh mode, none in self mode; one controller each; poll_frequency 0.5 s, lease_ttl 3 s) around
the module's metastore on 198.18.0.2, injects one fault, and asserts from the observer (root
namespace, every ~50 ms) that two schedulers never ran at once and that the scheduler recovered
within the scenario's bound.

Scenarios whose handling goes through the metastore (crash, freeze, partitions, pause, clocks) run
in ssh mode on MariaDB and on a 3-server ZooKeeper ensemble (``make_lab``), the full partition on
PostgreSQL too; those about SSH and the start command alone (frozen sshd, hanging or slow starts,
failing starts) on MariaDB only (``make_mariadb_lab``), to keep CI short. The scenarios marked
with ``cases`` run in self mode too, on MariaDB, PostgreSQL and ZooKeeper (scenarios.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.lab.conftest import RESULTS
from tests.lab.harness import Lab
from tests.lab.scenarios import (
    ALL,
    POLL,
    START_TIMEOUT,
    TTL,
    MakeLab,
    cases,
    finish,
    finish_without_outage,
    needs_ssh,
    recovered,
    remote_stop,
    stray_bound,
    takeover_bound,
)
from tests.lab.sites import MariaDBSite
from tests.lab.tools import METASTORE_IP, PYTHON
from tests.support.observer import Seen
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab


def active_sees_running(lab: Lab, node: str) -> bool:
    """Whether the active controller's latest observation (under a second old) has ``node`` running."""
    return any(o.node == node and o.state == "running" and o.age < 1.0 for o in lab.store.observations())


def scheduler_on_h2(make: MakeLab) -> tuple[Lab, Seen]:
    """A booted lab whose active controller (h1) and scheduler (h2) sit on different hosts; the
    scheduler was started by hand and adopted over SSH (ssh mode only)."""
    needs_ssh()
    lab = make()
    lab.boot(active="h1", scheduler="h2")
    old = lab.observer.one()
    assert old is not None and old.node == "h2"
    return lab, old


def h2_kept_while_unseen(lab: Lab, old: Seen, epoch: int, mark: int) -> None:
    """For three leases h1 (active) cannot see h2; h2 still renews its own placement: nothing
    moves, nothing doubles, and the active says why it waits."""
    time.sleep(3 * TTL)
    assert lab.observer.current() == (old,), lab.observer.describe()
    assert "cannot see the scheduler node h2" in lab.host("h1").log()[mark:]
    state = lab.state()
    assert state.lease.host == "h1" and state.lease.epoch == epoch, "the active controller lost its lease"
    assert state.placement.node == "h2" and state.placement.valid


# --- scenarios --------------------------------------------------------------------------------


@cases(self_in_ci=True)
def test_scheduler_killed_on_active_node(make_lab: MakeLab) -> None:
    lab = make_lab()
    lab.boot()
    old = lab.observer.one()
    assert old is not None and old.node == "h1"
    since = time.monotonic()
    os.kill(old.pid, signal.SIGKILL)
    took = recovered(lab, since, old, timeout=15)
    new = lab.observer.one()
    assert new is not None and new.node == "h1", "a killed scheduler is restarted in place first"
    wait_for(lambda: "restarted it in place" in lab.host("h1").log(), 5, "the restart logged")
    bound = POLL + START_TIMEOUT + 0.5  # L1: one poll plus its start time
    finish(lab, "scheduler killed on the active node", took, bound)


@cases(self_in_ci=True)
def test_active_host_crashed(make_lab: MakeLab) -> None:
    lab = make_lab()
    lab.boot()
    old = lab.observer.one()
    assert old is not None and old.node == "h1"
    epoch = lab.state().lease.epoch
    since = time.monotonic()
    lab.host("h1").crash()  # every process of h1: its controller, its scheduler, its sshd
    took = recovered(lab, since, old, timeout=30, elsewhere=True)
    state = lab.state()
    assert state.lease.host in ("h2", "h3") and state.lease.epoch > epoch
    # L1: a dead scheduler host is replaced within lease_ttl plus one poll plus start time
    # (plus one probe of the dead host).
    finish(lab, "active host crashed (all its processes)", took, takeover_bound(lab))


@cases(ssh=ALL, self_in_ci=True)
def test_active_host_fully_partitioned(make_lab: MakeLab) -> None:
    lab = make_lab()
    lab.boot()
    old = lab.observer.one()
    assert old is not None and old.node == "h1"
    since = time.monotonic()
    lab.partition("h1")
    took = recovered(lab, since, old, timeout=30, elsewhere=True)
    # S2: h1 stopped its own scheduler before the new one started elsewhere.
    gone_at = lab.observer.first_after(since, lambda real: all(s.node != "h1" for s in real))
    new_at = lab.observer.first_after(since, lambda real: any(s.node != "h1" for s in real))
    assert gone_at is not None and new_at is not None and gone_at < new_at
    fenced = ("self-fenced", "stopped a scheduler on h1")
    wait_for(lambda: any(f in lab.host("h1").log() for f in fenced), 10, "h1 to log its self-fencing")
    assert lab.active() in ("h2", "h3")
    # Heal: h1 comes back as a standby; still exactly one scheduler.
    lab.heal("h1")
    mark = len(lab.host("h1").log())
    wait_for(lambda: "standby: h" in lab.host("h1").log()[mark:], 15, "h1 back as a standby")
    time.sleep(2 * POLL + 1)
    assert len(lab.observer.current()) == 1
    finish(
        lab,
        "active host fully partitioned (link down)",
        took,
        takeover_bound(lab),
        note=f"fenced {gone_at - since:.2f}s, new start {new_at - since:.2f}s after the cut",
    )


@cases(self_in_ci=True)
def test_active_controller_frozen_beyond_its_lease(make_lab: MakeLab) -> None:
    """SIGSTOP of the active controller (its scheduler on its own host) for three leases, then SIGCONT.

    Nothing renews h1's placement or its leash any more: the leash stops h1's scheduler at the
    placement deadline, without h1's controller. A standby takes the lease, and once the
    placement has expired it starts a scheduler again (never two at once). Thawed, the old
    leader finds its term over and acts on nothing.
    """
    lab = make_lab()
    needs_ssh(lab)
    lab.boot()
    old = lab.observer.one()
    assert old is not None and old.node == "h1"
    epoch = lab.state().lease.epoch
    h1 = lab.host("h1")
    since = time.monotonic()
    h1.signal_controller(signal.SIGSTOP)
    try:
        took = recovered(lab, since, old, timeout=30)
        state = lab.state()
        assert state.lease.epoch > epoch and state.lease.host in ("h2", "h3")
        time.sleep(2 * TTL)
        assert len(lab.observer.current()) == 1, lab.observer.describe()
    finally:
        h1.signal_controller(signal.SIGCONT)
    mark = len(h1.log())
    wait_for(lambda: "standby: h" in h1.log()[mark:], 10, "h1 back as a standby")
    time.sleep(2 * POLL + 1)
    assert len(lab.observer.current()) == 1, lab.observer.describe()
    assert lab.active() in ("h2", "h3")
    # the lease expires, then the placement (renewed last by h1 before its freeze), then a start
    finish(lab, "active controller frozen (SIGSTOP) past its lease", took, takeover_bound(lab) + TTL)


def test_one_way_partition_of_scheduler_host_from_active(make_lab: MakeLab) -> None:
    lab, old = scheduler_on_h2(make_lab)
    epoch = lab.state().lease.epoch
    mark = len(lab.host("h1").log())
    lab.drop(at="h2", source="h1")  # h2 drops everything h1 sends it; the rest of the network is fine
    h2_kept_while_unseen(lab, old, epoch, mark)
    lab.drop(at="h2", source="h1", on=False)

    took = wait_for(lambda: active_sees_running(lab, "h2"), 15, "the active controller to see h2 again")
    assert lab.observer.current() == (old,)
    finish_without_outage(
        lab,
        "one-way partition: scheduler host drops active",
        note=f"no outage; active sees h2 again {took:.2f}s after the heal",
    )


def test_sshd_frozen_on_scheduler_host(make_mariadb_lab: MakeLab) -> None:
    lab, old = scheduler_on_h2(make_mariadb_lab)
    epoch = lab.state().lease.epoch
    mark = len(lab.host("h1").log())
    frozen = lab.host("h2").freeze_sshd()  # the listener and every open session
    assert frozen
    try:
        h2_kept_while_unseen(lab, old, epoch, mark)
    finally:
        lab.host("h2").thaw_sshd()

    took = wait_for(lambda: active_sees_running(lab, "h2"), 15, "the active controller to see h2 again")
    finish_without_outage(
        lab,
        "sshd frozen (SIGSTOP) on the scheduler host",
        note=f"no outage; active sees h2 again {took:.2f}s after SIGCONT",
    )


def test_scheduler_host_cut_off_while_paused_then_resumed(make_lab: MakeLab) -> None:
    """Paused, the scheduler host is cut off; resumed while it still is: never two schedulers.

    The cut-off controller cannot learn of the resume, and being paused it fences nothing itself;
    but nothing renews its scheduler's leash any more, which stops it at the placement deadline.
    Only after that, and once the placement expired, does the active start one elsewhere.
    """
    lab, old = scheduler_on_h2(make_lab)
    assert lab.cli("pause").returncode == 0
    wait_for(lambda: all(c.paused for c in lab.store.controllers()), 10, "every controller to act on the pause")
    since = time.monotonic()
    lab.partition("h2")
    time.sleep(TTL + 2 * POLL)  # h2's placement expires (it cannot renew it), and its leash fires
    assert lab.observer.current() == (), lab.observer.describe()
    resumed = lab.cli("resume")
    assert resumed.returncode == 0, resumed.stderr
    took = recovered(lab, since, old, timeout=30, elsewhere=True)

    lab.heal("h2")  # h2 learns of the resume; nothing doubles

    def settled() -> bool:
        state, seen = lab.state(), lab.observer.current()
        return len(seen) == 1 and state.placement.valid and state.placement.node == seen[0].node

    wait_for(settled, 20, "one scheduler, placed where it runs")
    time.sleep(2 * POLL)
    assert len(lab.observer.current()) == 1
    finish(
        lab, "scheduler host cut off while paused, resumed", None, None, note=f"new scheduler {took:.2f}s after the cut"
    )


def test_remote_start_hangs(make_mariadb_lab: MakeLab) -> None:
    lab, old = scheduler_on_h2(make_mariadb_lab)
    epoch = lab.state().lease.epoch
    lab.flag("hang-h2")  # from now on, starting the scheduler on h2 hangs and never brings one up
    since = time.monotonic()
    os.kill(old.pid, signal.SIGKILL)
    took = recovered(lab, since, old, timeout=60, elsewhere=True)
    new = lab.observer.one()
    assert new is not None and new.node in ("h1", "h3")
    # The active controller kept its lease all along: waiting on a hung start renews it.
    state = lab.state()
    assert state.lease.host == "h1" and state.lease.epoch == epoch
    assert lab.observer.first_after(since, lambda real: any(s.node == "h2" for s in real)) is None
    # max_restart_attempts restarts in place, each waiting scheduler_start_timeout, then a
    # remote stop of what may have come up, then the next cycle; then the move and its start.
    attempts = lab.config().max_restart_attempts
    bound = POLL + attempts * (START_TIMEOUT + remote_stop(lab) + POLL) + START_TIMEOUT
    finish(lab, "remote start command hangs", took, bound, note=f"moved to {new.node}")


def test_remote_start_slower_than_start_timeout(make_mariadb_lab: MakeLab) -> None:
    """A start that hangs for a while and then succeeds: it must not come up after it was given up."""
    lab, old = scheduler_on_h2(make_mariadb_lab)
    lab.flag("slow-h2", value=f"{START_TIMEOUT + 2:g}")  # the scheduler comes up 2 s after the timeout
    since = time.monotonic()
    os.kill(old.pid, signal.SIGKILL)
    time.sleep(25)
    took = lab.observer.first_after(since, lambda real: len(real) == 1 and real[0].pid != old.pid)
    attempts = lab.config().max_restart_attempts
    bound = POLL + attempts * (START_TIMEOUT + remote_stop(lab) + POLL) + START_TIMEOUT
    finish(
        lab,
        "remote start slower than its timeout",
        None if took is None else took - since,
        bound,
        note=f"{lab.observer.seconds_two_or_more:.2f}s with two schedulers",
    )


@cases(ssh=("mariadb",), self_in_ci=True)
def test_stray_schedulers_on_two_standby_hosts(make_lab: MakeLab) -> None:
    lab = make_lab()
    lab.boot()
    real = lab.observer.one()
    assert real is not None and real.node == "h1"
    epoch = lab.state().lease.epoch
    since = time.monotonic()
    lab.host("h2").spawn_scheduler(stray=True)
    lab.host("h3").spawn_scheduler(stray=True)

    def logged(node: str) -> bool:  # by the node's own controller (guard or reconcile), or by the active one
        logs = lab.logs()
        by_active = any(
            "killed stray scheduler(s) on" in line and f" {node} (" in line for line in logs["h1"].splitlines()
        )
        own = f"stopped a scheduler on {node}" in logs[node] or "stopped the local scheduler" in logs[node]
        return own or by_active

    def appeared(node: str) -> float | None:
        """When the observer first saw ``node``'s stray; the spawn if its controller killed it
        between two samples (self mode: each node kills its own, at once): a kill is logged."""
        seen = (t for t, _, strays in list(lab.observer.history) if t >= since and any(s.node == node for s in strays))
        return next(seen, None) or (since if logged(node) else None)

    wait_for(lambda: appeared("h2") is not None and appeared("h3") is not None, 10, "both strays to appear")
    stray_seen = max(appeared("h2") or since, appeared("h3") or since)
    wait_for(lambda: not lab.observer.strays(), 15, "both strays to be killed")
    killed_after = time.monotonic() - stray_seen
    assert lab.observer.current() == (real,), "the real scheduler was touched"
    wait_for(lambda: logged("h2") and logged("h3"), 5, "both kills to be logged")
    assert lab.state().lease.epoch == epoch
    bound = stray_bound(lab)
    finish(
        lab,
        "stray schedulers on two standby hosts",
        killed_after,
        bound,
        note="time until both strays were killed",
        outage_allowed=False,
    )


@cases()
def test_clock_skew_of_minutes_changes_no_leader(make_lab: MakeLab) -> None:
    lab = make_lab()
    # The active controller's host runs 5 minutes ahead, a standby's 5 minutes behind.
    lab.boot(faketime={"h1": "+5m", "h3": "-5m"})
    real = lab.observer.one()
    assert real is not None and real.node == "h1"
    epoch = lab.state().lease.epoch
    before = len(lab.events())
    time.sleep(4 * TTL)
    state = lab.state()
    assert state.lease.host == "h1" and state.lease.epoch == epoch, "the leader changed"
    assert lab.observer.current() == (real,), "the scheduler was restarted or moved"
    new = [e for e in lab.events()[before:] if e.kind in ("elected", "restart", "move", "kill", "fence", "start")]
    assert not new, new
    finish_without_outage(lab, "clock of two hosts 5 min off (faketime)", note="no leader change")


def test_all_schedulers_fail_to_start(make_mariadb_lab: MakeLab) -> None:
    # One restart in place per node, a short start timeout and a move backoff of 40 polls (the
    # default is 3 polls, at least 5 s): within the window the active controller tries every
    # node, finds them all backing off, and keeps going.
    start_timeout = 1.5
    config = {"max_restart_attempts": "1", "scheduler_start_timeout": str(start_timeout), "move_backoff": "20"}
    lab = make_mariadb_lab(config=config)
    lab.flag("fail-all")  # every start command exits at once
    lab.boot(expect_scheduler=False)
    window = 45.0  # a remote start writes its deadline through the node's helper first: a few seconds each
    time.sleep(window)
    assert not any(real for _, real, _ in lab.observer.history), "a scheduler ran"
    out = lab.cli("history", "--json", "--limit", "1000")
    assert out.returncode == 0, out.stderr
    events = json.loads(out.stdout)
    alerts = [e for e in events if e["kind"] == "alert"]
    starts = sorted(e["at"] for e in events if e["kind"] == "start_failed")
    elected = [e for e in events if e["kind"] == "elected"]
    nodes = {e["message"].split(" failed")[0].rsplit(" ", 1)[-1] for e in events if e["kind"] == "start_failed"}
    backoff = [line for line in lab.host("h1").log().splitlines() if "backing off" in line]
    assert len(elected) == 1, f"the leader changed: {elected}"
    assert nodes == {"h1", "h2", "h3"}, f"not every node was tried: {nodes}"
    assert backoff, "no backoff in the active controller's log"
    assert len(alerts) == 1, f"expected exactly one alert, got {len(alerts)}: {alerts}"
    # No storm: attempts follow each other no faster than one start timeout apart.
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert gaps and min(gaps) >= start_timeout - 0.1, f"start attempts {gaps}"
    rate = 60 * len(starts) / (starts[-1] - starts[0]) if len(starts) > 1 else 0.0
    finish(
        lab,
        "all schedulers fail to start",
        None,
        None,
        note=f"{len(starts)} failed starts ({rate:.0f}/min), {len(alerts)} alert, backoff logged",
    )


# The lock is taken through the controller's own engine, so the session has exactly the settings
# a controller's has (timeouts included) when the cut falls inside one of its transactions.
LOCK_HOLDER = """
import sys, time
from sqlalchemy import text
from scheduler_failover_controller.metastore.sql import SQLMetastore
url = f"mysql+pymysql://sfc:sfc-secret@{sys.argv[1]}:{sys.argv[2]}/{sys.argv[3]}"
store = SQLMetastore(url, float(sys.argv[4]))
conn = store.engine.connect()
conn.begin()
conn.execute(text("SELECT holder FROM sfc_lease FOR UPDATE"))
print("locked", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("lab_node_control", ["ssh", pytest.param("self", marks=pytest.mark.manual)], indirect=True)
def test_active_host_partitioned_while_holding_a_metastore_lock(make_mariadb_lab: MakeLab) -> None:
    """The cut can fall inside one of the active controller's transactions; here it always does.

    A client on h1 holds the lease row's lock (as the controller does for a moment in each
    renewal) when h1's link goes down. The server never hears from that session again.
    (ZooKeeper has no locks a client could leave behind: its sessions expire by themselves.)
    """
    lab = make_mariadb_lab()
    site = lab.site
    assert isinstance(site, MariaDBSite)
    lab.boot()
    old = lab.observer.one()
    assert old is not None and old.node == "h1"
    h1 = lab.host("h1")
    holder = subprocess.Popen(
        h1.enter(
            PYTHON,
            "-c",
            LOCK_HOLDER,
            METASTORE_IP,
            str(site.db.port),
            site.database,
            str(lab.config().metastore_timeout),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        since = time.monotonic()
        lab.partition("h1")
        try:
            took = recovered(lab, since, old, timeout=30, elsewhere=True)
        except AssertionError:
            lab.observer.stop()
            RESULTS.append(
                {
                    "scenario": f"active host partitioned holding a row lock [{lab.node_control}, mariadb]",
                    "recovery": None,
                    "bound": takeover_bound(lab),
                    "two": lab.observer.seconds_two_or_more,
                    "none": lab.observer.seconds_none,
                    "note": "NO RECOVERY within 30 s",
                    "pace": lab.observer.mean_interval(),
                }
            )
            raise
    finally:
        holder.kill()
        holder.wait(timeout=10)
    finish(lab, "active host partitioned holding a row lock", took, takeover_bound(lab))
