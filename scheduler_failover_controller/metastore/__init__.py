"""Metastore backends behind one contract (see :mod:`.base`).

``base`` the contract and the plumbing every backend shares (setup, schema version, deadlines, text
caps); ``deadline`` the hard client-side deadline of each call; ``rows`` the checks of every record
read; ``events`` the event kinds and switchover request ids; ``sql`` / ``sql_engine`` the SQL
backend (statements / connections held to the deadline); ``zookeeper`` / ``zookeeper_session`` the
ZooKeeper backend (znodes / the kazoo session).
"""

from __future__ import annotations

from ..config import SQL_SERVICE, ZOOKEEPER_SERVICE, Config
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

        return SQLMetastore(
            config.metadata_service_sql_conn,
            config.metastore_timeout,
            prefix=config.metadata_service_sql_table_prefix,
        )
    if config.metadata_service_type == ZOOKEEPER_SERVICE:
        from .zookeeper import ZooKeeperMetastore

        return ZooKeeperMetastore(
            config.metadata_service_zookeeper_nodes,
            config.metadata_service_zookeeper_root,
            config.lease_ttl,
            config.metastore_timeout,
            auth=config.metadata_service_zookeeper_auth,
            use_ssl=config.metadata_service_zookeeper_use_ssl,
            ca=config.metadata_service_zookeeper_ca,
            certfile=config.metadata_service_zookeeper_certfile,
            keyfile=config.metadata_service_zookeeper_keyfile,
            verify_certs=config.metadata_service_zookeeper_verify_certs,
        )
    raise ConfigError(
        f"{config.source}: metadata_service_type: {config.metadata_service_type} is not available in this "
        "version; use SQLMetadataService"
    )
