"""The one registry of the ``[scheduler_failover]`` keys: name, parser, default and documentation.

Everything else that lists the keys is built from :data:`KEYS`: the loader (which keys exist,
how each is parsed, its default), the :class:`~.model.Config` construction, the ``init``
template and the README's key table (see :mod:`.docs`; a unit test keeps the README and
``config/scheduler_failover_controller.cfg`` equal to what is built here).

The keys are defined by group, in the order the template lists them: ``keys_cluster`` (nodes,
metastore, timing), ``keys_scheduler``, ``keys_alerts`` (alerts, logging), ``keys_ssh`` and
``keys_checks`` (metrics, health checks); :class:`~.key.Key` is in ``key``.

Adding a key: write one ``Key(...)`` in the group module it belongs to (name, parser, default,
template comment, README summary; ``shown_default`` when the default is derived,
``command``/``redact`` when it is a shell command or a secret) and the typed attribute of the same
name in ``Config`` (``model.py``: a unit test fails until the two agree; mypy needs the attribute
written out). A check that involves other keys goes in the ``load`` stage it belongs to. Then run
``scripts/config_docs.py``: it rewrites the README's table and
``config/scheduler_failover_controller.cfg``, which a unit test compares with this registry.
"""

from __future__ import annotations

from .key import SECTION, THIS_HOST, Key
from .keys_alerts import ALERT_KEYS, SMTP_KEYS
from .keys_checks import CHECK_KEYS
from .keys_cluster import CLUSTER_KEYS
from .keys_placement import PLACEMENT_KEYS
from .keys_scheduler import SCHEDULER_KEYS
from .keys_ssh import SSH_KEYS

__all__ = ["COMMAND_KEYS", "KEYS", "SECTION", "SMTP_KEYS", "THIS_HOST", "Key"]


_REGISTRY = (*CLUSTER_KEYS, *SCHEDULER_KEYS, *PLACEMENT_KEYS, *ALERT_KEYS, *SSH_KEYS, *CHECK_KEYS)


# name -> Key, in the template's (and the checks') order.
KEYS: dict[str, Key] = {key.name: key for key in _REGISTRY}
# Keys whose value is a shell command: an indented continuation line is a second command there.
COMMAND_KEYS = frozenset(key.name for key in KEYS.values() if key.command)
