"""A config key's definition (:class:`Key`) and what the key group modules share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SECTION = "scheduler_failover"
THIS_HOST = "<this host>"  # a template sample replaced by the host ``init`` runs on

# The README writes a minus sign and a times sign in its formulas (RUF001: meant, not look-alikes).
DERIVED_TIMEOUT = "min({cap}, (lease_ttl − renewal interval)/4)"  # noqa: RUF001


@dataclass(frozen=True)
class Key:
    """One config key.

    ``default`` is the raw text parsed when the key is not set; None means the loader derives the
    value (from other keys, the host, Airflow's settings). ``doc`` is the comment above the key in
    the ``init`` template; ``summary`` and ``shown_default`` are its README table row (the latter
    when the raw default is not what a reader needs, e.g. a derived one).
    """

    name: str
    parse: Callable[[str], Any]
    default: str | None
    doc: str
    summary: str
    shown_default: str = ""
    field: str = ""  # the Config attribute, when it is not the key's name
    sample: str | None = None  # the value written in the template, when not the default
    commented: bool | None = None  # written as "# key = ..." in the template (default: when derived)
    command: bool = False  # a shell command: an indented continuation line is a second command
    redact: Callable[[Any], Any] | None = None  # a secret: how Config.redacted() shows it
    since_2016: bool = False  # a key of the 2016 controller, kept with the same meaning

    @property
    def attribute(self) -> str:
        """The name of this key's :class:`~.model.Config` attribute."""
        return self.field or self.name

    @property
    def in_comment(self) -> bool:
        """Whether the template writes this key commented out."""
        return self.default is None if self.commented is None else self.commented

    @property
    def readme_default(self) -> str:
        """The default as the README's table shows it."""
        if self.shown_default:
            return self.shown_default
        return f"`{self.default}`" if self.default else "empty"
