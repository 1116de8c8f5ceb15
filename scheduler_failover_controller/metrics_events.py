"""The metrics the alert rules need beside the controller's state: its events, and unknown nodes.

Read at each scrape from the controller's :class:`~.event_hook.EventHook` (its counters are only
ever increased) and from the last probes (replaced whole by the cycle).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .probe_result import SchedulerState

if TYPE_CHECKING:
    from .controller.cycle import Controller


def event_metrics(controller: Controller) -> Iterator[Metric]:
    """``sfc_events_total{kind}``, ``sfc_self_fences_total``, the event_command counters and
    ``sfc_scheduler_unknown{node}``."""
    hooks = controller.hooks
    events = CounterMetricFamily(
        "sfc_events", "Events this controller recorded since it started, by history kind", labels=["kind"]
    )
    for kind, count in sorted(dict(hooks.counts).items()):
        events.add_metric([kind], count)
    yield events
    yield CounterMetricFamily(
        "sfc_self_fences", "Times this controller stopped its own node's scheduler (self-fence)", hooks.self_fences
    )
    yield CounterMetricFamily(
        "sfc_event_command_failures", "event_command runs that failed, timed out or could not start", hooks.failures
    )
    yield CounterMetricFamily(
        "sfc_event_command_dropped", "Events dropped because event_command's queue was full", hooks.dropped_total
    )
    unknown = GaugeMetricFamily(
        "sfc_scheduler_unknown", "1 if the latest probe could not tell the node's scheduler state", labels=["node"]
    )
    for node, probe in sorted(controller.last_probes.items()):
        unknown.add_metric([node], 1 if probe.state is SchedulerState.UNKNOWN else 0)
    yield unknown
