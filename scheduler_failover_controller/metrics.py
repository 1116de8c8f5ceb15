"""The Prometheus metrics: the controller's state at each scrape, its cycle durations, the process.

The fleet's series (leadership, epoch, cycles) have no service label; each service's own series
(its probes, events and self-fences) carry ``service``, the scheduler's ``service="scheduler"``.

Imported only when the HTTP API is on (``http_port``, see :func:`.daemon.run`): prometheus_client
costs memory that a controller without it need not pay.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .config.services import SCHEDULER
from .metrics_events import event_metrics

if TYPE_CHECKING:
    from .controller.cycle import Controller


class ControllerCollector(Collector):
    """What the controller knows, read from it at each scrape (never stale, nothing to update).

    Read from the HTTP thread: role and epoch under the term's lock; the cycle count, the last
    cycle's duration and the last probes are each replaced whole by the cycle, never changed in place.
    """

    def __init__(self, controller: Controller, services: Mapping[str, Controller] | None = None) -> None:
        self.controller = controller
        self.services: dict[str, Controller] = {SCHEDULER: controller, **(services or {})}
        self.last_cycle_seconds = 0.0

    def collect(self) -> Iterator[Metric]:
        c = self.controller
        yield GaugeMetricFamily(
            "sfc_active", "1 while this controller holds the leadership lease", 1 if c.role == "active" else 0
        )
        yield GaugeMetricFamily("sfc_epoch", "The leadership epoch (fencing token) this controller last saw", c.epoch)
        yield CounterMetricFamily("sfc_cycles", "Control cycles run since the controller started", c.cycles)
        yield GaugeMetricFamily(
            "sfc_last_cycle_seconds", "How long the latest control cycle took", self.last_cycle_seconds
        )
        running = GaugeMetricFamily(
            "sfc_scheduler_running",
            "1 if the service (the scheduler, or another) was running on the node at the latest probe",
            labels=["node", "service"],
        )
        for name, one in self.services.items():
            for node, probe in sorted(one.last_probes.items()):
                running.add_metric([node, name], 1 if probe.state.value == "running" else 0)
        yield running
        yield from event_metrics(c, self.services)


class Metrics:
    """The registry ``/metrics`` serves, with the cycle-duration histogram the loop feeds."""

    def __init__(self, controller: Controller, services: Mapping[str, Controller] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.state = ControllerCollector(controller, services)
        self.registry.register(self.state)
        ProcessCollector(registry=self.registry)
        self.cycles = Histogram("sfc_cycle_duration_seconds", "How long control cycles take", registry=self.registry)

    def exposition(self) -> tuple[str, bytes]:
        """prometheus_client's text exposition of the registry."""
        return CONTENT_TYPE_LATEST, generate_latest(self.registry)

    def observe_cycle(self, seconds: float) -> None:
        """Record one control cycle's duration."""
        self.state.last_cycle_seconds = seconds
        self.cycles.observe(seconds)
