"""Every CLI command on a metastore holding a record no valid write produces: one line naming the
table (or znode) and the field, exit 1, never a traceback; commands that do not read that record
work. On SQLite garbage goes in every field; on MariaDB, PostgreSQL and ZooKeeper in one field of
each table. ``status`` also names a lease or placement its config could not have written."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from scheduler_failover_controller.config import load_config
from scheduler_failover_controller.metastore import Metastore, open_metastore
from scheduler_failover_controller.metastore.sql import SQLMetastore
from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore
from tests.cli.cli_support import Cli, as_json, assert_no_traceback, lines, make_cli
from tests.support.garbage import (
    HOST,
    SQL_FIELDS,
    YEARS_AHEAD,
    ZK_FIELDS,
    SqlField,
    ZkField,
    plant_sql,
    plant_zk,
    populate,
    populate_zk,
    sql_backend,
    zk_path,
)

# Commands that read every record (status, metadata), the events (history), or little (the rest).
READERS = [["status"], ["status", "--json"], ["metadata"], ["metadata", "--json"]]
OTHERS = [["history"], ["history", "--json"], ["test_connection"], ["pause"], ["resume"]]
OTHERS += [["switchover", "--to", HOST, "--wait", "0"], ["clear_metadata", "--yes"]]  # clear last


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return make_cli(tmp_path, scheduler_nodes_in_cluster=HOST, current_host=HOST, lease_ttl="30")  # as populate()


def open_store(cli: Cli) -> Metastore:
    store = open_metastore(load_config(str(cli.config)))
    if isinstance(store, ZooKeeperMetastore):
        populate_zk(store)
    else:
        populate(store)
    return store


def check(result: Result, command: list[str], names_it: Callable[[str], bool], must_fail: bool) -> None:
    """Worked (exit 0), or said what is wrong in one line naming the field (exit 1)."""
    assert_no_traceback(result)
    if result.exit_code == 0 and not must_fail:
        return
    out = lines(result)
    if command[0] == "test_connection":  # a line per node, then the metastore's
        assert result.exit_code == 1 and "FAILED: metastore " in out[-1] and names_it(out[-1]), result.output
        return
    assert result.exit_code == 1, (command, result.output)
    assert len(out) == 1 and out[0].startswith("Error: ") and names_it(out[0]), (command, result.output)


def run_all(cli: Cli, call: str, names_it: Callable[[str], bool], plant: Callable[[], Callable[[], None]]) -> None:
    restore = plant()
    for command in READERS:
        check(cli(*command), command, names_it, must_fail=True)
    for command in OTHERS:
        must_fail = call == "setup" or (command[0] == "history" and call == "events")
        check(cli(*command), command, names_it, must_fail)
        if command[0] == "clear_metadata":  # the last: it wiped the record, or (the schema version) failed
            if must_fail:
                restore()
            else:
                assert cli("status", "--json").exit_code == 2  # readable again, nothing runs
            return
        restore()  # a write may have fixed the record (pause writes the paused flag): plant it again
        restore = plant()


@pytest.mark.parametrize("field", SQL_FIELDS, ids=lambda f: f.label)
def test_every_command_on_garbage_in_a_sqlite_field(cli: Cli, field: SqlField) -> None:
    store = open_store(cli)
    assert isinstance(store, SQLMetastore)
    try:
        run_all(cli, field.call, field.named_in, lambda: plant_sql(store, field, field.garbage("sqlite")[0]))
    finally:
        store.close()


# On the servers, a field read by the cycle, one only status reads, and one history reads too (every
# field of theirs: tests/contract/test_metastore_rows.py; the CLI's error path is the same for all).
SERVER_SQL = [("sfc_lease", "expires_at"), ("sfc_observations", "pids"), ("sfc_events", "epoch")]
SERVER_ZK = [("leader", "ttl"), ("observations", "n1.pids"), ("events/", "epoch")]


@pytest.mark.parametrize("server", ["mariadb", "postgresql", "zookeeper"])
def test_every_command_on_garbage_on_the_servers(cli: Cli, server: str, request: pytest.FixtureRequest) -> None:
    # What is checked is the answer to garbage, not its speed: a metastore_timeout of 10s (not the
    # derived 5s), so that a CLI connecting to a server on a loaded 2-core machine reaches the garbage.
    keys = {"scheduler_nodes_in_cluster": HOST, "current_host": HOST, "lease_ttl": "30", "metastore_timeout": "10"}
    if server == "zookeeper":
        keys.update(
            metadata_service_type="zookeeper",
            metadata_service_zookeeper_nodes=request.getfixturevalue("zk_hosts"),
        )
    else:
        keys["metadata_service_sql_conn"] = request.getfixturevalue(
            "mariadb_url" if server == "mariadb" else "postgres_url"
        )
    cli.write_keys(keys)
    store = open_store(cli)
    try:
        if isinstance(store, ZooKeeperMetastore):
            zk = store
            for z in (z for z in ZK_FIELDS if (z.znode, z.member) in SERVER_ZK):
                path = zk_path(zk, z)

                def names(message: str, z: ZkField = z, path: str = path) -> bool:
                    return z.named_in(message, path)

                run_all(cli, z.call, names, lambda z=z: plant_zk(zk, z, z.garbage[0]))  # type: ignore[misc]
                populate_zk(zk)  # clear_metadata wiped it
            return
        assert isinstance(store, SQLMetastore)
        sql = store
        fields = [f for f in SQL_FIELDS if (f.table, f.column) in SERVER_SQL and f.garbage(sql_backend(sql))]
        assert len(fields) == len(SERVER_SQL)
        for f in fields:
            run_all(cli, f.call, f.named_in, lambda f=f: plant_sql(sql, f, f.garbage(sql_backend(sql))[0]))  # type: ignore[misc]
            populate(sql)  # clear_metadata wiped it
    finally:
        store.close()


# --- status names what its config could not have written ------------------------------------------


@pytest.fixture
def sqlite(cli: Cli) -> Iterator[SQLMetastore]:
    store = open_store(cli)
    assert isinstance(store, SQLMetastore)
    yield store
    store.close()


def _set_lease(store: SQLMetastore, host: str, seconds: float) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            f"UPDATE sfc_lease SET holder = '{host}:1:x', host = '{host}', "
            f"expires_at = (julianday('now') - 2440587.5) * 86400.0 + {seconds}"
        )


def test_status_names_a_lease_held_for_an_hour_by_a_host_outside_the_config(cli: Cli, sqlite: SQLMetastore) -> None:
    _set_lease(sqlite, "zz", 3600)
    result = cli("status", "--json")
    assert_no_traceback(result)
    data = as_json(result)
    assert isinstance(data, dict)
    assert data["active_controller"] == "zz"
    doubts = data["implausible"]
    assert len(doubts) == 2, doubts
    assert doubts[0] == "the lease is held by 'zz:1:x' on 'zz', which is not in scheduler_nodes_in_cluster"
    assert doubts[1].startswith("the lease of 'zz' expires in 3") and doubts[1].endswith("more than lease_ttl (30s)")
    assert set(doubts) <= set(data["problems"]) and result.exit_code == 1  # degraded, not healthy
    text = cli("status")
    assert text.exit_code == 1 and "which is not in scheduler_nodes_in_cluster" in lines(text)[0]


def test_status_of_a_plausible_cluster_has_no_doubts(cli: Cli, sqlite: SQLMetastore) -> None:
    data = as_json(cli("status", "--json"))
    assert isinstance(data, dict) and data["implausible"] == []


def test_status_on_a_lease_expiring_years_ahead_is_one_line(cli: Cli, sqlite: SQLMetastore) -> None:
    _set_lease(sqlite, HOST, YEARS_AHEAD)
    for command in (["status"], ["status", "--json"], ["metadata"]):
        result = cli(*command)
        assert_no_traceback(result)
        assert result.exit_code == 1
        [line] = lines(result)
        assert line.startswith("Error: sql sqlite:///") and "metastore row sfc_lease.expires_at is " in line, line
        assert "s ahead of the server's clock, longer than any lease can last" in line
    assert cli("clear_metadata", "--yes").exit_code == 0  # what an operator can do about it
    assert cli("status").exit_code == 2  # readable again: nothing runs
