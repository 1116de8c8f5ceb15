"""The Prometheus metrics: the controller's state at each scrape, its cycle durations, the process.

Imported only when the HTTP API is on (``http_port``, see :func:`.daemon.run`): prometheus_client
costs memory that a controller without it need not pay.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .metrics_events import event_metrics

if TYPE_CHECKING:
    from .controller.cycle import Controller


class ControllerCollector(Collector):
    """What the controller knows, read from it at each scrape (never stale, nothing to update).

    Read from the HTTP thread: role and epoch under the term's lock; the cycle count, the last
    cycle's duration and the last probes are each replaced whole by the cycle, never changed in place.
    """

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
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
            "sfc_scheduler_running", "1 if the node's scheduler was running at the latest probe", labels=["node"]
        )
        for node, probe in sorted(c.last_probes.items()):
            running.add_metric([node], 1 if probe.state.value == "running" else 0)
        yield running
        yield from event_metrics(c)


class Metrics:
    """The registry ``/metrics`` serves, with the cycle-duration histogram the loop feeds."""

    def __init__(self, controller: Controller) -> None:
        self.registry = CollectorRegistry()
        self.state = ControllerCollector(controller)
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
