"""Colocation on fakes with an injected clock: a dependent follows its leader, never moves it;
anti-colocated services keep off each other's nodes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scheduler_failover_controller.config.services import SCHEDULER
from scheduler_failover_controller.controller.colocation import Constraint, related
from scheduler_failover_controller.controller.cycle import Controller

from .services_support import Services, spec


@pytest.fixture
def services() -> Iterator[Services]:
    s = Services((spec("trig", colocate_with=SCHEDULER), spec("beat", anti=(SCHEDULER,))))
    yield s
    s.close()


def cycle(controllers: dict[str, Controller], rounds: int = 1) -> dict[str, str]:
    out = {}
    for _ in range(rounds):
        for name, controller in controllers.items():
            out[name] = controller.run_cycle()
    return out


def test_relations_are_read_both_ways_for_anti_colocation() -> None:
    specs = (spec("trig", colocate_with=SCHEDULER), spec("beat", anti=(SCHEDULER,)))
    assert related("trig", specs) == (SCHEDULER, ())
    assert related("beat", specs) == ("", (SCHEDULER,))
    assert related(SCHEDULER, specs) == ("", ("beat",))  # the scheduler keeps off beat's node too


def test_constraint_bars_what_it_must() -> None:
    nodes = ("n1", "n2", "n3")
    assert Constraint(SCHEDULER, "n2").barred(nodes) == {
        "n1": "follows scheduler is on n2",
        "n3": "follows scheduler is on n2",
    }
    assert set(Constraint(SCHEDULER, None).barred(nodes)) == set(nodes)  # no leader placed: nowhere
    assert Constraint("", None, {"n1": "beat"}).barred(nodes) == {"n1": "beat placed there"}
    assert set(Constraint("", None, {}, "down").barred(nodes)) == set(nodes)


def test_placed_with_its_leader_and_apart_from_the_other(services: Services) -> None:
    n1 = services.fleet("n1")
    cycle(n1, 2)
    assert services.running(SCHEDULER) == ["n1"]
    assert services.running("trig") == ["n1"]
    assert services.running("beat") == ["n2"]


def test_the_dependent_follows_its_leader_stop_before_start(services: Services) -> None:
    n1 = services.fleet("n1")
    cycle(n1, 2)
    services.store.request_switchover("n3", "controlled")  # the scheduler's
    cycle(n1, 2)
    assert services.running(SCHEDULER) == ["n3"] and services.running("trig") == ["n3"]
    trig = [a for a in services.actions[-4:]]
    assert ("n1", "stop") in trig and trig.index(("n1", "stop")) < trig.index(("n3", "start"))
    events = [e for e in services.store.events() if e.service == "trig" and e.kind == "switchover_done"]
    assert events and "trig follows scheduler to n3" in events[-1].message


def test_the_dependent_never_moves_its_leader(services: Services) -> None:
    n1 = services.fleet("n1")
    cycle(n1, 2)
    trig = services.store.for_service("trig")
    trig.request_switchover("n2", "controlled")
    sentence = n1["trig"].run_cycle()
    assert "refused the switchover to n2: follows scheduler is on n1" in sentence
    assert services.running(SCHEDULER) == ["n1"] and services.running("trig") == ["n1"]


def test_a_colocated_service_that_fails_to_start_stays_with_its_leader(services: Services) -> None:
    n1 = services.fleet("n1")
    cycle(n1, 2)
    runner = services.runners["trig"]["n1"]
    runner.start_error = "exit 1"
    runner.die()
    for _ in range(8):
        services.clock.advance(1)
        cycle(n1)
    assert services.running("trig") == [] and services.running(SCHEDULER) == ["n1"]
    assert services.store.for_service("trig").read_state().placement.node in (None, "n1")
    assert "trig cannot start on n1 beside scheduler" in [e.message for e in services.store.events_of("alert")][-1]


def test_a_dependent_running_where_it_may_not_is_stopped_not_adopted(services: Services) -> None:
    n1 = services.fleet("n1")
    n1[SCHEDULER].run_cycle()
    services.runners["trig"]["n2"].run()  # by hand, away from its leader
    sentence = n1["trig"].run_cycle()
    assert "killed stray" in sentence and services.running("trig") == []
    n1["trig"].run_cycle()
    assert services.running("trig") == ["n1"]
