"""The controller cycle, branch by branch, on fakes: each test asserts the sentence and the actions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from scheduler_failover_controller.controller.cycle import PLEASE_REPORT, Controller
from scheduler_failover_controller.exceptions import MetastoreError
from scheduler_failover_controller.probe_result import SchedulerState
from tests.support.waiting import wait_for

from .fakes import Cluster, FakeClock, FakeRunner, FakeStore, make_config

TTL = 5.0  # lease_ttl of the test config (poll_frequency 1, metastore_timeout 0.5)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.close()


def tick(cluster: Cluster, *controllers: Controller, seconds: float = 1.0) -> list[str]:
    """Let one poll pass, then run one cycle of each controller, in order."""
    cluster.clock.advance(seconds)
    return [c.run_cycle() for c in controllers]


def active_on_n1(cluster: Cluster, **settings: Any) -> Controller:
    """n1's controller, active, with the scheduler placed and running on n1."""
    c1 = cluster.controller("n1", **settings)
    assert c1.run_cycle() == placed(cluster, "n1")
    assert cluster.running() == ["n1"]
    return c1


def pid(cluster: Cluster, node: str) -> int:
    """The one scheduler pid ``node`` runs now (its sentences name it)."""
    (only,) = cluster.runners[node].pids
    return only


def healthy(cluster: Cluster, node: str, epoch: int = 1) -> str:
    """The active's sentence for a healthy scheduler on ``node``."""
    return f"active (epoch {epoch}): scheduler healthy on {node} (running (pid {pid(cluster, node)}))"


def placed(cluster: Cluster, node: str, epoch: int = 1) -> str:
    """The active's sentence for a scheduler placed and started on ``node`` at once."""
    started = f"up after 0.0s, running (pid {pid(cluster, node)})"
    return f"active (epoch {epoch}): placed and started the scheduler on {node} ({started})"


def bump_version(store: FakeStore) -> None:
    """Another writer moved the placement between our read and our compare-and-set."""
    store.placement_version += 1


# --- the fakes keep the contract they stand for ---------------------------------------------


def test_fake_store_keeps_the_lease_and_placement_contract() -> None:
    store = FakeStore(server_now=100.0)
    a = store.acquire_or_renew("a", "n1", 5)
    assert a is not None and a.epoch == 1 and a.remaining == 5
    assert store.acquire_or_renew("b", "n2", 5) is None  # a's lease is still valid
    store.advance(3)
    renewed = store.acquire_or_renew("a", "n1", 5)
    assert renewed is not None and renewed.epoch == 1  # renewal keeps the epoch
    store.advance(5.5)
    b = store.acquire_or_renew("b", "n2", 5)
    assert b is not None and b.epoch == 2  # new holder after expiry: new term
    assert store.set_placement("n1", "a", 1, 0, 5) is None  # stale epoch is fenced off
    p = store.set_placement("n2", "b", 2, 0, 5)
    assert p is not None and p.version == 1 and p.epoch == 2 and p.valid
    assert store.set_placement("n3", "b", 2, 0, 5) is None  # version moved
    assert store.renew_placement("n1", 5) is None  # not n1's
    assert store.renew_placement("n2", 5, "a", 1) is None  # fenced renewal by a stale leader
    store.advance(6)
    assert store.renew_placement("n2", 5) is None  # an expired placement is never revived
    assert store.release("a") is False
    b2 = store.acquire_or_renew("b", "n2", 5)
    assert b2 is not None and b2.epoch == 3  # same holder after expiry: new term
    assert store.release("b") is True and not store.read_state().lease.valid
    store.fail = True
    with pytest.raises(MetastoreError):
        store.read_state()


def test_fake_runner_start_stop_and_faults() -> None:
    clock = FakeClock()
    runner = FakeRunner("n1")
    assert runner.probe().state is SchedulerState.STOPPED
    runner.start(0.0)
    assert runner.probe().state is SchedulerState.RUNNING and runner.starts == 1
    assert runner.stop().state is SchedulerState.STOPPED and runner.stops == 1
    runner.reachable = False
    assert runner.probe().state is SchedulerState.UNKNOWN
    clock.sleep(2)
    assert clock.monotonic() == 1002.0 and clock.slept == [2]


# --- _cycle -----------------------------------------------------------------------------


def test_first_cycle_becomes_active_and_places_and_starts_on_its_own_node(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == placed(cluster, "n1")
    assert cluster.actions == [("n1", "start")]
    assert cluster.running() == ["n1"]
    store = cluster.store
    assert (store.lease_holder, store.lease_host, store.lease_epoch) == (c1.holder, "n1", 1)
    assert (store.placement_node, store.placement_epoch, store.placement_version) == ("n1", 1, 1)
    assert store.placement().valid
    assert c1.role == "active" and c1.epoch == 1 and c1.leads() and c1.may_run_locally()
    assert store.kinds() == ["elected", "start"]
    assert [c.host for c in store.controllers()] == ["n1"]
    assert {o.node: o.state for o in store.observations()} == {"n1": "stopped", "n2": "stopped", "n3": "stopped"}


def test_standby_reports_who_is_active_and_acts_on_nothing(cluster: Cluster) -> None:
    active_on_n1(cluster)
    c2 = cluster.controller("n2")
    calls_before = len(cluster.store.calls)
    sentence = c2.run_cycle()
    assert sentence == "standby: n1 is active (epoch 1); scheduler placed on n1"
    assert c2.role == "standby" and c2.epoch == 0 and not c2.leads()
    assert cluster.actions == [("n1", "start")]
    assert [c.host for c in cluster.store.controllers()] == ["n1", "n2"]
    calls = cluster.store.calls[calls_before:]
    assert "set_placement" not in calls and "record_observations" not in calls


def test_healthy_scheduler_renews_placement_and_lease(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    store = cluster.store
    placement_expiry, lease_expiry = store.placement_expires_at, store.lease_expires_at
    (sentence,) = tick(cluster, c1)
    assert sentence == healthy(cluster, "n1")
    assert cluster.actions == [("n1", "start")]
    assert store.placement_expires_at == placement_expiry + 1 and store.lease_expires_at == lease_expiry + 1
    assert (store.placement_version, store.lease_epoch) == (1, 1)


def test_healthy_scheduler_on_a_node_without_controller_keeps_its_placement(cluster: Cluster) -> None:
    cluster.runners["n2"].run()
    cluster.store.force_placement("n2", TTL)
    c1 = cluster.controller("n1")
    assert c1.run_cycle() == healthy(cluster, "n2")
    expiry = cluster.store.placement_expires_at
    (sentence,) = tick(cluster, c1)
    assert sentence == healthy(cluster, "n2")
    assert cluster.store.placement_expires_at == expiry + 1  # renewed by the active, fenced by its epoch
    assert cluster.actions == []


def test_lease_lost_to_another_holder_turns_standby_and_acts_on_nothing(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    c2 = cluster.controller("n2")
    assert c2.run_cycle() == "standby: n1 is active (epoch 1); scheduler placed on n1"
    cluster.clock.advance(TTL + 1)  # c1 misses its renewals (stalled); c2 takes over
    assert c2.run_cycle() == (
        f"active (epoch 2): adopted the scheduler already running on n1 (running (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.store.lease_epoch == 2
    calls_before = len(cluster.store.calls)
    sentence = c1.run_cycle()
    assert sentence == "standby: n2 is active (epoch 2); scheduler placed on n1"
    assert c1.role == "standby" and c1.epoch == 0 and not c1.leads()
    calls = cluster.store.calls[calls_before:]
    assert "set_placement" not in calls and "record_observations" not in calls
    assert cluster.actions == [("n1", "start")]  # nothing stopped, nothing started
    assert cluster.running() == ["n1"]


def test_paused_active_acts_on_nothing(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.set_paused(True)
    cluster.runners["n1"].die()
    cluster.runners["n3"].run()
    (sentence,) = tick(cluster, c1)
    assert sentence == "active: paused; acting on nothing"
    assert c1.role == "active" and c1.paused
    assert cluster.actions == [("n1", "start")]
    assert cluster.running() == ["n3"]


def test_paused_standby_does_not_guard_its_node(cluster: Cluster) -> None:
    active_on_n1(cluster)
    cluster.store.set_paused(True)
    cluster.runners["n2"].run()  # an operator's scheduler during maintenance
    c2 = cluster.controller("n2")
    assert c2.run_cycle() == "standby: paused; acting on nothing"
    assert cluster.runners["n2"].stops == 0 and cluster.running() == ["n1", "n2"]


def test_run_cycle_catches_an_unexpected_exception(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")

    def boom() -> None:
        raise RuntimeError("bug")

    cluster.store.on("read_state", boom)
    sentence = c1.run_cycle()
    assert sentence.startswith(PLEASE_REPORT) and "please report" in sentence
    assert sentence == f"{PLEASE_REPORT}: the cycle failed; nothing more was done"
    assert cluster.actions == []
    assert c1.cycles == 1
    assert c1.run_cycle() == placed(cluster, "n1")  # the next cycle works


# --- _guard (every controller guards its own node) ------------------------------------------


def test_guard_stops_a_standby_nodes_scheduler_that_has_no_placement(cluster: Cluster) -> None:
    active_on_n1(cluster)
    c2 = cluster.controller("n2")
    cluster.runners["n2"].run()
    stopped = pid(cluster, "n2")
    sentence = c2.run_cycle()
    assert sentence == (
        f"standby: stopped a scheduler on n2 (running (pid {stopped})) "
        "that holds no valid placement (placement is on n1); now stopped"
    )
    assert cluster.actions == [("n1", "start"), ("n2", "stop")]
    assert cluster.running() == ["n1"]
    assert cluster.store.events_of("fence")[-1].host == "n2"


def test_guard_rereads_before_killing_and_spares_a_scheduler_just_placed_here(cluster: Cluster) -> None:
    active_on_n1(cluster)
    c2 = cluster.controller("n2")
    cluster.runners["n1"].die()
    cluster.runners["n2"].run()
    # The active moves the placement to n2 after c2 read the state but before its guard acts.
    cluster.store.on("heartbeat", lambda: cluster.store.force_placement("n2", TTL))
    sentence = c2.run_cycle()
    assert sentence == "standby: n1 is active (epoch 1); scheduler placed on n1"
    assert cluster.runners["n2"].stops == 0 and cluster.running() == ["n2"]
    assert c2.may_run_locally()


def test_guard_stops_when_the_reread_fails(cluster: Cluster) -> None:
    active_on_n1(cluster)
    c2 = cluster.controller("n2")
    cluster.runners["n2"].run()
    cluster.store.on("heartbeat", lambda: cluster.store.failing.add("read_state"))
    stopped = pid(cluster, "n2")
    sentence = c2.run_cycle()
    assert sentence == (
        f"standby: stopped a scheduler on n2 (running (pid {stopped})) "
        "that holds no valid placement (placement is on n1); now stopped"
    )
    assert cluster.runners["n2"].stops == 1


def test_guard_keeps_renewing_the_placement_of_a_standby_node(cluster: Cluster) -> None:
    cluster.runners["n2"].run()
    cluster.store.force_placement("n2", TTL)
    c1 = cluster.controller("n1")
    c2 = cluster.controller("n2")
    c1.run_cycle()
    for _ in range(10):
        s1, s2 = tick(cluster, c1, c2)
        assert s1 == healthy(cluster, "n2")
        assert s2 == "standby: n1 is active (epoch 1); scheduler placed on n2"
    assert c2.may_run_locally() and cluster.running() == ["n2"] and cluster.actions == []


# --- _metastore_down --------------------------------------------------------------------


def test_metastore_unreachable_waits_then_self_fences_before_the_placement_expires(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    store = cluster.store
    expires_at = store.placement_expires_at
    store.fail = True
    running = pid(cluster, "n1")
    waited = 0
    for _ in range(10):
        cluster.clock.advance(1)  # the daemon's next cycle
        # S2: the local scheduler never runs past the server-side expiry of its placement.
        assert not (cluster.runners["n1"].running and store.server_now >= expires_at), (
            f"scheduler still running {store.server_now - expires_at:.1f}s after its placement expired"
        )
        sentence = c1.run_cycle()
        if cluster.runners["n1"].running:
            assert "metastore unreachable" in sentence and "before self-fencing" in sentence
            assert cluster.runners["n1"].stops == 0
            waited += 1
            continue
        break
    assert sentence == (
        "active: metastore unreachable (fake metastore unreachable (acquire_or_renew)); self-fenced: stopped "
        f"the local scheduler (running (pid {running}) -> stopped) before its placement could expire"
    )
    assert waited >= 1  # one failed cycle is not a fence (L2)
    assert store.server_now < expires_at
    assert cluster.actions == [("n1", "start"), ("n1", "stop")]


def test_failing_placement_renewals_fence_before_the_placement_expires(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    store = cluster.store
    expires_at = store.placement_expires_at
    store.failing.add("renew_placement")  # the rest of the store answers
    running = pid(cluster, "n1")
    for _ in range(10):
        cluster.clock.advance(1)
        assert not (cluster.runners["n1"].running and store.server_now >= expires_at), (
            f"scheduler still running {store.server_now - expires_at:.1f}s after its placement expired"
        )
        sentence = c1.run_cycle()
        if not cluster.runners["n1"].running:
            break
        assert cluster.runners["n1"].stops == 0
    assert sentence == (
        f"active: stopped a scheduler on n1 (running (pid {running})) "
        "whose placement could not be renewed before it would expire; now stopped"
    )
    assert store.server_now < expires_at
    assert cluster.actions == [("n1", "start"), ("n1", "stop")]


def test_metastore_unreachable_demotes_the_active_after_its_lease_deadline(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.fail = True
    running = pid(cluster, "n1")
    (sentence,) = tick(cluster, c1, seconds=TTL)
    assert sentence == (
        "standby: metastore unreachable (fake metastore unreachable (acquire_or_renew)); self-fenced: stopped "
        f"the local scheduler (running (pid {running}) -> stopped) before its placement could expire"
    )
    assert c1.role == "standby" and c1.epoch == 0
    assert cluster.running() == []  # long past the placement deadline: fenced in the same cycle


def test_metastore_unreachable_without_a_local_scheduler_acts_on_nothing(cluster: Cluster) -> None:
    active_on_n1(cluster)
    cluster.store.fail = True
    c2 = cluster.controller("n2")
    sentence = c2.run_cycle()
    assert sentence == (
        "starting: metastore unreachable (fake metastore unreachable (acquire_or_renew)); "
        "no local scheduler, acting on nothing"
    )
    assert cluster.actions == [("n1", "start")]


def test_metastore_unreachable_while_paused_acts_on_nothing(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.set_paused(True)
    tick(cluster, c1)
    cluster.store.fail = True
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active: metastore unreachable (fake metastore unreachable (acquire_or_renew)); paused, acting on nothing"
    )
    assert cluster.actions == [("n1", "start")]


# --- _lead ------------------------------------------------------------------------------


def test_strays_are_killed_and_the_placed_scheduler_kept(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.runners["n3"].run()
    stray = pid(cluster, "n3")
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        f"active (epoch 1): scheduler healthy on n1 (running (pid {pid(cluster, 'n1')})); "
        f"killed stray scheduler(s) on n3 (running (pid {stray}) -> stopped); "
        "the scheduler belongs on n1"
    )
    assert re.search(r"killed stray scheduler\(s\) on n3 \(running \(pid \d+\) -> stopped\)", sentence)
    assert sentence.endswith("the scheduler belongs on n1")
    assert cluster.actions == [("n1", "start"), ("n3", "stop")]
    assert cluster.running() == ["n1"]
    assert cluster.store.events_of("kill")


def test_strays_are_not_killed_without_lease_margin(cluster: Cluster) -> None:
    cluster.runners["n2"].run()
    cluster.store.force_placement("n2", TTL)
    c1 = cluster.controller("n1")
    assert c1.run_cycle() == healthy(cluster, "n2")
    cluster.runners["n3"].run()
    cluster.runners["n2"].on_probe = lambda: cluster.clock.advance(TTL)  # stalled during the probes
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        f"active (epoch 1): scheduler healthy on n2 (running (pid {pid(cluster, 'n2')})); "
        "lease margin too small to act; not killing strays this cycle"
    )
    assert cluster.actions == [] and cluster.running() == ["n2", "n3"]


def test_two_schedulers_without_placement_one_is_killed_then_the_other_adopted(cluster: Cluster) -> None:
    cluster.runners["n2"].run()
    cluster.runners["n3"].run()
    stray = pid(cluster, "n3")
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        f"active (epoch 1): killed stray scheduler(s) on n3 (running (pid {stray}) -> stopped); "
        "the scheduler belongs on n2"
    )
    assert cluster.actions == [("n3", "stop")]
    assert cluster.running() == ["n2"]
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        f"active (epoch 1): adopted the scheduler already running on n2 (running (pid {pid(cluster, 'n2')}))"
    )
    assert cluster.store.placement_node == "n2" and cluster.actions == [("n3", "stop")]


def test_adopts_a_running_scheduler_when_the_placement_expired(cluster: Cluster) -> None:
    cluster.store.force_placement("n2", TTL)
    cluster.runners["n2"].run()
    cluster.clock.advance(TTL + 3)  # placement long expired (e.g. its active controller died)
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        f"active (epoch 1): adopted the scheduler already running on n2 (running (pid {pid(cluster, 'n2')}))"
    )
    store = cluster.store
    assert (store.placement_node, store.placement_epoch, store.placement_version) == ("n2", 1, 2)
    assert store.placement().valid
    assert cluster.actions == [] and cluster.running() == ["n2"]
    assert "adopt" in store.kinds()


def test_the_active_adopts_a_scheduler_on_its_own_node_instead_of_killing_it(cluster: Cluster) -> None:
    """A controller restarted after its placement expired must not restart a healthy scheduler."""
    cluster.store.force_placement("n1", TTL)
    cluster.runners["n1"].run()
    cluster.clock.advance(TTL + 3)
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        f"active (epoch 1): adopted the scheduler already running on n1 (running (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.actions == [] and cluster.running() == ["n1"]
    assert c1.may_run_locally()


def test_shutdown_keeps_the_placement_when_the_stop_is_not_confirmed(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    c1.run_cycle()
    assert cluster.running() == ["n1"]
    cluster.runners["n1"].stop_fails = True
    summary = c1.shutdown()
    assert "kept the placement" in summary
    assert cluster.store.placement_node == "n1"


def test_adoption_race_lost(cluster: Cluster) -> None:
    cluster.runners["n2"].run()
    c1 = cluster.controller("n1")
    cluster.store.on("set_placement", lambda: bump_version(cluster.store))
    assert c1.run_cycle() == "active (epoch 1): lost the race to adopt the scheduler on n2; retrying next cycle"
    assert cluster.actions == []


def test_placement_race_lost_starts_nothing(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    cluster.store.on("set_placement", lambda: bump_version(cluster.store))
    assert c1.run_cycle() == "active (epoch 1): lost the race to place the scheduler on n1; retrying next cycle"
    assert cluster.actions == []


def test_no_node_can_take_the_scheduler(cluster: Cluster) -> None:
    for runner in cluster.runners.values():
        runner.reachable = False
    cluster.store.register("n1")  # no other controller could do better
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        "active (epoch 1): no scheduler runs and no node can take it now (n1 unknown, n2 unknown, n3 unknown)"
    )
    assert cluster.actions == [] and cluster.store.placement_node is None


def test_an_active_that_cannot_see_its_own_node_leaves_the_lease_to_another_controller(cluster: Cluster) -> None:
    for node, runner in cluster.runners.items():
        runner.reachable = False
        cluster.store.register(node)
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence.startswith("standby: cannot see n1") and "left the lease to n2, n3" in sentence
    assert c1.role.value == "standby" and not cluster.store.read_state().lease.valid
    assert cluster.actions == [] and cluster.store.placement_node is None
    assert "standby: nobody is active" in c1.run_cycle()  # blind: it does not take the lease back
    assert not cluster.store.read_state().lease.valid


def test_placed_but_start_failed_backs_the_node_off(cluster: Cluster) -> None:
    cluster.runners["n1"].start_error = "start shell exited with 1"
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        "active (epoch 1): placed the scheduler on n1 but its start failed: n1: start shell exited with 1"
    )
    assert cluster.actions == [("n1", "start")] and cluster.running() == []
    assert cluster.store.placement_node == "n1"
    assert c1.incidents.backoff["n1"].until > cluster.clock.monotonic()
    assert "start_failed" in cluster.store.kinds()


def test_placement_node_unknown_waits_and_starts_nothing_elsewhere(cluster: Cluster) -> None:
    n2 = cluster.runners["n2"]
    n2.run()
    n2.reachable = False
    cluster.store.force_placement("n2", TTL)
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        "active (epoch 1): cannot see the scheduler node n2 (n2: fake node unreachable); "
        "waiting 5.0s for its placement to expire before moving it"
    )
    assert cluster.actions == [] and cluster.store.placement_node == "n2" and cluster.store.placement_version == 1


def test_placement_on_a_node_outside_the_config_waits_instead_of_crashing(cluster: Cluster) -> None:
    # e.g. a node was removed from scheduler_nodes_in_cluster while it still held the placement
    cluster.store.force_placement("old-node", TTL)
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert PLEASE_REPORT not in sentence
    assert sentence == (
        "active (epoch 1): cannot see the scheduler node old-node (not a configured node); "
        "waiting 5.0s for its placement to expire before moving it"
    )
    assert cluster.actions == []


# --- _restart_or_move -------------------------------------------------------------------


def test_dead_scheduler_is_restarted_in_place(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.runners["n1"].die()
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): scheduler was stopped on n1; restarted it in place "
        f"(attempt 1/3, up after 0.0s, running (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.actions == [("n1", "start"), ("n1", "start")]  # nothing to stop first
    assert cluster.running() == ["n1"]
    assert (cluster.store.placement_node, cluster.store.placement_version) == ("n1", 1)
    assert "restart" in cluster.store.kinds()


@pytest.mark.parametrize("fault", ["unhealthy", "two schedulers"])
def test_unhealthy_or_doubled_scheduler_is_stopped_then_restarted_in_place(cluster: Cluster, fault: str) -> None:
    c1 = active_on_n1(cluster)
    if fault == "unhealthy":
        cluster.runners["n1"].hang()
    else:
        cluster.runners["n1"].run(count=2)
    (sentence,) = tick(cluster, c1)
    state = "unhealthy" if fault == "unhealthy" else "running"
    assert sentence == (
        f"active (epoch 1): scheduler was {state} on n1; restarted it in place "
        f"(attempt 1/3, up after 0.0s, running (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.actions == [("n1", "start"), ("n1", "stop"), ("n1", "start")]
    assert len(cluster.runners["n1"].pids) == 1 and cluster.running() == ["n1"]


def test_failed_restart_in_place_is_counted(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.runners["n1"].die()
    cluster.runners["n1"].start_error = "exit 1"
    (sentence,) = tick(cluster, c1)
    assert sentence == "active (epoch 1): restart of the scheduler on n1 failed (attempt 1/3): n1: exit 1"
    assert cluster.actions == [("n1", "start"), ("n1", "start")]
    assert "start_failed" in cluster.store.kinds()


def test_restart_that_never_comes_up_is_cleaned_up(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    n1 = cluster.runners["n1"]
    n1.die()
    n1.comes_up = False
    lease_expiry = cluster.store.lease_expires_at
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): restart of the scheduler on n1 failed (attempt 1/3): not up within 3s (cleanup: stopped)"
    )
    assert cluster.actions == [("n1", "start"), ("n1", "start"), ("n1", "stop")]
    assert sum(cluster.clock.slept) >= 3  # waited with the injected sleep, not a real one
    assert cluster.store.lease_expires_at >= lease_expiry + 3  # the lease was renewed while waiting
    assert cluster.store.placement().valid


def test_move_after_max_restart_attempts_stops_before_it_starts_and_alerts(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    n1 = cluster.runners["n1"]
    n1.die()
    n1.start_error = "exit 1"
    for attempt in (1, 2, 3):
        (sentence,) = tick(cluster, c1)
        assert sentence == f"active (epoch 1): restart of the scheduler on n1 failed (attempt {attempt}/3): n1: exit 1"
    before = len(cluster.actions)
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): moved the scheduler from n1 to n2 after 3 failed restarts "
        f"(up after 0.0s, running (pid {pid(cluster, 'n2')}))"
    )
    assert cluster.actions[before:] == [("n1", "stop"), ("n2", "start")]  # stop-before-start
    assert cluster.running() == ["n2"]
    store = cluster.store
    assert (store.placement_node, store.placement_epoch, store.placement_version) == ("n2", 1, 2)
    assert "move" in store.kinds()
    assert cluster.alerters["n1"].summaries == ["scheduler moved from n1 to n2"]


def test_move_whose_start_fails_alerts_once(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster, max_restart_attempts=1)
    cluster.runners["n1"].die()
    for runner in cluster.runners.values():
        runner.start_error = "exit 1"
    (sentence,) = tick(cluster, c1)
    assert sentence == "active (epoch 1): restart of the scheduler on n1 failed (attempt 1/1): n1: exit 1"
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): moved the scheduler from n1 to n2 after 1 failed restarts, "
        "but the start there failed: n2: exit 1"
    )
    assert cluster.actions[-2:] == [("n1", "stop"), ("n2", "start")]
    assert cluster.store.placement_node == "n2"
    assert len(cluster.alerters["n1"].sent) == 1


def test_no_other_node_to_move_to_retries_in_place(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    for node in ("n2", "n3"):
        cluster.runners[node].reachable = False
        cluster.store.register(node)  # guarded by their own controllers: they do not block
    cluster.runners["n1"].die()
    cluster.runners["n1"].start_error = "exit 1"
    tick(cluster, c1)
    tick(cluster, c1)
    tick(cluster, c1)
    before = len(cluster.actions)
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): scheduler down on n1 after 3 failed restarts and no other node can take it "
        "(n1 backing off 19s, n2 unknown, n3 unknown); next try in place in 19.0s"
    )
    assert cluster.actions[before:] == []
    # Backing off: no start at all until the node's backoff is over, then one more try in place.
    # Meanwhile the placement lapses (nobody renews the placement of a dead scheduler), so the
    # retry places it afresh.
    sentences = [tick(cluster, c1)[0] for _ in range(20)]
    assert cluster.actions[before:] == [("n1", "start")]
    assert sentences[3] == (
        "active (epoch 1): no scheduler runs and no node can take it now (n1 backing off 15s, n2 unknown, n3 unknown)"
    )
    retried = [i for i, s in enumerate(sentences) if "placed the scheduler on n1 but its start failed: n1: exit 1" in s]
    assert retried == [18], sentences  # 19 s of backoff left after the first tick
    assert sentences[19] == (  # twice as long
        "active (epoch 1): scheduler down on n1 after 3 failed restarts and no other node can take it "
        "(n1 backing off 39s, n2 unknown, n3 unknown); next try in place in 39.0s"
    )


def test_single_node_crash_loop_backs_off_after_its_budget() -> None:
    """On one node there is nowhere to move to: past max_restart_attempts, restarts are spaced out."""
    cluster = Cluster(nodes=("n1",))
    try:
        c1 = active_on_n1(cluster)
        n1 = cluster.runners["n1"]
        sentences = []
        for _ in range(30):
            n1.die()  # it comes up, then dies before the next poll: a crash loop
            sentences += tick(cluster, c1)
        starts = [s for s in sentences if "restarted it in place" in s]
        assert len(starts) < 10, sentences
        assert any("it has no other node; next try in place in" in s for s in sentences)
        assert "attempt 4, after its backoff" in starts[3]
    finally:
        cluster.close()


def test_move_refused_when_the_old_node_cannot_be_confirmed_stopped(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster, max_restart_attempts=1)
    n1 = cluster.runners["n1"]
    n1.hang()
    n1.stop_fails = True
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): restart of the scheduler on n1 failed (attempt 1/1): not up within 3s (cleanup: unhealthy)"
    )
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): cannot move the scheduler off n1: could not confirm it stopped "
        f"(unhealthy (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.runners["n2"].starts == 0 and cluster.runners["n3"].starts == 0
    assert cluster.store.placement_node == "n1"


def test_move_race_lost_starts_nothing(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster, max_restart_attempts=1)
    cluster.runners["n1"].die()
    cluster.runners["n1"].start_error = "exit 1"
    tick(cluster, c1)
    cluster.store.on("set_placement", lambda: bump_version(cluster.store))
    (sentence,) = tick(cluster, c1)
    assert sentence == "active (epoch 1): lost the race to move the scheduler from n1 to n2; retrying next cycle"
    assert cluster.actions[-1] == ("n1", "stop")
    assert cluster.runners["n2"].starts == 0


@pytest.mark.parametrize("retry_count_before_alerting", [1, 5])
def test_all_nodes_failing_backs_off_and_alerts_once_per_incident(
    cluster: Cluster, retry_count_before_alerting: int
) -> None:
    for runner in cluster.runners.values():
        runner.start_error = "exit 1"
    c1 = cluster.controller("n1", retry_count_before_alerting=retry_count_before_alerting)
    sentences = [c1.run_cycle()]
    idle_cycles = 0
    for _ in range(60):
        before = len(cluster.actions)
        sentences += tick(cluster, c1)
        idle_cycles += len(cluster.actions) == before
    assert cluster.running() == []
    assert len(cluster.alerters["n1"].sent) == 1, cluster.alerters["n1"].summaries  # no alert storm
    assert any("no other node can take it" in s and "backing off" in s for s in sentences)
    assert idle_cycles >= 10  # backoff: many cycles start nothing at all
    assert {r.starts > 1 for r in cluster.runners.values()} == {True}  # every node was tried

    # Recovery ends the incident; the next incident alerts again, once.
    for runner in cluster.runners.values():
        runner.start_error = None
    for _ in range(60):
        sentences += tick(cluster, c1)
    assert "scheduler healthy" in sentences[-1]
    (node,) = cluster.running()
    for runner in cluster.runners.values():
        runner.start_error = "exit 1"
    cluster.runners[node].die()
    for _ in range(30):
        tick(cluster, c1)
    assert len(cluster.alerters["n1"].sent) == 2, cluster.alerters["n1"].summaries


# --- _start_on ----------------------------------------------------------------------------


def test_start_waits_until_the_scheduler_is_up(cluster: Cluster) -> None:
    cluster.runners["n1"].up_after_probes = 3
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        f"active (epoch 1): placed and started the scheduler on n1 (up after 0.5s, running (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.clock.slept == [0.25, 0.25]


def test_unknown_node_without_controller_blocks_a_start(cluster: Cluster) -> None:
    cluster.runners["n3"].reachable = False  # might run a scheduler; nothing says it is leashed
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        "active (epoch 1): no scheduler seen, but one may still run on n3 (unreachable; not known to run "
        "its scheduler under a leash); not placing one on n1"
    )
    assert cluster.actions == [] and cluster.running() == []
    assert cluster.store.placement_node is None and not c1.incidents.backoff
    assert cluster.alerters["n1"].summaries == ["no scheduler runs: a start is blocked"]
    tick(cluster, c1)
    assert len(cluster.alerters["n1"].sent) == 1  # once per incident


def test_unknown_node_whose_controller_reports_a_leash_does_not_block_a_start(cluster: Cluster) -> None:
    cluster.runners["n3"].reachable = False
    cluster.store.register("n3", leashed=True)  # whatever it runs stops at its deadline
    c1 = cluster.controller("n1")
    assert "placed and started the scheduler on n1" in c1.run_cycle()
    assert cluster.actions == [("n1", "start")]


def test_unknown_node_whose_controller_reports_an_unleashed_scheduler_blocks(cluster: Cluster) -> None:
    cluster.runners["n3"].reachable = False
    cluster.store.register("n3", leashed=False)  # e.g. a scheduler started there by hand
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence.endswith(
        "one may still run on n3 (unreachable; its controller last reported a scheduler that is not under "
        "a leash); not placing one on n1"
    )
    assert cluster.actions == []


def test_unknown_node_last_seen_running_unleashed_blocks(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.register("n3", leashed=True)
    cluster.runners["n3"].leashed = False
    cluster.runners["n3"].run()
    stray = pid(cluster, "n3")
    assert tick(cluster, c1)[0] == (
        f"active (epoch 1): scheduler healthy on n1 (running (pid {pid(cluster, 'n1')})); "
        f"killed stray scheduler(s) on n3 (running (pid {stray}) -> stopped); "
        "the scheduler belongs on n1"
    )
    cluster.runners["n3"].run()  # back, and n3 cannot be reached from now on
    cluster.runners["n3"].reachable = False
    c1.health.remember({"n3": cluster.runners["n3"]._result()})  # as a probe just before the cut saw it
    cluster.runners["n1"].die()
    cluster.store.placement_expires_at = cluster.store.server_now  # n1's placement lapses
    sentence = tick(cluster, c1)[0]
    assert sentence == (
        "active (epoch 1): no scheduler seen, but one may still run on "
        "n3 (unreachable; last seen running a scheduler that is not under a leash); not placing one on n1"
    )
    assert cluster.running() == ["n3"]


def test_a_dead_controller_guards_nothing_without_a_leash(cluster: Cluster) -> None:
    """Registered but reporting an unleashed scheduler: its registration alone is no guard."""
    cluster.runners["n2"].reachable = False
    cluster.store.register("n2", leashed=False)
    cluster.clock.advance(3 * TTL)  # its heartbeat is old: the controller is dead
    c1 = cluster.controller("n1")
    assert c1.run_cycle() == (
        "active (epoch 1): no scheduler seen, but one may still run on n2 (unreachable; its controller last "
        "reported a scheduler that is not under a leash); not placing one on n1"
    )
    assert cluster.actions == []


def test_node_cut_off_during_a_pause_is_stopped_by_its_leash_before_a_start_elsewhere(cluster: Cluster) -> None:
    """Paused; the scheduler node is cut off; resumed: never two schedulers.

    The cut-off controller still acts on the pause it saw last and fences nothing itself, but its
    scheduler runs under a leash that nobody renews any more: it stops at the placement deadline,
    and only after the placement expired does the active start one elsewhere.
    """
    c1 = active_on_n1(cluster)
    c2 = cluster.controller("n2")
    cluster.runners["n2"].enforce_leash(cluster.clock.monotonic)
    cluster.runners["n1"].die()
    cluster.store.force_placement("n2", TTL)
    cluster.runners["n2"].run()
    assert [s.split(":")[1].strip() for s in tick(cluster, c1, c2)] == [
        f"scheduler healthy on n2 ({cluster.runners['n2'].probe().describe()})",
        "n1 is active (epoch 1); scheduler placed on n2",
    ]
    cluster.store.set_paused(True)
    tick(cluster, c1, c2)
    assert c2.paused and [c.paused for c in cluster.store.controllers()] == [True, True]
    # n2 is cut off: from the store (its cycles fail) and from n1 (its probe is unknown).
    cluster.runners["n2"].reachable = False
    cluster.store.set_paused(False)
    sentences = []
    for _ in range(int(TTL) + 3):
        cluster.clock.advance(1.0)
        down = cluster.store.unreachable_for(c2.run_cycle)
        assert down.startswith("standby: metastore unreachable") and "paused, acting on nothing" in down
        sentences.append(c1.run_cycle())
        assert len(cluster.running()) <= 1, sentences
    assert "waiting" in sentences[0] and "for its placement to expire" in sentences[0]
    assert cluster.running() == ["n1"], sentences
    assert any("placed and started the scheduler on n1" in s for s in sentences), sentences


@pytest.mark.parametrize(("command", "started"), [("true", True), ("false", False)])
def test_fence_command_decides_whether_an_unknown_node_blocks(cluster: Cluster, command: str, started: bool) -> None:
    cluster.runners["n3"].reachable = False
    c1 = cluster.controller("n1", fence_command=command)
    sentence = c1.run_cycle()
    fence_events = [e.message for e in cluster.store.events_of("fence")]
    if started:
        assert sentence == placed(cluster, "n1")
        assert cluster.actions == [("n1", "start")]
        assert fence_events == ["fence_command for n3 succeeded"]
        assert c1.fencing.fenced == {"n3"}
    else:
        assert sentence == (
            "active (epoch 1): no scheduler seen, but one may still run on n3 (unreachable; not known to run "
            "its scheduler under a leash); not placing one on n1"
        )
        assert cluster.actions == []
        assert fence_events == ["fence_command for n3 failed (1)"]
        assert c1.fencing.fenced == set()


def test_start_refused_when_the_lease_margin_ran_out(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    store = cluster.store

    def stall() -> None:  # stalled just before starting, and the store cannot be reached now
        cluster.clock.advance(TTL)
        store.failing.add("acquire_or_renew")

    store.on("acquire_or_renew", lambda: store.on("acquire_or_renew", stall))  # the renewal in _start_on
    sentence = c1.run_cycle()
    assert (
        sentence
        == "active (epoch 1): placed the scheduler on n1 but its start failed: not starting: lease margin too small"
    )
    assert cluster.actions == []


def test_start_refused_when_the_lease_lapsed_just_before(cluster: Cluster) -> None:
    """The renewal before a start finds a new term (the lease lapsed meanwhile): nothing starts."""
    c1 = cluster.controller("n1")
    store = cluster.store
    store.on("acquire_or_renew", lambda: store.on("acquire_or_renew", lambda: cluster.clock.advance(TTL)))
    sentence = c1.run_cycle()
    assert sentence == (
        "active (epoch 1): placed the scheduler on n1 but its start failed: not starting: lost the leadership lease"
    )
    assert cluster.actions == [] and not c1.leads()


def test_lease_lost_while_waiting_for_the_start_stops_it(cluster: Cluster) -> None:
    cluster.runners["n1"].up_after_probes = 100
    c1 = cluster.controller("n1")
    store = cluster.store

    def steal() -> None:
        store.lease_holder, store.lease_host = "n2:9:other", "n2"
        store.lease_epoch += 1
        store.lease_expires_at = store.server_now + TTL

    # The renewal just before the start succeeds; the next one, while waiting, finds it taken.
    store.on("acquire_or_renew", lambda: store.on("acquire_or_renew", lambda: store.on("acquire_or_renew", steal)))
    sentence = c1.run_cycle()
    assert sentence == (
        "active (epoch 1): placed the scheduler on n1 but its start failed: "
        "lost the lease while waiting for the scheduler to come up; stopped it"
    )
    assert cluster.actions == [("n1", "start"), ("n1", "stop")]
    assert cluster.running() == []
    assert not c1.leads()


# --- fencing of a stale leader ------------------------------------------------------------


def _take_lease_during_probes(cluster: Cluster, how: str) -> None:
    """During the active's next probes its lease runs out and another controller takes it."""
    store = cluster.store

    def stale() -> None:
        if how == "controller stalled":  # e.g. SIGSTOP: both clocks move on
            cluster.clock.advance(TTL * 2)
        else:  # the server's clock ran ahead: only the store sees the lease expire
            store.advance(TTL * 2)
        assert store.acquire_or_renew("n2:9:other", "n2", TTL) is not None

    cluster.runners["n2"].on_probe = stale


@pytest.mark.parametrize("how", ["controller stalled", "server clock ran ahead"])
def test_stale_leader_cannot_place_or_start(cluster: Cluster, how: str) -> None:
    for runner in cluster.runners.values():
        runner.reachable = False
    c1 = cluster.controller("n1")
    assert "no node can take it" in c1.run_cycle()
    for node in cluster.runners:
        if node != "n1":
            cluster.store.register(node)
    for runner in cluster.runners.values():
        runner.reachable = True
    store = cluster.store
    _take_lease_during_probes(cluster, how)
    calls_before = len(store.calls)
    (sentence,) = tick(cluster, c1)
    assert "lost the race to place the scheduler on n1" in sentence
    assert cluster.actions == [] and cluster.running() == []
    assert (store.placement_node, store.placement_version, store.lease_epoch) == (None, 0, 2)
    if how == "server clock ran ahead":  # c1 still believes it leads: the store refused the write
        assert c1.leads() and "set_placement" in store.calls[calls_before:]
    # The store refuses the stale epoch, whatever the controller believes.
    assert store.set_placement("n1", c1.holder, 1, store.placement_version, TTL) is None


@pytest.mark.parametrize("how", ["controller stalled", "server clock ran ahead"])
def test_stale_leader_does_not_restart_in_place(cluster: Cluster, how: str) -> None:
    c1 = active_on_n1(cluster)
    cluster.runners["n1"].die()
    _take_lease_during_probes(cluster, how)
    (sentence,) = tick(cluster, c1)
    assert "not starting" in sentence or "lease margin too small to act" in sentence
    assert cluster.actions == [("n1", "start")]  # nothing started, nothing stopped
    assert cluster.running() == []
    assert cluster.store.lease_epoch == 2


def test_stale_leader_does_not_stop_the_scheduler_it_wanted_to_restart(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.runners["n1"].hang()
    store = cluster.store

    def stalled() -> None:  # c1 stalls past its lease; the new leader re-places the scheduler
        cluster.clock.advance(TTL * 2)
        lease = store.acquire_or_renew("n2:9:other", "n2", TTL)
        assert lease is not None
        assert store.set_placement("n1", "n2:9:other", lease.epoch, store.placement_version, TTL) is not None

    cluster.runners["n2"].on_probe = stalled
    (sentence,) = tick(cluster, c1)
    assert "lease margin too small" in sentence
    assert cluster.actions == [("n1", "start")]  # the stale leader stopped nothing
    assert cluster.running() == ["n1"]


def test_one_failed_call_after_a_freeze_does_not_fence_a_placement_the_store_still_holds(cluster: Cluster) -> None:
    """A controller frozen past its deadline: its first call fails (a ZooKeeper client
    reconnecting with a new session), but the placement is still its node's (the active kept it
    alive meanwhile). It asks once more, renews, and keeps the scheduler."""
    c1 = active_on_n1(cluster)
    c2 = cluster.controller("n2")
    cluster.runners["n1"].die()
    cluster.store.force_placement("n2", TTL)
    cluster.runners["n2"].run()
    tick(cluster, c1, c2)
    for _ in range(int(2 * TTL)):  # c2 frozen; the active renews n2's placement
        tick(cluster, c1)
    assert not c2.may_run_locally() and cluster.store.placement().valid
    cluster.store.failing.add("acquire_or_renew")
    cluster.store.on("read_state", lambda: cluster.store.failing.discard("acquire_or_renew"))
    sentence = c2.run_cycle()
    assert sentence == (
        "standby: a metastore call failed (fake metastore unreachable (acquire_or_renew)), but the store "
        "answered again and renewed this node's placement; local scheduler kept"
    )
    assert cluster.running() == ["n2"] and c2.may_run_locally()


# --- S1/S2 across controllers -------------------------------------------------------------


def test_partitioned_node_fences_itself_before_another_node_starts_a_scheduler(cluster: Cluster) -> None:
    c2 = cluster.controller("n2")
    c1 = cluster.controller("n1")
    assert c2.run_cycle() == placed(cluster, "n2")
    assert c1.run_cycle() == "standby: n2 is active (epoch 1); scheduler placed on n2"
    n2, store = cluster.runners["n2"], cluster.store
    transcript = []
    for _ in range(12):
        cluster.clock.advance(1)
        # n2 is cut off: n1 cannot reach it, and it cannot reach the metastore.
        n2.reachable = False
        transcript.append(("n1", c1.run_cycle()))
        n2.reachable = True
        assert len(cluster.running()) <= 1, transcript
        store.fail = True
        transcript.append(("n2", c2.run_cycle()))
        store.fail = False
        assert len(cluster.running()) <= 1, transcript
    assert cluster.running() == ["n1"], transcript
    assert any("self-fenced" in s for host, s in transcript if host == "n2")
    assert c1.role == "active" and store.placement_node == "n1"


def _skew_scenario(server_now: float, offset_n1: float, offset_n2: float) -> list[str]:
    """A failover story; returns every sentence with pids blanked."""
    cluster = Cluster(server_now=server_now)
    try:
        c1 = cluster.controller("n1", clock_offset=offset_n1)
        c2 = cluster.controller("n2", clock_offset=offset_n2)
        out = [c1.run_cycle(), c2.run_cycle()]
        out += tick(cluster, c1, c2)
        cluster.runners["n1"].die()
        out += tick(cluster, c1, c2)
        cluster.runners["n3"].run()
        out += tick(cluster, c1, c2)
        # n1's host dies: its scheduler and controller are gone, the node cannot be reached
        cluster.runners["n1"].die()
        cluster.runners["n1"].reachable = False
        for _ in range(8):
            out += tick(cluster, c2)
        cluster.store.fail = True
        for _ in range(6):
            out += tick(cluster, c2)
        out.append(",".join(cluster.running()))
        return [re.sub(r"pid [\d, ]+", "pid N", s) for s in out]
    finally:
        cluster.close()


@pytest.mark.parametrize(
    ("server_now", "offset_n1", "offset_n2"),
    [(1_700_000_300.0, 0.0, 0.0), (1_699_999_700.0, 0.0, 0.0), (500.0, 240.0, -180.0), (1_700_000_000.0, 600, 0)],
)
def test_clock_disagreement_of_minutes_does_not_change_the_outcome(
    server_now: float, offset_n1: float, offset_n2: float
) -> None:
    baseline = _skew_scenario(1_700_000_000.0, 0.0, 0.0)
    assert "placed and started the scheduler on n1" in baseline[0]
    assert any("killed stray" in s for s in baseline) and any("self-fenced" in s for s in baseline)
    assert _skew_scenario(server_now, offset_n1, offset_n2) == baseline


# --- shutdown -----------------------------------------------------------------------------


def test_shutdown_stops_the_local_scheduler_and_releases_everything(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    c2 = cluster.controller("n2")
    c2.run_cycle()
    sentence = c1.shutdown()
    assert re.fullmatch(
        r"stopped the local scheduler \(running \(pid \d+\) -> stopped\); released the placement; "
        r"released the leadership lease \(epoch 1\)",
        sentence,
    )
    store = cluster.store
    assert cluster.actions == [("n1", "start"), ("n1", "stop")] and cluster.running() == []
    assert store.placement_node is None and not store.read_state().lease.valid
    assert [c.host for c in store.controllers()] == ["n2"]
    assert store.events_of("stop")[-1].host == "n1"
    assert c1.role == "stopped" and not c1.leads() and not c1.may_run_locally()
    # A standby takes over within one poll.
    (s2,) = tick(cluster, c2)
    assert s2 == placed(cluster, "n2", epoch=2)


def test_shutdown_of_the_active_records_its_node_stopped(cluster: Cluster) -> None:
    """Else `status` shows the stopped scheduler running until another active looks (a single host: never)."""
    c1 = active_on_n1(cluster)
    c1.run_cycle()
    assert {o.node: o.state for o in cluster.store.observations()}["n1"] == "running"
    c1.shutdown()
    seen = {o.node: (o.state, o.pids) for o in cluster.store.observations()}
    assert seen["n1"] == ("stopped", ())
    assert set(seen) == set(c1.runners)  # the other nodes' last looks are kept


def test_shutdown_while_paused_leaves_the_scheduler_alone(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.set_paused(True)
    tick(cluster, c1)
    sentence = c1.shutdown()
    assert sentence == "paused: left the local scheduler as it is; released the leadership lease (epoch 1)"
    assert cluster.running() == ["n1"] and cluster.store.placement_node == "n1"


def test_shutdown_with_the_metastore_down_still_stops_the_local_scheduler(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.fail = True
    running = pid(cluster, "n1")
    sentence = c1.shutdown()
    assert sentence == (
        f"stopped the local scheduler (running (pid {running}) -> stopped); could not release the placement "
        "(fake metastore unreachable (release_placement)); metastore unreachable (fake metastore unreachable (release))"
    )
    assert "could not release the placement (fake metastore unreachable (release_placement))" in sentence
    assert sentence.endswith("metastore unreachable (fake metastore unreachable (release))")
    assert cluster.running() == []


def test_shutdown_of_a_standby_without_scheduler_releases_nothing_it_does_not_hold(cluster: Cluster) -> None:
    active_on_n1(cluster)
    c2 = cluster.controller("n2")
    c2.run_cycle()
    assert c2.shutdown() == "nothing held"
    assert cluster.running() == ["n1"] and cluster.store.placement_node == "n1"
    assert [c.host for c in cluster.store.controllers()] == ["n1"]


def test_make_config_builds_a_valid_test_config() -> None:
    config = make_config("n2", lease_ttl=7)
    assert config.current_host == "n2" and config.nodes == ("n1", "n2", "n3")
    assert (config.poll_frequency, config.lease_ttl, config.metastore_timeout) == (1, 7, 0.5)


# --- switchover -------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "grace"), [("controlled", None), ("forced", 0.0)])
def test_switchover_stops_the_old_scheduler_before_starting_the_new_one(
    cluster: Cluster, mode: str, grace: float | None
) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.request_switchover("n2", mode)
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        f"active (epoch 1): {mode} switchover from n1 to n2: stopped ['n1'], started: "
        f"up after 0.0s, running (pid {pid(cluster, 'n2')})"
    )
    assert cluster.actions == [("n1", "start"), ("n1", "stop"), ("n2", "start")]
    assert cluster.runners["n1"].graces == [grace]
    assert cluster.running() == ["n2"] and cluster.store.placement_node == "n2"
    assert cluster.store.switchover is None and "switchover_done" in cluster.store.kinds()
    assert cluster.store.events_of("switchover_done")[-1].message == sentence.removeprefix("active (epoch 1): ")
    (sentence,) = tick(cluster, c1)
    assert sentence == healthy(cluster, "n2")


def test_switchover_to_where_it_already_runs_is_done_at_once(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.request_switchover("n1", "controlled")
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        f"active (epoch 1): switchover to n1: the scheduler already runs there (running (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.actions == [("n1", "start")] and cluster.store.switchover is None
    assert cluster.store.kinds()[-1] == "switchover_done"


@pytest.mark.parametrize(
    ("target", "setup", "reason"),
    [
        ("n9", None, "not in scheduler_nodes_in_cluster"),
        ("n2", "target_unreachable", "its scheduler is unknown: n2: fake node unreachable"),
        ("n2", "other_unreachable", "cannot see n3"),
    ],
)
def test_switchover_is_refused_when_it_cannot_be_safe(
    cluster: Cluster, target: str, setup: str | None, reason: str
) -> None:
    c1 = active_on_n1(cluster)
    if setup == "target_unreachable":
        cluster.runners["n2"].reachable = False
    elif setup == "other_unreachable":
        cluster.runners["n3"].reachable = False
    cluster.store.request_switchover(target, "controlled")
    (sentence,) = tick(cluster, c1)
    assert sentence == f"active (epoch 1): refused the switchover to {target}: {reason}"
    assert cluster.actions == [("n1", "start")] and cluster.running() == ["n1"]
    assert cluster.store.switchover is None
    assert cluster.store.kinds()[-1] == "switchover_refused"


def test_switchover_waits_while_the_old_scheduler_will_not_stop(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.runners["n1"].stop_fails = True
    cluster.store.request_switchover("n2", "controlled")
    old = pid(cluster, "n1")
    (sentence,) = tick(cluster, c1)
    assert sentence == f"active (epoch 1): switchover to n2: the scheduler on n1 is still running (pid {old}); retrying"
    assert ("n2", "start") not in cluster.actions and cluster.store.switchover == ("n2", "controlled")


# --- Airflow's health check -------------------------------------------------------------------


def test_a_failing_health_check_restarts_only_after_n_failures_in_a_row(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scheduler_failover_controller.controller import health as health_module

    answers: list[str | None] = []
    urls: list[str] = []

    def fake_check(url: str, timeout: float) -> str | None:
        urls.append(url)
        return answers.pop(0) if answers else None

    monkeypatch.setattr(health_module, "check_health", fake_check)
    c1 = active_on_n1(cluster, scheduler_health_url="http://{node}:8974/health", scheduler_health_failures=3)
    answers.extend(["health check answered HTTP 503", None, "health check failed: timed out"])
    (sentence,) = tick(cluster, c1)
    assert sentence == healthy(cluster, "n1")  # one failure is not a restart
    (sentence,) = tick(cluster, c1)
    assert sentence == healthy(cluster, "n1")  # and a success resets the count
    answers.extend(["health check answered HTTP 503"] * 3)
    for _ in range(2):
        (sentence,) = tick(cluster, c1)
        assert sentence == healthy(cluster, "n1")
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): scheduler was unhealthy on n1 (health check answered HTTP 503 3 times in a row); "
        f"restarted it in place (attempt 1/3, up after 0.0s, running (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.actions == [("n1", "start"), ("n1", "stop"), ("n1", "start")]
    assert urls[0] == "http://n1:8974/health"


def test_a_new_scheduler_gets_its_start_timeout_to_bring_up_its_health_server(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scheduler_failover_controller.controller import health as health_module

    monkeypatch.setattr(health_module, "check_health", lambda url, timeout: "health check failed: refused")
    c1 = active_on_n1(
        cluster,
        scheduler_health_url="http://{node}:8974/health",
        scheduler_health_failures=2,
        scheduler_start_timeout=10,
    )
    # The grace counts from the first look at this scheduler process (the first tick).
    for _ in range(10):  # never answered yet, within scheduler_start_timeout: not counted
        (sentence,) = tick(cluster, c1)
        assert sentence == healthy(cluster, "n1")
        assert c1.last_probes["n1"].detail == "starting: health check failed: refused"
    (sentence,) = tick(cluster, c1, seconds=1.5)  # grace over: failure 1 of 2
    assert sentence == healthy(cluster, "n1")
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): scheduler was unhealthy on n1 (health check failed: refused 2 times in a row); "
        f"restarted it in place (attempt 1/3, up after 0.0s, running (pid {pid(cluster, 'n1')}))"
    )


# --- the leash and renewals on their own clock ------------------------------------------------


def test_a_start_hands_the_placement_deadline_to_the_leash(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    assert "placed and started the scheduler on n1" in c1.run_cycle()
    kinds = [kind for kind, _d in cluster.runners["n1"].deadlines]
    assert "start" in kinds
    start_deadline = dict(cluster.runners["n1"].deadlines)["start"]
    # the placement's server expiry less the safety margin, measured from before the renewal
    assert start_deadline == pytest.approx(cluster.clock.now + TTL - c1.margin, abs=0.01)
    before = len(cluster.runners["n1"].deadlines)
    tick(cluster, c1)
    renewed = cluster.runners["n1"].deadlines[before:]
    assert renewed and renewed[-1][0] == "renew"
    assert renewed[-1][1] == pytest.approx(cluster.clock.now + TTL - c1.margin, abs=0.01)


def test_a_dead_scheduler_s_placement_is_not_renewed_by_its_own_controller(cluster: Cluster) -> None:
    """Else an active that cannot reach the node would wait for its placement for ever."""
    c1 = cluster.controller("n1")
    c2 = cluster.controller("n2")
    cluster.store.acquire_or_renew(c1.holder, "n1", TTL)
    c1.run_cycle()
    cluster.store.force_placement("n2", TTL)
    cluster.runners["n2"].run()
    assert c2.run_cycle() == "standby: n1 is active (epoch 1); scheduler placed on n2"
    cluster.runners["n2"].die()
    expires = cluster.store.placement_expires_at
    for _ in range(3):
        cluster.clock.advance(1.0)
        c2.run_cycle()
        c2.renew()
    assert cluster.store.placement_expires_at == expires


def test_renew_keeps_lease_and_placements_without_a_cycle(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    for _ in range(int(3 * TTL)):
        cluster.clock.advance(1.0)
        assert c1.renew() is False
    assert c1.leads() and cluster.store.lease().valid and cluster.store.placement().valid
    assert cluster.store.placement_node == "n1" and cluster.running() == ["n1"]


def test_renew_renews_a_remote_placement_seen_healthy(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    cluster.runners["n2"].run()
    assert c1.run_cycle() == (
        f"active (epoch 1): adopted the scheduler already running on n2 (running (pid {pid(cluster, 'n2')}))"
    )
    assert tick(cluster, c1)[0] == healthy(cluster, "n2")
    assert c1.renewals.renewing == {"n2": True}  # n2 has no controller of its own: its leash is renewed too
    for _ in range(int(3 * TTL)):
        cluster.clock.advance(1.0)
        c1.renew()
        wait_for(lambda: not c1.renewals.leash_pending, 5, "the background leash renewal")
    assert cluster.store.placement().valid and cluster.store.placement_node == "n2"
    assert [kind for kind, _d in cluster.runners["n2"].deadlines].count("renew") >= int(3 * TTL)


def test_renew_wakes_a_standby_when_the_lease_is_free(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    c2 = cluster.controller("n2")
    c2.run_cycle()
    assert c2.renew() is False
    cluster.clock.advance(TTL + 1)  # n1's controller is gone
    assert c2.renew() is True
    assert "became" not in c1.role


def test_sigterm_during_a_start_wait_gives_up_at_once(cluster: Cluster) -> None:
    cluster.runners["n1"].up_after_probes = 10**6  # would wait scheduler_start_timeout
    c1 = cluster.controller("n1")
    cluster.runners["n1"].on_probe = c1.stopping.set
    sentence = c1.run_cycle()
    assert sentence == (
        "active (epoch 1): placed the scheduler on n1 but its start failed: "
        "gave up the start to shut down (cleanup: stopped)"
    )
    assert sum(cluster.clock.slept) < 1.0
    assert cluster.actions == [("n1", "start"), ("n1", "stop")]


def test_store_down_at_start_up_leaves_a_leashed_scheduler_to_its_leash(cluster: Cluster) -> None:
    cluster.runners["n1"].run()  # started by a previous incarnation, under its leash
    c1 = cluster.controller("n1")
    sentence = cluster.store.unreachable_for(c1.run_cycle)
    assert sentence == (
        "starting: metastore unreachable (fake metastore unreachable (acquire_or_renew)); the local scheduler "
        f"({cluster.runners['n1'].probe().describe()}) is left to its leash, which stops it at its placement "
        "deadline unless the store answers first"
    )
    assert cluster.actions == []


def test_store_down_at_start_up_self_fences_an_unleashed_scheduler(cluster: Cluster) -> None:
    cluster.runners["n1"].run()
    cluster.runners["n1"].leashed = False  # started by hand: nothing else would stop it
    c1 = cluster.controller("n1")
    running = pid(cluster, "n1")
    sentence = cluster.store.unreachable_for(c1.run_cycle)
    assert sentence == (
        "starting: metastore unreachable (fake metastore unreachable (acquire_or_renew)); self-fenced: stopped "
        f"the local scheduler (running (pid {running}) -> stopped) before its placement could expire"
    )
    assert cluster.running() == []


def test_a_new_active_learns_the_leash_of_nodes_from_the_last_observations(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.runners["n3"].leashed = False
    cluster.runners["n3"].run()
    cluster.runners["n3"].stop_fails = True  # a stray that cannot be killed
    tick(cluster, c1)
    c2 = cluster.controller("n2")
    cluster.clock.advance(TTL + 1)  # n1's controller is gone; its host with it
    cluster.runners["n1"].die()
    cluster.runners["n1"].reachable = False
    cluster.runners["n3"].reachable = False
    c2.run_cycle()
    assert cluster.store.lease_host == "n2"
    seen = c2.health.last_seen("n3")
    assert seen is not None
    assert not seen.leashed and seen.state is SchedulerState.RUNNING


# --- identity ---------------------------------------------------------------------------------


def test_a_second_controller_in_this_hosts_row_stops_this_one_and_leaves_the_scheduler(cluster: Cluster) -> None:
    """Two controllers with one current_host write one registry row: the first heartbeat of the
    other in it gives it away. This one stops acting, renews nothing and, at shutdown, leaves
    the node's scheduler and placement to the other."""
    c1 = active_on_n1(cluster)
    twin = cluster.controller("n1")  # the same current_host: a second holder
    twin._heartbeat()
    sentence = tick(cluster, c1)[0]
    assert sentence == "stopping: another controller runs as n1 (pid 2); current_host must be unique"
    assert c1.duplicate is not None
    assert any(e.kind == "duplicate" for e in cluster.store.events(10))
    assert c1.renew() is False
    assert c1.shutdown() == (
        "left the local scheduler and its placement to the other controller on n1; "
        "released the leadership lease (epoch 1)"
    )
    assert cluster.running() == ["n1"]


def test_a_predecessors_row_is_no_duplicate(cluster: Cluster) -> None:
    """A restarted controller finds its dead predecessor's row: its heartbeat does not move."""
    old = cluster.controller("n1")
    old._heartbeat()
    new = cluster.controller("n1")
    assert new.other_live_controller() is None
    assert "another controller" not in new.run_cycle()
    assert new.duplicate is None


def test_a_lease_whose_session_expired_leads_nothing(cluster: Cluster) -> None:
    """A ZooKeeper session expires and the client connects a new one before the lease's deadline
    (measured from the last renewal) runs out: the lease went with its session, so nothing may be
    done as leader on it, even before the next renewal says so; the next cycle starts a new term."""
    cluster.store.session_id = 1
    c1 = active_on_n1(cluster)
    assert c1.leads()
    cluster.store.expire_session()
    assert not c1.leads()
    (sentence,) = tick(cluster, c1, seconds=0.1)
    assert sentence.startswith("active (epoch 2)") and c1.leads(), sentence


def test_renewals_take_over_the_leash_of_a_node_whose_controller_went_quiet_between_cycles(
    cluster: Cluster,
) -> None:
    """n2 runs the scheduler and its own controller renews its leash; that controller dies. The
    renewals (their own clock) take its leash over as soon as its heartbeat is stale, without
    waiting for a cycle: a cycle slowed by strays must not let the leash lapse."""
    c1 = cluster.controller("n1")
    cluster.store.register("n2")
    cluster.runners["n2"].run()
    c1.run_cycle()
    assert tick(cluster, c1)[0] == healthy(cluster, "n2")
    assert c1.renewals.renewing == {"n2": False}  # n2's own controller renews its leash
    before = [kind for kind, _d in cluster.runners["n2"].deadlines].count("renew")
    for _ in range(4):  # no cycle: n2's controller is silent from now on
        cluster.clock.advance(c1.config.renew_interval)
        c1.renew()
        wait_for(lambda: not c1.renewals.leash_pending, 5, "the background leash renewal")
    assert c1.renewals.renewing == {"n2": True}
    assert [kind for kind, _d in cluster.runners["n2"].deadlines].count("renew") > before
