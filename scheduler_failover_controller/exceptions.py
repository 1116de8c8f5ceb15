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


class CorruptRecord(MetastoreError):
    """A metastore row or znode holds a value no valid write produces (a number field holding text,
    JSON that does not parse, a lease expiring years ahead, ...).

    The call that read it failed, like any MetastoreError; the message is one line naming the
    table (or znode) and the field, with the bad value shortened.
    """


class NodeUnreachable(FailoverError):
    """A node could not be probed or commanded; its scheduler state is unknown."""


class CommandFailed(FailoverError):
    """A start, stop or fence command ran but failed."""
