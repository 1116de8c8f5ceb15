"""The SQL metastore's setup: its tables created and seeded, and those of an older release given
the columns added since (additively). A mixin of ``SQLMetastore``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Table, bindparam, insert, inspect, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError
from sqlalchemy.schema import CreateColumn, CreateTable

from . import deadline as dl
from .sql_tables import Schema, execute, execute_sql, field_name

log = logging.getLogger(__name__.rpartition(".")[0] + ".sql")  # the SQL store's logger, as sql.py's

T = TypeVar("T")

# The SQL expression naming the schema (database) the connection works in, per server dialect.
_CURRENT_SCHEMA = {"mysql": "DATABASE()", "mariadb": "DATABASE()", "postgresql": "current_schema()"}


class SQLSchema:
    """``_prepare`` and ``_upgrade`` (see Metastore.setup) as SQL."""

    engine: Engine
    tables: Schema

    if TYPE_CHECKING:  # SQLMetastore's and SQLDatabase's, which come after this mixin

        def _step(self, d: dl.Deadline, fn: Callable[[Connection], T]) -> T: ...

        @contextlib.contextmanager
        def _connection(self, d: dl.Deadline) -> Iterator[Connection]: ...

    _catalog: dict[str, set[str]]  # the columns _prepare found, for _upgrade

    def _prepare(self, d: dl.Deadline) -> tuple[str, object]:
        """Create and seed the schema, in as few round trips as what is missing needs.

        A store that is already complete (every restart) costs one look at the catalog and one
        transaction: setup runs within the one call's deadline like everything else.
        """
        present = self._columns(d)
        missing = [table for table in self.tables.metadata.sorted_tables if table.name not in present]
        if missing:
            self._create_tables(d, missing)
            present = self._columns(d)  # as created: by us, or by a controller of an older release
        meta = self.tables.meta
        version = select(meta.c.value).where(meta.c.name == "schema_version")

        def seed(conn: Connection) -> Any:
            for table, row in self.tables.seeds:
                if conn.execute(select(table.c.name).where(table.c.name == row["name"])).first() is None:
                    conn.execute(insert(table).values(**row))
            return conn.execute(version).scalar()

        try:
            found = self._step(d, seed)
        except IntegrityError:  # another controller seeded a row at the same moment: its rows are there now
            found = self._step(d, seed)
        self._catalog = present
        return field_name(meta, "value", "schema_version"), found

    def _upgrade(self, d: dl.Deadline) -> None:
        self._add_columns(d, self._catalog)

    def _columns(self, d: dl.Deadline) -> dict[str, set[str]]:
        """The column names of each of our tables that exists.

        On a server, one query of ``information_schema`` for every table at once: reflecting table
        by table costs a round trip or two per table (MySQL parses each ``SHOW CREATE TABLE``),
        and every controller and CLI run sets up within one ``metastore_timeout``.
        """
        ours = [t.name for t in self.tables.metadata.sorted_tables]
        schema = _CURRENT_SCHEMA.get(self.engine.dialect.name)
        with self._connection(d) as conn:
            if schema is None:  # SQLite: a local file, reflected table by table
                found = inspect(conn)
                names = set(found.get_table_names())
                return {name: {c["name"] for c in found.get_columns(name)} for name in ours if name in names}
            query = text(
                "SELECT table_name, column_name FROM information_schema.columns"
                f" WHERE table_schema = {schema} AND table_name IN :names"
            ).bindparams(bindparam("names", expanding=True))
            present: dict[str, set[str]] = {}
            for table, column in conn.execute(query, {"names": ours}):
                present.setdefault(str(table), set()).add(str(column))
            return present

    def _create_tables(self, d: dl.Deadline, tables: list[Table]) -> None:
        """Create what is missing. Several controllers may do so at the same moment.

        IF NOT EXISTS covers most of that race, but not all of it: PostgreSQL checks for the
        table before it takes the catalog's locks, so of two creators one may still fail, on a
        unique index of its catalog or with "type ... already exists". The loser tries that
        table again and then finds it there. (A real error fails every try and is raised.)
        """
        for table in tables:
            for attempt in range(3):
                try:
                    self._step(d, partial(execute, CreateTable(table, if_not_exists=True)))
                    break
                except (IntegrityError, ProgrammingError):
                    if attempt == 2:
                        raise

    def _add_columns(self, d: dl.Deadline, present: dict[str, set[str]]) -> None:
        """Bring tables made by an older release up to date, additively.

        ``present`` is what the catalog shows (table: column names). New columns have defaults,
        so controllers of the older release keep working beside newer ones during a rolling
        upgrade; the schema version is left as it is. Another controller may add the same column
        at the same moment: a failed ALTER whose column now exists is that race, lost.
        """
        for column in self.tables.added_columns:
            table = column.table.name
            if table not in present or column.name in present[table]:
                continue
            ddl = CreateColumn(column).compile(dialect=self.engine.dialect)  # from the one definition above
            quoted = self.engine.dialect.identifier_preparer.format_table(column.table)  # a prefix may need quotes
            try:
                self._step(d, partial(execute_sql, f"ALTER TABLE {quoted} ADD COLUMN {ddl}"))
                log.info("metastore: added column %s.%s", table, column.name)
            except SQLAlchemyError:
                if column.name not in self._columns(d).get(table, set()):
                    raise
