"""Exceptions shared across the controller.

Two error channels (docs/design.md): a lost race is a return value (False/None);
a broken dependency is one of these exceptions.
"""

from __future__ import annotations


class FailoverError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(FailoverError):
    """The configuration is invalid; the message names the key and the file."""


class MetastoreError(FailoverError):
    """The metastore could not be reached or did not answer in time."""


class NodeUnreachable(FailoverError):
    """A node could not be probed or commanded; its scheduler state is unknown."""


class CommandFailed(FailoverError):
    """A start, stop or fence command ran but failed."""
