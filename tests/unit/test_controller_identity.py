"""The controller's identity on fakes: a second controller in this host's row, a predecessor's row, an
expired session, and a quiet controller's leash taken over."""

from __future__ import annotations

from tests.support.waiting import wait_for

from .controller_support import active_on_n1, healthy, tick
from .fakes import Cluster

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


def test_of_two_controllers_that_see_each_other_exactly_one_stops(cluster: Cluster) -> None:
    """Their heartbeats overwrite the one row in turn, so each may see the other: the one whose
    holder sorts first steps aside, and the other keeps acting, whichever looked first."""
    c1 = active_on_n1(cluster)
    twin = cluster.controller("n1")
    twin._heartbeat()
    assert twin.identity.duplicate() is None  # it sees c1's holder, which sorts first: it stays
    c1._heartbeat()
    assert twin.identity.duplicate() is None
    twin._heartbeat()
    assert c1.identity.duplicate() is not None
