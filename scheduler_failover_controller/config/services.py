"""Singleton services beside the scheduler: what each is, and the config one service's controller runs on.

The scheduler is the service every config has, set by the ``[scheduler_failover]`` keys of 2016.
Every other service is named in ``services`` and configured in its own section
``[scheduler_failover_service_NAME]``. A service's controller runs on :meth:`Config.for_service`'s
view: the same config with the scheduler's commands, match, timeouts, health URL and nodes
replaced by the service's own, and a state directory of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEDULER = "scheduler"  # the service every config has, configured by the 2016 keys
SERVICE_SECTION_PREFIX = "scheduler_failover_service_"


@dataclass(frozen=True)
class ServiceSpec:
    """One singleton service other than the scheduler, as its section configures it."""

    name: str
    start_command: str
    stop_command: str
    process_match: str
    start_timeout: float
    stop_timeout: float
    health_url: str
    nodes: tuple[str, ...]  # the masters it may run on (all of them by default), in the config's order
    colocate_with: str = ""  # the service it follows ('' none); it never moves that one
    anti_colocate_with: tuple[str, ...] = ()  # services it never shares a node with

    @property
    def section(self) -> str:
        return SERVICE_SECTION_PREFIX + self.name
