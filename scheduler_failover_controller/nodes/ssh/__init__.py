"""Control of a scheduler on another master over SSH (paramiko).

- :mod:`.transport`: the connection (host keys, deadlines, channels);
- :mod:`.scripts`: the shell scripts sent to the node and the reading of their output;
- :mod:`.serve`: this project's long-lived ``probe --serve`` and ``leash --serve`` there;
- :mod:`.runner`: :class:`SSHNodeRunner`, which puts them together.

Importing this package imports paramiko: :mod:`scheduler_failover_controller.nodes` does so only
when a node is remote.
"""

from __future__ import annotations

from .check import SSHCheck
from .known_hosts import fingerprint, load_known_hosts
from .runner import SSHNodeRunner
from .scripts import kill_script
from .transport import PARAMIKO_LOG, Deadline, SSHFailure

__all__ = [
    "PARAMIKO_LOG",
    "Deadline",
    "SSHCheck",
    "SSHFailure",
    "SSHNodeRunner",
    "fingerprint",
    "kill_script",
    "load_known_hosts",
]
