"""The metrics the alert rules need beside the controller's state: its events, and unknown nodes.

Read at each scrape from the controller's :class:`~.event_hook.EventHook` (its counters are only
ever increased) and from the last probes (replaced whole by the cycle).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .probe_result import SchedulerState

if TYPE_CHECKING:
    from .controller.cycle import Controller
    from .event_hook import EventHook


def event_metrics(controller: Controller, services: Mapping[str, Controller]) -> Iterator[Metric]:
    """``sfc_events_total{kind,service}``, ``sfc_self_fences_total{service}``, the event_command
    counters (the fleet's: ``controller``'s) and ``sfc_scheduler_unknown{node,service}``.

    ``services`` maps each service (the scheduler included) to its controller. Where services share
    one event hook, its counts are the first's: a count is never exported twice.
    """
    hooks = controller.hooks
    own = _own_hooks(services)
    events = CounterMetricFamily(
        "sfc_events", "Events this controller recorded since it started, by history kind", labels=["kind", "service"]
    )
    for name, hook in own:
        for kind, count in sorted(dict(hook.counts).items()):
            events.add_metric([kind, name], count)
    yield events
    fences = CounterMetricFamily(
        "sfc_self_fences", "Times this controller stopped its own node's service (self-fence)", labels=["service"]
    )
    for name, hook in own:
        fences.add_metric([name], hook.self_fences)
    yield fences
    yield CounterMetricFamily(
        "sfc_event_command_failures", "event_command runs that failed, timed out or could not start", hooks.failures
    )
    yield CounterMetricFamily(
        "sfc_event_command_dropped", "Events dropped because event_command's queue was full", hooks.dropped_total
    )
    unknown = GaugeMetricFamily(
        "sfc_scheduler_unknown",
        "1 if the latest probe could not tell the state of the service on the node",
        labels=["node", "service"],
    )
    for name, one in services.items():
        for node, probe in sorted(one.last_probes.items()):
            unknown.add_metric([node, name], 1 if probe.state is SchedulerState.UNKNOWN else 0)
    yield unknown


def _own_hooks(services: Mapping[str, Controller]) -> list[tuple[str, EventHook]]:
    """Each service's event hook, once: a hook shared with an earlier service is left out."""
    seen: set[int] = set()
    own = []
    for name, one in services.items():
        if id(one.hooks) not in seen:
            seen.add(id(one.hooks))
            own.append((name, one.hooks))
    return own
