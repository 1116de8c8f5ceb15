"""A controller that cannot see its own node leaves the lease to one that can (fake store)."""

from __future__ import annotations

from typing import Any, cast

from scheduler_failover_controller.controller.blind import BLIND_ROLE, Blindness
from scheduler_failover_controller.exceptions import MetastoreError
from scheduler_failover_controller.metastore.base import ClusterState, ControllerInfo, Lease, Metastore, Placement
from scheduler_failover_controller.probe_result import ProbeResult, SchedulerState


class _Store:
    def __init__(self, *infos: ControllerInfo) -> None:
        self.infos = list(infos)
        self.down = False

    def controllers(self) -> list[ControllerInfo]:
        if self.down:
            raise MetastoreError("down")
        return self.infos


def _info(host: str, role: str = "standby", age: float = 1.0) -> ControllerInfo:
    return ControllerInfo(host, f"{host}:1", 1, "x", role, 100.0 - age, 0.0, server_now=100.0)


def _state(node: str | None, remaining: float) -> ClusterState:
    return ClusterState(
        Lease("n1:1", "n1", 3, 110.0, 100.0), Placement(node, 3, 100.0 + remaining, 1, 100.0), False, 100.0
    )


def _blind(store: _Store) -> Blindness:
    blind = Blindness("n1", cast(Metastore, cast(Any, store)), ttl=10.0)
    blind.note(ProbeResult("n1", SchedulerState.UNKNOWN, detail="cannot list processes: EMFILE"))
    return blind


def test_a_blind_controller_abstains_only_while_another_is_alive() -> None:
    store = _Store(_info("n1"), _info("n2"))
    blind = _blind(store)
    assert blind.abstains() and blind.why.startswith("cannot list")
    store.infos = [_info("n1"), _info("n2", age=11.0)]  # the other is silent
    assert not blind.abstains()
    store.down = True
    assert not blind.abstains()
    blind.note(ProbeResult("n1", SchedulerState.STOPPED))
    store.down, store.infos = False, [_info("n2")]
    assert not blind.abstains()  # sees again


def test_a_blind_active_steps_down_once_its_own_placement_has_expired() -> None:
    blind = _blind(_Store(_info("n1", "active"), _info("n2")))
    assert blind.steps_down(_state("n1", 3.0)) == []  # its leash still holds the scheduler there
    assert blind.steps_down(_state("n1", -0.5)) == ["n2"]
    assert blind.steps_down(_state("n2", 3.0)) == ["n2"]
    assert blind.steps_down(_state(None, 0.0)) == ["n2"]
    assert not _blind(_Store(_info("n1", "active"))).steps_down(_state(None, 0.0))  # nobody to take it


def test_a_blind_controllers_node_is_not_preferred_for_a_new_placement() -> None:
    store = _Store(_info("n1", BLIND_ROLE), _info("n2", "active"))
    blind = Blindness("n2", cast(Metastore, cast(Any, store)), ttl=10.0)
    assert blind.preferred("n1") is None
    assert blind.preferred("n2") == "n2"
    assert blind.preferred(None) is None
    store.down = True
    assert blind.preferred("n1") == "n1"
    assert _blind(_Store()).role("standby") == BLIND_ROLE
    assert _blind(_Store()).role("active") == "active"
