"""The SQL metastore's switchover request of a service: two rows of ``sfc_meta``, read and written together.

The scheduler's row ``switchover`` holds ``NODE MODE`` exactly as releases without request ids
wrote and read it; row ``switchover_id`` holds ``ID NODE MODE``: the id, and the request it was
written with. A release without ids rewrites or clears only the first row; the id left behind then
no longer matches the request and is not read as its id. Another service's request is kept the
same way in rows ``switchover:NAME`` and ``switchover_id:NAME``, which a release with one service never reads.
"""

from __future__ import annotations

from sqlalchemy import Table, update
from sqlalchemy.engine import Connection

from ..exceptions import CorruptRecord
from . import rows
from .base import SCHEDULER
from .events import request_id
from .sql_tables import field_name

REQUEST, REQUEST_ID = "switchover", "switchover_id"


def names(service: str) -> tuple[str, str]:
    """The two rows of ``service``'s request: (request, id)."""
    if service == SCHEDULER:
        return REQUEST, REQUEST_ID
    return f"{REQUEST}:{service}", f"{REQUEST_ID}:{service}"


def decode(
    meta: Table, request: object, tagged: object, service: str = SCHEDULER
) -> tuple[tuple[str, str] | None, str]:
    """The pending request (node, mode) or None, and its id ('' when it has none), from the two rows."""
    request_row, id_row = names(service)
    where = field_name(meta, "value", request_row)
    if not isinstance(request, str):
        raise rows.corrupt(where, "is not text", request)
    if not request:
        return None, ""
    target, _, mode = request.partition(" ")
    try:
        found = rows.switchover(where, target, where, mode)
    except CorruptRecord:
        raise rows.corrupt(where, "is not a switchover request (NODE controlled|forced)", request) from None
    id_where = field_name(meta, "value", id_row)
    if tagged is None:  # a store set up by a release without ids, not yet by this one
        return found, ""
    if not isinstance(tagged, str):
        raise rows.corrupt(id_where, "is not text", tagged)
    key, _, asked = tagged.partition(" ")
    return found, (request_id(id_where, key) if asked == request else "")


def write(conn: Connection, meta: Table, node: str, mode: str, key: str, service: str = SCHEDULER) -> None:
    """Set (or with ``node`` '' clear) ``service``'s request and its id, in the caller's transaction."""
    m = meta
    request_row, id_row = names(service)
    request = f"{node} {mode}" if node else ""
    conn.execute(update(m).where(m.c.name == request_row).values(value=request))
    conn.execute(update(m).where(m.c.name == id_row).values(value=f"{key} {request}" if key and node else ""))
