"""The services a command may name (``--service``): the scheduler and every one in ``services``."""

from __future__ import annotations

from ..config import Config
from ..config.services import SCHEDULER
from .group import BadInput


def service_names(config: Config) -> list[str]:
    """The scheduler first, then the other services in the config's order."""
    return [SCHEDULER, *(s.name for s in config.service_specs if s.name != SCHEDULER)]


def service_config(config: Config, name: str) -> Config:
    """The config ``name``'s controller runs on; an unknown name is one line and exit 2."""
    known = service_names(config)
    if name not in known:
        raise BadInput(f"--service: no service {name!r} in {config.source} (services: {', '.join(known)})")
    return config if name == SCHEDULER else config.for_service(name)
