"""Self-fencing that nothing can delay (issue 8): faults that take the controller out of the loop.

Each scenario boots h1..h3 as test_lab.py does (poll 0.5 s, lease 3 s), injects a fault under
which the scheduler host's own controller cannot, or can no longer, stop its scheduler in time
(killed, frozen, starved, its metastore frozen), and asserts from the observer that two
schedulers never ran at once and that the scheduler recovered within the scenario's bound.

Metastores (CI time): everything on MariaDB; the frozen metastore also on PostgreSQL and
ZooKeeper (and the full partition runs on PostgreSQL too, in test_lab.py). The scenarios marked
with ``cases`` run in self mode too, on every metastore (scenarios.py). The first test checks the
lab itself: an SSH login on a lab host runs none of this machine's shell start-up files.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time

import psutil
import pytest

from tests.lab.harness import Lab
from tests.lab.scenarios import (
    POLL,
    TTL,
    MakeLab,
    cases,
    finish,
    finish_without_outage,
    recovered,
    scheduler_moved_to_h2,
    self_mode,
    settled,
    takeover_bound,
)
from tests.lab.tools import SYSTEM_PATH, VENV_BIN
from tests.support.observer import Seen
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab


def back_as_standby(lab: Lab, name: str, mark: int, timeout: float = 15) -> float:
    """Seconds until ``name``'s controller logs a standby cycle after log offset ``mark``."""
    host = lab.host(name)
    return wait_for(lambda: "standby: h" in host.log()[mark:], timeout, f"{name} back as a standby")


def gone_before_new(lab: Lab, since: float, old: Seen) -> tuple[float, float]:
    """When (after ``since``) the old scheduler was gone, and when the new one elsewhere came up."""
    gone_at = lab.observer.first_after(since, lambda real: all(s.pid != old.pid for s in real))
    new_at = lab.observer.first_after(since, lambda real: any(s.node != old.node for s in real))
    assert gone_at is not None and new_at is not None
    return gone_at - since, new_at - since


# --- the lab itself ---------------------------------------------------------------------------


def test_ssh_login_on_a_lab_host_runs_no_user_rc(make_mariadb_lab: MakeLab) -> None:
    """The only load on a lab host is what a scenario puts there: no ``pyenv rehash`` per login.

    An SSH command (what the controllers run) and a login shell on h2, from h1: the SSH user's
    home is h2's own, whose neutral rc files ran (they set a marker), and nothing of this
    machine's ~/.bashrc did (it sets PYENV_ROOT and puts pyenv's shims on PATH).
    """
    lab = make_mariadb_lab()
    for host in lab.hosts[:2]:
        host.boot()
    for host in lab.hosts[:2]:
        host.wait_ready()
    h1, h2 = lab.host("h1"), lab.host("h2")
    ssh = [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(lab.dir / "id_ed25519"),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={lab.dir / 'known_hosts'}",
        "-o",
        "ConnectTimeout=10",
        "root@h2",
    ]
    for remote in ("env", "bash -l -c env"):
        out = subprocess.run(
            h1.enter(*ssh, remote), env=h1.env(), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
        assert out.returncode == 0, f"ssh h2 {remote!r}: {out.stderr}"
        env = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        assert env.get("HOME") == str(h2.home), f"{remote!r}: HOME {env.get('HOME')!r}"
        assert env.get("SFC_LAB_RC") == "h2", f"{remote!r}: h2's neutral rc did not run: {env}"
        pyenv = {k: v for k, v in env.items() if "PYENV" in k or ".pyenv/shims" in v}
        assert not pyenv, f"{remote!r}: root's real shell rc ran on the lab host: {pyenv}"
        if remote == "env":  # sshd's SetEnv PATH, unchanged by any rc
            assert env.get("PATH") == f"{VENV_BIN}:{SYSTEM_PATH}", env.get("PATH")


# --- the scheduler host's controller out of the loop ------------------------------------------


@cases(ssh=("mariadb",), self_in_ci=True)
def test_scheduler_host_controller_killed_while_its_ssh_is_dropped(make_lab: MakeLab) -> None:
    """h2 runs the scheduler (moved there by h1); it drops everything sent to its port 22 (ssh
    mode; in self mode it runs no sshd), and its controller is SIGKILLed and kept down. Nobody
    can see or stop h2's scheduler, and nothing renews its placement: the scheduler must stop by
    itself at its placement deadline, and only then may the active controller (h1) start one
    elsewhere. Then SSH and the controller come back."""
    lab = make_lab()
    old = scheduler_moved_to_h2(lab)
    h2 = lab.host("h2")
    since = time.monotonic()
    if not self_mode(lab):
        h2.block_ssh()
    try:
        h2.kill_controller()
        took = recovered(lab, since, old, timeout=30, elsewhere=True)
        gone, new = gone_before_new(lab, since, old)
        time.sleep(2 * TTL)  # h2 still unseen and without a controller: nothing more starts
        assert len(lab.observer.current()) == 1, lab.observer.describe()
    finally:
        if not self_mode(lab):
            h2.block_ssh(on=False)
    mark = len(h2.log())
    h2.restart_controller()
    back_as_standby(lab, "h2", mark)
    wait_for(lambda: settled(lab), 15, "one scheduler, placed where it runs")
    finish(
        lab,
        "scheduler host's controller killed" + ("" if self_mode(lab) else ", its SSH dropped"),
        took,
        takeover_bound(lab),
        note=f"old gone {gone:.2f}s, new up {new:.2f}s after the kill",
    )


@cases(ssh=("mariadb",))
def test_scheduler_host_controller_frozen_while_partitioned(make_lab: MakeLab) -> None:
    """Double fault: the active controller on the scheduler host (h1) is SIGSTOPped and h1 is
    cut off. The frozen controller can neither renew nor fence; h1's scheduler must still stop
    before its placement expires, so that the new active can start one elsewhere. Then both
    faults are lifted: h1 comes back as a standby and nothing doubles."""
    lab = make_lab()
    lab.boot()
    old = lab.observer.one()
    assert old is not None and old.node == "h1"
    h1 = lab.host("h1")
    since = time.monotonic()
    h1.signal_controller(signal.SIGSTOP)
    try:
        lab.partition("h1")
        took = recovered(lab, since, old, timeout=30, elsewhere=True)
        gone, new = gone_before_new(lab, since, old)
        time.sleep(TTL)
        assert len(lab.observer.current()) == 1, lab.observer.describe()
    finally:
        lab.heal("h1")
        mark = len(h1.log())
        h1.signal_controller(signal.SIGCONT)
    back_as_standby(lab, "h1", mark)
    time.sleep(2 * POLL + 1)
    assert len(lab.observer.current()) == 1, lab.observer.describe()
    assert lab.active() in ("h2", "h3")
    finish(
        lab,
        "scheduler host's controller frozen + host partitioned",
        took,
        takeover_bound(lab),
        note=f"old gone {gone:.2f}s, new up {new:.2f}s after the fault",
    )


@cases(ssh=("mariadb",), self_in_ci=True)
def test_scheduler_host_starved_of_cpu_while_partitioned(make_lab: MakeLab) -> None:
    """h1 (active, scheduler) is starved of CPU: two busy loops at nice -20 inside it, in a CPU
    cgroup of one CPU with all of h1's processes (so the rest of the machine keeps its CPU); a
    second later it is cut off. Its scheduler must still be gone before one starts elsewhere."""
    lab = make_lab()
    lab.boot()
    old = lab.observer.one()
    assert old is not None and old.node == "h1"
    h1 = lab.host("h1")
    controller = psutil.Process(h1.controller_pid)
    with h1.starved(seconds=45) as starvation:
        time.sleep(1.0)  # the hogs take hold
        cpu_before, starved_at = sum(controller.cpu_times()[:2]), time.monotonic()
        since = time.monotonic()
        lab.partition("h1")
        try:
            took = recovered(lab, since, old, timeout=30, elsewhere=True)
            gone, new = gone_before_new(lab, since, old)
            time.sleep(TTL)
            assert len(lab.observer.current()) == 1, lab.observer.describe()
            cpu = 0.0
            with contextlib.suppress(psutil.Error):
                cpu = sum(controller.cpu_times()[:2]) - cpu_before
            wall = time.monotonic() - starved_at
        finally:
            lab.heal("h1")
        mark = len(h1.log())
        cgroup = "a CPU cgroup" if starvation.cgroup is not None else "no cgroup"
    back_as_standby(lab, "h1", mark, timeout=20)
    time.sleep(2 * POLL + 1)
    assert len(lab.observer.current()) == 1, lab.observer.describe()
    finish(
        lab,
        "scheduler host starved of CPU + partitioned",
        took,
        takeover_bound(lab),
        note=f"old gone {gone:.2f}s, new up {new:.2f}s after the cut; "
        f"h1's controller got {cpu:.2f}s CPU in {wall:.1f}s ({cgroup})",
    )


def test_sighup_sigusr1_sigusr2_to_every_controller(make_mariadb_lab: MakeLab) -> None:
    """Each signal to every controller: each keeps running (no restart by anyone), the leader
    and its epoch stay, the scheduler keeps running with no outage. A steady controller logs a
    summary of its unchanged decision every ``log_summary_interval``: here every poll, so that a
    line after each signal shows that it still cycles."""
    lab = make_mariadb_lab(config={"log_summary_interval": str(POLL)})
    lab.boot()
    old = lab.observer.one()
    assert old is not None and old.node == "h1"
    lease = lab.state().lease
    pids = {h.name: h.controller_pid for h in lab.hosts}
    killed: dict[str, list[str]] = {}
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        marks = {h.name: len(h.log()) for h in lab.hosts}
        for host in lab.hosts:
            host.signal_controller(sig)
        time.sleep(3 * POLL + 0.5)
        dead = [h.name for h in lab.hosts if not h.controller_running()]
        if dead:
            killed[sig.name] = dead
            for name in dead:  # back, so that the next signal is tried on every controller too
                lab.host(name).restart_controller()
            wait_for(lambda: len(lab.store.controllers()) == len(lab.hosts), 20, "every controller registered")
            continue
        for host in lab.hosts:  # still cycling: a cycle's sentence (or its summary) logged after the signal
            text = host.log()[marks[host.name] :]
            assert "active (epoch" in text or "standby: h" in text, f"{host.name} stopped cycling after {sig.name}"
    assert not killed, f"signals killed controllers: {killed}"
    assert {h.name: h.controller_pid for h in lab.hosts} == pids
    state = lab.state()
    assert state.lease.host == lease.host and state.lease.epoch == lease.epoch, "the leader changed"
    assert lab.observer.current() == (old,), lab.observer.describe()
    finish_without_outage(lab, "SIGHUP, SIGUSR1, SIGUSR2 to every controller", note="all kept running")


# --- the metastore frozen ---------------------------------------------------------------------


@cases(ssh=("mariadb", "postgresql", "zookeeper"), self_in_ci=True)
def test_metastore_frozen_longer_than_the_lease(make_lab: MakeLab) -> None:
    """SIGSTOP of the metastore server (every process of it: the whole ensemble, every
    PostgreSQL backend) for two leases, then SIGCONT.

    Nobody can renew anything: h1 (active, scheduler) must stop its scheduler before its
    placement can expire, by the deadline it holds, however its calls to the store hang. After
    the thaw a scheduler runs again within the takeover bound, and never two.
    """
    lab = make_lab()
    lab.boot()
    old = lab.observer.one()
    assert old is not None and old.node == "h1"
    frozen_at = time.monotonic()
    lab.site.freeze()
    try:
        time.sleep(2 * TTL)
    finally:
        thawed_at = time.monotonic()
        lab.site.thaw()
    fenced_at = lab.observer.first_after(frozen_at, lambda real: not real)
    with contextlib.suppress(AssertionError):  # judged below, once the figures are on record
        wait_for(lambda: settled(lab), 30, "one scheduler, placed where it runs")
    back = lab.observer.first_after(thawed_at, lambda real: len(real) == 1 and real[0].pid != old.pid)
    took = None if back is None else back - thawed_at
    fenced = None if fenced_at is None else fenced_at - frozen_at
    scenario = "metastore frozen (SIGSTOP) for two leases"
    note = f"h1 fenced {fenced:.2f}s into the freeze" if fenced is not None else "h1 never fenced"
    # S2: with nothing renewable, the scheduler was gone before its placement could expire
    # (it was last renewed before the freeze began, so at the latest lease_ttl after that).
    if fenced is None or fenced > TTL:
        finish(lab, scenario, took, None, note=note)  # on record; two schedulers checked first
        pytest.fail(
            f"h1 kept its scheduler {'throughout' if fenced is None else f'{fenced:.2f}s into'} a freeze of "
            f"the metastore (placement lease {TTL:g}s)\n{lab.observer.describe()}"
        )
    finish(lab, scenario, took, takeover_bound(lab), note=note)
