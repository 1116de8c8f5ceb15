"""Ending an unseen node's sessions to Airflow's database (``airflow_job_fencing``).

A scheduler cut off from the network keeps its database sessions open on the server's side: the
server learns of the lost client only from TCP keepalives, often hours later, and a session idle
in a transaction holds its row locks all that while, so the new scheduler can block on them.
Once the controller has proven such a node empty (docs/design.md, "Airflow's work resumes with the
scheduler"), its sessions are ended: PostgreSQL ``pg_terminate_backend``, MySQL/MariaDB ``KILL
CONNECTION``.

Which sessions are that node's is decided narrowly, and a session that cannot be attributed is left
alone:

- its client address is one of the node's (its name and the hostname Airflow records for it,
  resolved on this machine) and none of any other node's (so the new scheduler's, and this
  controller's, can never match; a connection through a pooler on another host never matches);
- it is a client session of Airflow's database (PostgreSQL ``current_database()``, MySQL
  ``DATABASE()``) under the user of ``scheduler_job_sql_conn`` (a user without extra privileges
  may only end its own sessions anyway), and not this controller's own.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

Resolver = Callable[[str], "set[str]"]

_PG_SESSIONS = (
    "SELECT pid, host(client_addr) FROM pg_stat_activity"
    " WHERE datname = current_database() AND usename = current_user AND pid <> pg_backend_pid()"
    " AND backend_type = 'client backend' AND client_addr IS NOT NULL"
)
_MYSQL_SESSIONS = (
    "SELECT ID, HOST FROM information_schema.PROCESSLIST"
    " WHERE ID <> CONNECTION_ID() AND DB = DATABASE() AND USER = SUBSTRING_INDEX(CURRENT_USER(), '@', 1)"
)


def canonical(address: str) -> str:
    """An address in one spelling (an IPv4-mapped IPv6 address as IPv4); a name in lower case."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def resolve(name: str, timeout: float = 2.0) -> set[str]:
    """The addresses ``name`` resolves to on this machine (empty when it does not, within ``timeout``)."""
    found: set[str] = set()

    def look() -> None:
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return
        found.update(canonical(str(info[4][0])) for info in infos)

    worker = threading.Thread(target=look, name="resolve", daemon=True)
    worker.start()
    worker.join(timeout)
    return set(found) if not worker.is_alive() else set()


def node_addresses(names: Iterable[str], resolver: Resolver) -> set[str]:
    """Everything ``names`` (a node's name and its hostname in Airflow's job table) are known by:
    the names themselves (MySQL may show a client by name) and their addresses."""
    known: set[str] = set()
    for name in names:
        if name:
            known.add(canonical(name))
            known |= resolver(name)
    return known


def client_host(backend: str, host: str) -> str:
    """The client's address (or name) in a session row: MySQL's ``HOST`` is ``address:port``."""
    if backend in ("mysql", "mariadb") and ":" in host:
        host = host.rsplit(":", 1)[0]
    return canonical(host.strip("[]"))


def sessions(conn: Connection, backend: str) -> list[tuple[int, str]]:
    """(session id, client address or name) of Airflow's database, its user's, other than ours."""
    from sqlalchemy import text

    query = _PG_SESSIONS if backend == "postgresql" else _MYSQL_SESSIONS
    return [(int(row[0]), client_host(backend, str(row[1] or ""))) for row in conn.execute(text(query))]


def end_sessions(conn: Connection, backend: str, node: set[str], others: set[str]) -> list[int]:
    """End the sessions whose client is one of ``node`` and none of ``others``; the ids ended."""
    from sqlalchemy import text

    if backend not in ("postgresql", "mysql", "mariadb"):
        return []  # SQLite: no sessions of another host
    mine = node - others
    ended = []
    for session, client in sessions(conn, backend):
        if client not in mine:
            continue
        if backend == "postgresql":
            result: Any = conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": session}).scalar()
            if result:
                ended.append(session)
            continue
        try:
            conn.exec_driver_sql(f"KILL CONNECTION {int(session)}")
        except Exception as exc:  # noqa: BLE001 - gone meanwhile (unknown thread id): nothing to end
            log.debug("KILL CONNECTION %d: %s", session, type(exc).__name__)
            continue
        ended.append(session)
    return ended
