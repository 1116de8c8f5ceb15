"""Load and validate the configuration into frozen dataclasses.

Sources, later ones winning: built-in defaults, the ``[scheduler_failover]`` section of the
config file, then ``AIRFLOW__SCHEDULER_FAILOVER__<KEY>`` environment variables. The file is
``--config``, else ``$SCHEDULER_FAILOVER_CONTROLLER_CONFIG``, else ``$AIRFLOW_HOME/airflow.cfg``.
Every problem becomes one :class:`ConfigError` line naming the key and where it came from.

The modules: ``keys`` (the one registry of keys), ``parsers`` (one value each), ``sources``
(file and environment, merged), ``load`` (parse, topology, places, timing, scheduler checks),
``checks`` and ``airflow`` (what those stages use), ``model`` (``Config``), ``docs`` (the
``init`` template and the README table, built from the registry).

Adding a key: see ``keys.py``.
"""

from __future__ import annotations

from ..exceptions import ConfigError
from .checks import MAX_NODE_NAME, node_name_problem
from .docs import default_config_text
from .keys import COMMAND_KEYS, KEYS, SECTION, SMTP_KEYS, Key
from .load import load_config
from .model import LOCAL_NAMES, Config, SmtpConfig, airflow_home, renew_interval, safety_margin
from .parsers import (
    MAX_COUNT,
    MAX_SECONDS,
    MIN_LEASE_TTL,
    MIN_POLL_FREQUENCY,
    MIN_SECONDS,
    SQL_SERVICE,
    ZOOKEEPER_SERVICE,
)
from .sources import CONFIG_ENV, ENV_PREFIX, MAX_CONFIG_BYTES, config_path, read_config_text

__all__ = [
    "COMMAND_KEYS",
    "CONFIG_ENV",
    "ENV_PREFIX",
    "KEYS",
    "LOCAL_NAMES",
    "MAX_CONFIG_BYTES",
    "MAX_COUNT",
    "MAX_NODE_NAME",
    "MAX_SECONDS",
    "MIN_LEASE_TTL",
    "MIN_POLL_FREQUENCY",
    "MIN_SECONDS",
    "SECTION",
    "SMTP_KEYS",
    "SQL_SERVICE",
    "ZOOKEEPER_SERVICE",
    "Config",
    "ConfigError",
    "Key",
    "SmtpConfig",
    "airflow_home",
    "config_path",
    "default_config_text",
    "load_config",
    "node_name_problem",
    "read_config_text",
    "renew_interval",
    "safety_margin",
]
