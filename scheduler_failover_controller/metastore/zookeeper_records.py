"""The ZooKeeper metastore's znodes as JSON: written compactly, and every field read back decoded
(:mod:`.rows`), each error naming the znode and the field."""

from __future__ import annotations

import json
from typing import Any

from . import rows
from .base import (
    SCHEDULER,
    TEXT_LIMIT,
    ControllerInfo,
    Event,
    Observation,
    Placement,
)
from .events import event_kind, request_id


def load_json(data: bytes) -> dict[str, Any]:
    """A JSON object, or {} (only where a record that does not parse is simply not ours)."""
    try:
        value = json.loads(data.decode() or "{}")
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


_REQUIRED: Any = object()


def field(where: str, value: dict[str, Any], key: str, default: Any = _REQUIRED) -> Any:
    """Member ``key`` of a znode's JSON object (``where`` names the znode)."""
    if key in value:
        return value[key]
    if default is _REQUIRED:
        raise rows.missing(f"{where} field {key}")
    return default


def dump(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def decode_placement(path: str, data: bytes, stat: Any, now: float) -> Placement:
    where = f"znode {path}"
    value = rows.json_object(where, data)
    node = rows.optional_name(f"{where} field node", field(where, value, "node"))
    epoch = rows.integer(f"{where} field epoch", field(where, value, "epoch"))
    version = rows.integer(f"{where} field version", field(where, value, "version"))
    ttl = rows.duration(f"{where} field ttl", field(where, value, "ttl"))
    # A placement to nowhere keeps its expiry too: it bounds every placement renewed before it (design, 5a).
    expires = float(stat.mtime) / 1000.0 + ttl
    return Placement(node, epoch, expires, version, now)


def decode_controller(path: str, host: str, data: bytes, stat: Any, now: float) -> ControllerInfo:
    where = f"znode {path}"
    rows.name(where, host)  # the znode's own name is the host
    value = rows.json_object(where, data)

    def get(key: str, default: Any = _REQUIRED) -> Any:
        return field(where, value, key, default)

    return ControllerInfo(
        host=host,
        holder=rows.holder(f"{where} field holder", get("holder")),
        pid=rows.integer(f"{where} field pid", get("pid"), minimum=1),
        version=rows.label(f"{where} field version", get("version"), 64),
        role=rows.label(f"{where} field role", get("role"), 32),
        last_seen=float(stat.mtime) / 1000.0,
        started_at=float(stat.ctime) / 1000.0,
        server_now=now,
        # Entries of the first release have neither flag.
        paused=rows.flag(f"{where} field paused", get("paused", False)),
        leashed=rows.flag(f"{where} field leashed", get("leashed", False)),
    )


def decode_observations(path: str, data: bytes, at: float, now: float) -> list[Observation]:
    where = f"znode {path}"
    found = []
    for node, v in sorted(rows.json_object(where, data).items()):
        rows.name(f"{where} key", node)
        entry = f"{where} field {node}"
        if not isinstance(v, dict):
            raise rows.corrupt(entry, "is not a JSON object", v)

        def get(key: str, default: Any = _REQUIRED, v: dict[str, Any] = v, entry: str = entry) -> Any:
            return field(entry, v, key, default)

        found.append(
            Observation(
                node,
                rows.label(f"{entry}.state", get("state"), 32),
                rows.pids(f"{entry}.pids", get("pids")),
                rows.text(f"{entry}.detail", get("detail"), TEXT_LIMIT),
                at,
                rows.name(f"{entry}.by", get("by"), empty=True),
                now,
                leashed=rows.flag(f"{entry}.leashed", get("leashed", False)),  # not in the first release
                foreign=rows.foreign(f"{entry}.foreign", get("foreign", [])),
            )
        )
    return found


def decode_event(path: str, data: bytes, stat: Any) -> Event:
    where = f"znode {path}"
    v = rows.json_object(where, data)
    return Event(
        float(stat.ctime) / 1000.0,
        rows.name(f"{where} field host", field(where, v, "host")),
        event_kind(rows.label(f"{where} field kind", field(where, v, "kind"), 32)),
        rows.text(f"{where} field message", field(where, v, "message"), TEXT_LIMIT),
        rows.integer(f"{where} field epoch", field(where, v, "epoch")),
        request_id(f"{where} field request_id", field(where, v, "request_id", "")),  # none before ids
        rows.service_name(
            f"{where} field service", field(where, v, "service", SCHEDULER), scheduler=True
        ),  # the scheduler's: none
    )


def decode_switchover(path: str, data: bytes) -> tuple[tuple[str, str] | None, str]:
    """The pending switchover request (node, mode) or None, and its id (empty when it has none)."""
    if not data:
        return None, ""
    where = f"znode {path}"
    v = rows.json_object(where, data)
    node, mode = field(where, v, "node"), field(where, v, "mode")
    found = rows.switchover(f"{where} field node", node, f"{where} field mode", mode)
    return found, request_id(f"{where} field id", field(where, v, "id", ""))  # none from a release without ids
