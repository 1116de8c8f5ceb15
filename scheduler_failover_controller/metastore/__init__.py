"""Metastore backends behind one contract (see :mod:`.base`)."""

from __future__ import annotations

from ..config import SQL_SERVICE, Config
from ..exceptions import ConfigError
from .base import ClusterState, ControllerInfo, Event, Lease, Metastore, Observation, Placement

__all__ = [
    "ClusterState",
    "ControllerInfo",
    "Event",
    "Lease",
    "Metastore",
    "Observation",
    "Placement",
    "open_metastore",
]


def open_metastore(config: Config) -> Metastore:
    """The metastore the config names (not yet connected: the first call connects)."""
    if config.metadata_service_type == SQL_SERVICE:
        from .sql import SQLMetastore

        return SQLMetastore(config.metadata_service_sql_conn, config.metastore_timeout)
    raise ConfigError(
        f"{config.source}: metadata_service_type: {config.metadata_service_type} is not available in this "
        "version; use SQLMetadataService"
    )
