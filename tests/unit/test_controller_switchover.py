"""The controller's switchover on fakes: stop the old scheduler before the new one starts, or refuse."""

from __future__ import annotations

import pytest

from .controller_support import active_on_n1, healthy, pid, tick
from .fakes import Cluster

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


@pytest.mark.parametrize("target", ["n2", "n9"])  # carried out, and refused
def test_the_outcome_is_recorded_before_the_request_is_cleared(cluster: Cluster, target: str) -> None:
    """A CLI without request ids reads the history once it finds the request gone: the outcome is there."""
    c1 = active_on_n1(cluster)
    at_clear: list[list[object]] = []
    cluster.store.on("clear_switchover", lambda: at_clear.append(list(cluster.store.kinds())))
    cluster.store.request_switchover(target, "controlled")
    tick(cluster, c1)
    expected = "switchover_done" if target == "n2" else "switchover_refused"
    assert len(at_clear) == 1 and at_clear[0][-1] == expected, at_clear
    assert cluster.store.switchover is None
