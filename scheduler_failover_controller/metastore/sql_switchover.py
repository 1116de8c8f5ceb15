"""The SQL metastore's switchover request: two rows of ``sfc_meta``, read and written together.

Row ``switchover`` holds ``NODE MODE`` exactly as releases without request ids wrote and read it.
Row ``switchover_id`` holds ``ID NODE MODE``: the id, and the request it was written with. A
release without ids rewrites or clears only the first row; the id left behind then no longer
matches the request and is not read as its id.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.engine import Connection

from ..exceptions import CorruptRecord
from . import rows
from .events import request_id
from .sql_tables import field_name, meta_table

REQUEST, REQUEST_ID = "switchover", "switchover_id"


def decode(request: object, tagged: object) -> tuple[tuple[str, str] | None, str]:
    """The pending request (node, mode) or None, and its id ('' when it has none), from the two rows."""
    where = field_name(meta_table, "value", REQUEST)
    if not isinstance(request, str):
        raise rows.corrupt(where, "is not text", request)
    if not request:
        return None, ""
    target, _, mode = request.partition(" ")
    try:
        found = rows.switchover(where, target, where, mode)
    except CorruptRecord:
        raise rows.corrupt(where, "is not a switchover request (NODE controlled|forced)", request) from None
    id_where = field_name(meta_table, "value", REQUEST_ID)
    if tagged is None:  # a store set up by a release without ids, not yet by this one
        return found, ""
    if not isinstance(tagged, str):
        raise rows.corrupt(id_where, "is not text", tagged)
    key, _, names = tagged.partition(" ")
    return found, (request_id(id_where, key) if names == request else "")


def write(conn: Connection, node: str, mode: str, key: str) -> None:
    """Set (or with ``node`` '' clear) the request and its id, in the caller's transaction."""
    m = meta_table
    request = f"{node} {mode}" if node else ""
    conn.execute(update(m).where(m.c.name == REQUEST).values(value=request))
    conn.execute(update(m).where(m.c.name == REQUEST_ID).values(value=f"{key} {request}" if key and node else ""))
