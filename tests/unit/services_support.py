"""A fleet of service controllers on fakes: one store, one clock, fake runners per service and node."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from scheduler_failover_controller.config.services import SCHEDULER, ServiceSpec
from scheduler_failover_controller.controller.colocation import colocation_for
from scheduler_failover_controller.controller.cycle import Controller
from scheduler_failover_controller.controller.fleet import Fleet
from scheduler_failover_controller.nodes.base import NodeRunner

from .fakes import NODES, FakeClock, FakeRunner, FakeStore, RecordingAlerter, make_config


def spec(name: str, colocate_with: str = "", anti: tuple[str, ...] = (), nodes: tuple[str, ...] = NODES) -> ServiceSpec:
    return ServiceSpec(name, f"start-{name}", "", f"{name}-match", 3.0, 3.0, "", nodes, colocate_with, anti)


@dataclass
class Services:
    """Every node runs a controller per service (``fleet(host)``); ``runners[service][node]`` is the truth."""

    specs: tuple[ServiceSpec, ...]
    nodes: tuple[str, ...] = NODES
    runners: dict[str, dict[str, FakeRunner]] = field(default_factory=dict)
    fleets: dict[str, dict[str, Controller]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clock = FakeClock()
        self.store = FakeStore(clock=self.clock)
        self.actions: list[tuple[str, str]] = []
        for name in (SCHEDULER, *(s.name for s in self.specs)):
            self.runners[name] = {n: FakeRunner(n, actions=self.actions) for n in self.nodes}

    def fleet(self, host: str) -> dict[str, Controller]:
        """The controllers of one daemon on ``host``: the scheduler's, then each service's."""
        base = make_config(host, self.nodes)
        config = replace(base, service_names=tuple(s.name for s in self.specs), service_specs=self.specs)
        fleet = Fleet(host, len(self.fleets) + 1)
        out: dict[str, Controller] = {}
        for name in (SCHEDULER, *(s.name for s in self.specs)):
            view = config.for_service(name)
            store = self.store.for_service(name)
            runners: dict[str, NodeRunner] = {n: r for n, r in self.runners[name].items() if n in view.nodes}
            runners.setdefault(host, self.runners[name][host])
            out[name] = Controller(
                view,
                store,
                runners,
                RecordingAlerter(view),
                monotonic=self.clock.monotonic,
                sleep=self.clock.sleep,
                pid=len(self.fleets) + 1,
                fleet=fleet,
                colocation=colocation_for(self.specs, name, self.store),
            )
        self.fleets[host] = out
        return out

    def running(self, service: str) -> list[str]:
        return [n for n, r in self.runners[service].items() if r.running]

    def close(self) -> None:
        for controllers in self.fleets.values():
            for controller in controllers.values():
                controller._pool.shutdown(wait=True)
                controller._renewal_pool.shutdown(wait=True)
