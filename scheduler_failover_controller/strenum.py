"""``StrEnum``: an enum whose members are strings and print as their value, on every Python we support.

``enum.StrEnum`` exists only from Python 3.11. A plain ``(str, Enum)`` mixin prints as
``Role.ACTIVE`` in ``str()`` (and in f-strings from 3.12), so both are pinned to the value here.
"""

from __future__ import annotations

import enum


class StrEnum(str, enum.Enum):
    """A string enum: ``str(member)``, ``f"{member}"`` and JSON all give its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, format_spec: str) -> str:
        return str(self.value).__format__(format_spec)
