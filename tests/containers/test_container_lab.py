"""The container lab: the compose example's three masters and PostgreSQL, faults with real containers.

Each scenario injects one fault into the running project, then waits (bounded) for a scheduler to
run again and for the ledger DAG to record a run after the fault. All through, the observer counts
the scheduler roots of every container from the host's process table (a frozen one apart), and
the lab fails on two running at once, or on a task try the ledger holds twice. The scenarios run
in file order on one project (module fixture), each leaving it with three masters up again.
``make container-lab`` runs them; ``.ci/run`` does not (``manual``).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.containers.compose_lab import MASTERS, TIMINGS, ComposeLab
from tests.containers.conftest import FIGURES
from tests.containers.observer import ContainerObserver, ThawWatch, full_id
from tests.support.observer import Seen
from tests.support.waiting import wait_for

pytestmark = pytest.mark.manual

LEASE_TTL = float(TIMINGS["LEASE_TTL"])
START = float(TIMINGS["SCHEDULER_START_TIMEOUT"])
RECOVERY = LEASE_TTL + START + 30  # lease expiry, a start, a few cycles on a loaded machine
RUN_AFTER = RECOVERY + 90  # then a DAG run: its schedule (5 s), parsing, queueing, the task
THAW_BOUND = 0.1  # seconds a thawed scheduler may run before its leash ends it


def observer(lab: ComposeLab) -> ContainerObserver:
    assert lab.observer is not None
    return lab.observer


def running(lab: ComposeLab) -> Seen:
    """The one scheduler running now (waits for it, bounded)."""
    obs = observer(lab)
    wait_for(lambda: obs.one() is not None, RECOVERY, "one running scheduler")
    found = obs.one()
    assert found is not None
    return found


def controller_alive(lab: ComposeLab, master: str) -> bool:
    """The master's liveness check (the image's ``sfc-entrypoint alive``) passes."""
    try:
        lab.dockerd.docker("exec", lab.container(master), "sfc-entrypoint", "alive", timeout=20)
    except AssertionError:
        return False
    return True


def pause(lab: ComposeLab, name: str, tries: int = 3) -> None:
    """``docker pause``, again if the freezer gave up (runc's "unable to freeze" on a loaded host)."""
    for attempt in range(1, tries + 1):
        try:
            lab.dockerd.docker("pause", name)
            return
        except AssertionError as exc:
            if "unable to freeze" not in str(exc) or attempt == tries:
                raise
            time.sleep(1)


def no_two(lab: ComposeLab) -> None:
    """Never two running schedulers (but a thawed one until its leash ends it, measured apart); no
    task try twice."""
    obs = observer(lab)
    doubled = [(t, seen) for t, seen in obs.doubled if not {s.pid for s in seen} & lab.thawed]
    assert doubled == [], f"two schedulers ran at once: {doubled[:3]}"
    assert lab.executed_twice() == [], f"task tries executed twice: {lab.executed_twice()[:5]}"


def recovered(lab: ComposeLab, fault: str, at_wall: float, at: float, elsewhere: str | None = None) -> None:
    """A scheduler runs again (on another master than ``elsewhere``) and a DAG run follows the fault."""
    obs = observer(lab)
    what = f"a scheduler on a master other than {elsewhere}" if elsewhere else "a scheduler"
    wait_for(lambda: obs.one() is not None and obs.one().node != elsewhere, RECOVERY, what)  # type: ignore[union-attr]
    back = time.monotonic() - at
    # A run the recovered scheduler made: one that ended after it was back (a run the fault did not
    # interrupt may land a moment after the fault).
    entry = lab.wait_run_after(at_wall + back, RUN_AFTER)
    FIGURES.append(
        f"{fault:<28} scheduler again after {back:5.1f} s on {obs.one().node if obs.one() else '?'}; "  # type: ignore[union-attr]
        f"next DAG run {entry.time - at_wall:5.1f} s after the fault; "
        f"two-scheduler seconds so far (thaw windows included) {obs.seconds_two_or_more:.2f}"
    )


def test_boot_one_scheduler_and_dag_runs(compose_lab: ComposeLab) -> None:
    first = running(compose_lab)
    assert first.node in MASTERS
    for master in MASTERS:
        wait_for(lambda m=master: controller_alive(compose_lab, m), 60, f"{master}'s controller")  # type: ignore[misc]
    entry = compose_lab.wait_run_after(0.0, RUN_AFTER)
    assert entry.host in MASTERS, entry
    # Where the scheduler ran during the boot (a start that times out on a loaded host moves it).
    nodes = [seen[0].node for _, seen, _ in observer(compose_lab).history if len(seen) == 1]
    moves = sum(1 for a, b in zip(nodes, nodes[1:]) if a != b)
    FIGURES.append(f"{'boot':<28} first scheduler on {first.node}, first DAG run on {entry.host}; moves {moves}")
    no_two(compose_lab)


def test_scheduler_killed(compose_lab: ComposeLab) -> None:
    old = running(compose_lab)
    at_wall, at = time.time(), time.monotonic()
    os.kill(old.pid, signal.SIGKILL)
    wait_for(lambda: old.pid not in observer(compose_lab).pids(), 10, "the killed scheduler gone")
    recovered(compose_lab, "scheduler SIGKILL", at_wall, at)
    no_two(compose_lab)


def test_master_docker_killed(compose_lab: ComposeLab) -> None:
    old = running(compose_lab)
    at_wall, at = time.time(), time.monotonic()
    compose_lab.dockerd.docker("kill", compose_lab.container(old.node))
    recovered(compose_lab, "docker kill of its master", at_wall, at, elsewhere=old.node)
    no_two(compose_lab)
    compose_lab.dockerd.docker("start", compose_lab.container(old.node))
    wait_for(lambda: controller_alive(compose_lab, old.node), 60, f"{old.node} back")


def test_master_disconnected(compose_lab: ComposeLab) -> None:
    old = running(compose_lab)
    name = compose_lab.container(old.node)
    at_wall, at = time.time(), time.monotonic()
    compose_lab.dockerd.docker("network", "disconnect", compose_lab.network, name)
    try:
        # Its leash ends it when its placement runs out (no renewal reaches the database).
        wait_for(lambda: old.pid not in observer(compose_lab).pids(), LEASE_TTL + 10, "the cut-off scheduler stopped")
        recovered(compose_lab, "network disconnect", at_wall, at, elsewhere=old.node)
    finally:
        compose_lab.dockerd.docker("network", "connect", "--alias", old.node, compose_lab.network, name)
    no_two(compose_lab)
    wait_for(lambda: controller_alive(compose_lab, old.node), 60, f"{old.node}'s controller after the reconnect")


@pytest.mark.parametrize("trial", [1, 2, 3])
def test_master_paused_then_unpaused(compose_lab: ComposeLab, trial: int) -> None:
    obs = observer(compose_lab)
    old = running(compose_lab)
    name = compose_lab.container(old.node)
    at_wall, at = time.time(), time.monotonic()
    pause(compose_lab, name)
    try:
        wait_for(lambda: any(old.pid in {s.pid for s in f} for _, f in obs.frozen_seen), 5, "the scheduler seen frozen")
        recovered(compose_lab, f"docker pause of its master #{trial}", at_wall, at, elsewhere=old.node)
        watch = ThawWatch(full_id(compose_lab.dockerd, name), old.pid)
        watch.start()
    finally:
        compose_lab.thawed.add(old.pid)
        compose_lab.dockerd.docker("unpause", name)
    ran = watch.join()
    woke, cpu = watch.found.get("leash_woke"), watch.found.get("scheduler_cpu")
    thawed = watch.found.get("thawed")
    if woke is not None and thawed is not None:
        FIGURES.append(f"{'':<28} its leash first ran {(woke - thawed) * 1000:.1f} ms after the thaw")
    if cpu is not None:
        FIGURES.append(f"{'':<28} the scheduler itself got {cpu * 1000:.1f} ms of CPU after the thaw")
    FIGURES.append(
        f"{f'after docker unpause #{trial}':<28} the thawed scheduler ran {ran * 1000:.1f} ms before its leash ended it"
    )
    assert ran < THAW_BOUND, f"the thawed scheduler ran {ran:.3f} s after docker unpause"
    no_two(compose_lab)
    wait_for(lambda: controller_alive(compose_lab, old.node), 60, f"{old.node}'s controller after the unpause")


def test_postgres_restarted(compose_lab: ComposeLab) -> None:
    running(compose_lab)
    at_wall, at = time.time(), time.monotonic()
    compose_lab.dockerd.docker("restart", "-t", "10", compose_lab.container("postgres"), timeout=60)
    recovered(compose_lab, "PostgreSQL container restart", at_wall, at)
    no_two(compose_lab)
