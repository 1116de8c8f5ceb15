"""Decoding metastore records: every field a backend reads goes through one of these checks.

A row or znode that no valid write produces (a number field holding text, ``pids`` that is not
JSON, a schema version that is not a number, a lease expiring years ahead, ...) is a
:class:`~scheduler_failover_controller.exceptions.CorruptRecord` for the call that read it: a
MetastoreError like a store that is down, whose message is one line naming the table (or znode)
and the field, with the bad value shortened::

    metastore row sfc_lease.expires_at is not a number: 'soon'

These checks know nothing of the config: "no valid write produces it" holds for any valid config.
What only a config can tell (a lease held by a host it does not name, a lease longer than its
``lease_ttl``) is :func:`implausible`, which the controller warns about and ``status`` reports.

Values only a newer release could write are accepted where they cannot mislead an older one:
extra JSON keys are ignored, and roles, scheduler states and event kinds are any short printable
text (an older controller shows them as they are).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..config import MAX_NODE_NAME, MAX_SECONDS, node_name_problem
from ..config.service_keys import SERVICE_NAME
from ..config.services import SCHEDULER
from ..exceptions import CorruptRecord

if TYPE_CHECKING:  # base imports this module
    from .base import ClusterState

# How far ahead of the server's now a valid write can put an expiry or a stamp: the longest lease
# a config allows, plus a minute for a server clock that stepped back since.
MAX_AHEAD = MAX_SECONDS + 60.0
SWITCHOVER_MODES = ("controlled", "forced")
MAX_HOLDER = MAX_NODE_NAME + 40  # a holder is "host:pid:random"
_SHORT = 60
_FOREIGN_TEXT = 1024  # the SQL column of an observation's foreign processes


def shorten(value: object) -> str:
    """``repr(value)``, at most 60 characters (control characters escaped: always one line)."""
    text = repr(value)
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."


def corrupt(where: str, problem: str, value: object) -> CorruptRecord:
    """The error for field ``where`` (e.g. ``row sfc_lease.epoch``) holding ``value``."""
    return CorruptRecord(f"metastore {where} {problem}: {shorten(value)}")


def missing(where: str) -> CorruptRecord:
    return CorruptRecord(f"metastore {where} is missing")


def integer(where: str, value: Any, minimum: int = 0) -> int:
    """An integer column or JSON member (epoch, version, pid, id), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise corrupt(where, "is not an integer", value)
    if value < minimum:
        raise corrupt(where, f"is below {minimum}", value)
    return int(value)


def integer_text(where: str, value: Any) -> int:
    """A counter kept as text (the schema version, ZooKeeper's epoch data): decimal digits."""
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise corrupt(where, "is not a number", value) from None
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{1,18}", value):
        raise corrupt(where, "is not a number", value)
    return int(value)


def _real(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise corrupt(where, "is not a number", value)
    try:
        number = float(value)
    except (OverflowError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise corrupt(where, "is not a finite number", value)
    return number


def expiry(where: str, value: Any, now: float) -> float:
    """A lease or placement expiry (server clock): a number no further ahead than any lease lasts."""
    at = _real(where, value)
    if at > now + MAX_AHEAD:
        raise corrupt(where, f"is {at - now:.3g}s ahead of the server's clock, longer than any lease can last", value)
    return at


def stamp(where: str, value: Any, now: float) -> float:
    """A time stamped with the server's now when written (last_seen, observed_at, events.at)."""
    at = _real(where, value)
    if at < 0:
        raise corrupt(where, "is negative", value)
    if at > now + MAX_AHEAD:
        raise corrupt(where, f"is {at - now:.3g}s ahead of the server's clock", value)
    return at


def duration(where: str, value: Any) -> float:
    """A lease or placement ttl: 0 to the longest lease a config allows."""
    seconds = _real(where, value)
    if not 0 <= seconds <= MAX_SECONDS:
        raise corrupt(where, f"is not a duration from 0 to {MAX_SECONDS:g}s", value)
    return seconds


def flag(where: str, value: Any) -> bool:
    """A flag: 0 or 1 in SQL, false or true in JSON."""
    if value is True or value is False:
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise corrupt(where, "is not 0 or 1", value)


def name(where: str, value: Any, empty: bool = False) -> str:
    """A node name: what the config accepts (config.node_name_problem); also '' if ``empty``."""
    if not isinstance(value, str):
        raise corrupt(where, "is not text", value)
    if (value or not empty) and node_name_problem(value) is not None:
        raise corrupt(where, "is not a valid host name", value)
    return value


def optional_name(where: str, value: Any) -> str | None:
    return None if value is None else name(where, value)


def holder(where: str, value: Any) -> str:
    """A lease holder: an identifier without blanks or control characters (the controllers write host:pid:random)."""
    word = text(where, value, MAX_HOLDER)
    if not word or not word.isprintable() or any(c.isspace() for c in word):
        raise corrupt(where, "is not a valid holder", value)
    return word


def optional_holder(where: str, value: Any) -> str | None:
    return None if value is None else holder(where, value)


def text(where: str, value: Any, limit: int) -> str:
    """Free text (a probe's detail, an event's message) of at most ``limit`` characters."""
    if not isinstance(value, str):
        raise corrupt(where, "is not text", value)
    if len(value) > limit:
        raise corrupt(where, f"is longer than {limit} characters", value)
    return value


def label(where: str, value: Any, limit: int) -> str:
    """A short printable word (role, scheduler state, event kind, version)."""
    word = text(where, value, limit)
    if not word.isprintable():
        raise corrupt(where, "holds control characters", value)
    return word


def parse_json(where: str, raw: Any) -> Any:
    """A JSON document kept as text (SQL) or bytes (a znode's data)."""
    try:
        data = raw.decode() if isinstance(raw, bytes) else raw
        if not isinstance(data, str):
            raise TypeError
        return json.loads(data)
    except (ValueError, TypeError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise corrupt(where, "is not JSON", raw) from None


def json_object(where: str, raw: Any) -> dict[str, Any]:
    value = parse_json(where, raw)
    if not isinstance(value, dict):
        raise corrupt(where, "is not a JSON object", raw)
    return value


def pids(where: str, value: Any, encoded: bool = False) -> tuple[int, ...]:
    """Process ids: a list of positive integers (``encoded``: kept as JSON text, as SQL keeps it)."""
    found = parse_json(where, text(where, value, 255)) if encoded else value
    if not isinstance(found, list) or not all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in found):
        raise corrupt(where, "is not a list of process ids", value)
    return tuple(found)


def foreign(where: str, value: Any, encoded: bool = False) -> tuple[tuple[int, str], ...]:
    """An observation's foreign processes: ``[[pid, user], ...]`` (``encoded``: JSON text, as SQL
    keeps it; absent from an older controller's record: empty)."""
    if encoded and text(where, value, _FOREIGN_TEXT) == "":
        return ()  # the column's default: none
    found = parse_json(where, value) if encoded else value
    if not isinstance(found, list):
        raise corrupt(where, "is not a list of [pid, user]", value)
    out = []
    for item in found:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], int)
            or isinstance(item[0], bool)
            or item[0] <= 0
            or not isinstance(item[1], str)
            or not item[1].isprintable()
        ):
            raise corrupt(where, "is not a list of [pid, user]", value)
        out.append((item[0], item[1]))
    return tuple(out)


def paused(where: str, value: Any) -> bool:
    """The paused flag as kept: '0' or '1' (text, or a znode's bytes)."""
    if value in ("0", b"0"):
        return False
    if value in ("1", b"1"):
        return True
    raise corrupt(where, "is not 0 or 1", value)


def switchover(node_where: str, target: Any, mode_where: str, mode: Any) -> tuple[str, str]:
    """A pending switchover request: a node name and a mode."""
    node = name(node_where, target)
    if not isinstance(mode, str) or mode not in SWITCHOVER_MODES:
        raise corrupt(mode_where, f"is not {' or '.join(SWITCHOVER_MODES)}", mode)
    return node, mode


def implausible(state: ClusterState, nodes: Sequence[str], lease_ttl: float) -> list[str]:
    """What in a readable ``state`` this config's controllers could not have written ([] if nothing).

    A lease or placement on a host the config does not name, or lasting longer than its
    ``lease_ttl``: a controller with another config (or a hand-made record). Nothing here is
    treated as expired: a real holder with another config must not be overridden silently.
    """
    slack = max(1.0, 0.1 * lease_ttl)
    problems = []
    lease, placement = state.lease, state.placement
    if lease.valid:
        if lease.host not in nodes:
            problems.append(
                f"the lease is held by {shorten(lease.holder)} on {shorten(lease.host)}, "
                "which is not in scheduler_nodes_in_cluster"
            )
        if lease.remaining > lease_ttl + slack:
            problems.append(
                f"the lease of {shorten(lease.host)} expires in {lease.remaining:.0f}s, "
                f"more than lease_ttl ({lease_ttl:g}s)"
            )
    if placement.valid:
        if placement.node not in nodes:
            problems.append(
                f"the scheduler is placed on {shorten(placement.node)}, which is not in scheduler_nodes_in_cluster"
            )
        if placement.remaining > lease_ttl + slack:
            problems.append(
                f"the placement on {shorten(placement.node)} expires in {placement.remaining:.0f}s, "
                f"more than lease_ttl ({lease_ttl:g}s)"
            )
    return problems


def service_name_problem(name: str, scheduler: bool = False) -> str | None:
    """Why ``name`` cannot name a service's records (None: it can): a name ``services`` accepts (up to
    32 characters: ``switchover_id:NAME`` fits sfc_meta's name column). The scheduler's own name only
    where ``scheduler`` allows it: its records are the ones a release with one service keeps."""
    if not SERVICE_NAME.fullmatch(name) or (name == SCHEDULER and not scheduler):
        return f"is not a service name ({SERVICE_NAME.pattern}{'' if scheduler else f', not {SCHEDULER}'})"
    return None


def service_name(where: str, value: Any, scheduler: bool = False) -> str:
    """A service's name read back from a record (``scheduler``: the scheduler's own name is one too)."""
    if not isinstance(value, str):
        raise corrupt(where, "is not text", value)
    problem = service_name_problem(value, scheduler)
    if problem is not None:
        raise corrupt(where, problem, value)
    return value
