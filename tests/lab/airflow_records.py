"""What the lab's Airflow runs leave (tests/lab/airflow_harness.py): the ledger and Airflow's database.

The ledger DAG's task (examples/dags/sfc_ledger_dag.py) appends ``run_id try host time`` to
``<base>/ledger``, a file every host writes (they share the filesystem). Each lab's Airflow
metadata database is a database of its own on the network's PostgreSQL or MariaDB, queried from
the root namespace (unix socket).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab.sites import LabMetastore, MariaDBSite, PostgreSQLSite


@dataclass(frozen=True)
class LedgerEntry:
    run_id: str
    try_number: int
    host: str
    time: float


def read_ledger(path: Path) -> list[LedgerEntry]:
    """The ledger's entries, in the order written (a line not yet complete is left out)."""
    found = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            found.append(LedgerEntry(parts[0], int(parts[1]), parts[2], float(parts[3])))
    return found


def executed_twice(entries: list[LedgerEntry]) -> list[tuple[str, int]]:
    """(run_id, try) pairs the ledger holds more than once."""
    seen: dict[tuple[str, int], int] = {}
    for e in entries:
        seen[(e.run_id, e.try_number)] = seen.get((e.run_id, e.try_number), 0) + 1
    return sorted(k for k, n in seen.items() if n > 1)


def create_database(site: LabMetastore) -> str:
    """A new Airflow database on the site's server; returns its name."""
    if isinstance(site, PostgreSQLSite):
        name = site.server.create_database()
        # A scheduler fenced by a partition leaves its sessions on the server, one of them
        # maybe inside a transaction holding row locks the next scheduler waits for: without
        # these the server keeps them until its TCP keepalive gives up (hours). Found by the
        # partition trials; production databases behind a failover controller need the same.
        site.server.execute(
            f"ALTER DATABASE {name} SET idle_in_transaction_session_timeout = '15s'; "
            f"ALTER DATABASE {name} SET tcp_keepalives_idle = 5; "
            f"ALTER DATABASE {name} SET tcp_keepalives_interval = 2; "
            f"ALTER DATABASE {name} SET tcp_keepalives_count = 3; "
            f"ALTER DATABASE {name} SET tcp_user_timeout = 10000"
        )
        return name
    assert isinstance(site, MariaDBSite)
    return site.db.create_database()


def drop_database(site: LabMetastore, database: str) -> None:
    if isinstance(site, PostgreSQLSite):
        site.server.drop_database(database)
    elif isinstance(site, MariaDBSite):
        site.db.drop_database(database)


def query(site: LabMetastore, database: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A query on the Airflow database, from the root namespace (unix socket)."""
    if isinstance(site, PostgreSQLSite):
        import psycopg2

        server = site.server
        conn = psycopg2.connect(host=str(server.base), port=server.port, user="postgres", dbname=database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()
    assert isinstance(site, MariaDBSite)
    import pymysql

    with (
        pymysql.connect(unix_socket=str(site.db.socket_path), user="root", database=database) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(sql, params)
        return list(cur.fetchall())
