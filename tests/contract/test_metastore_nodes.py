"""Drained nodes and failed starts, on every backend (the in-memory FakeStore, SQLite, MariaDB,
PostgreSQL through psycopg2 and psycopg 3, a 3-server ZooKeeper ensemble): a drain is seen by every
client with the next ``read_state``, a drain that would leave no node is refused atomically, failed
starts are counted with the server's clock and forgotten only as asked, and ``clear`` drops both.

The backends and the fixtures: tests/contract/conftest.py and metastore_backends.py.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from scheduler_failover_controller.exceptions import MetastoreError
from scheduler_failover_controller.metastore.base import Metastore

NODES = ("n1", "n2", "n3")


def test_a_drain_is_read_back_by_every_client_and_survives_a_new_client(
    store: Metastore, other: Callable[[], Metastore]
) -> None:
    assert store.read_state().drained == {}
    assert store.drain("n2", NODES, "req-1")
    second = other()
    assert second.read_state().drained == {"n2": "req-1"}
    assert store.drain("n2", NODES, "req-2")  # again: the newer request's id
    assert second.read_state().drained == {"n2": "req-2"}
    assert second.drain("n1", NODES)
    assert other().read_state().drained == {"n1": "", "n2": "req-2"}
    assert store.dump()["drained"] == ["n1", "n2"]
    assert second.undrain("n2")
    assert not second.undrain("n2")  # not drained any more
    assert store.read_state().drained == {"n1": ""}


def test_a_drain_that_would_leave_no_node_is_refused(store: Metastore) -> None:
    assert store.drain("n1", NODES)
    assert store.drain("n2", NODES)
    assert not store.drain("n3", NODES)
    assert store.read_state().drained == {"n1": "", "n2": ""}
    assert store.drain("n1", NODES, "again")  # draining a drained node leaves n3: fine


def test_two_drains_of_the_last_two_nodes_at_once_leave_one_node(other: Callable[[], Metastore]) -> None:
    clients = [other(), other()]
    clients[0].setup()
    for _ in range(3):
        results = []
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(c.drain, n, ("n1", "n2")) for c, n in zip(clients, ("n1", "n2"))]
            for f in futures:
                try:
                    results.append(f.result())
                except MetastoreError:  # a writer that lost a race (SQLite busy): refused, never both
                    results.append(False)
        drained = clients[0].read_state().drained
        assert len(drained) <= 1 and results.count(True) <= 1, (results, drained)
        for node in list(drained):
            clients[0].undrain(node)


def test_failed_starts_are_counted_with_the_server_clock_and_forgotten_as_asked(
    store: Metastore, other: Callable[[], Metastore]
) -> None:
    assert store.failures() == []
    first = store.record_failure("n2")
    assert (first.node, first.strikes) == ("n2", 1)
    second = store.record_failure("n2")
    assert second.strikes == 2 and second.last_at >= first.last_at
    store.record_failure("n3")
    seen = other().failures()  # a new active inherits them
    assert [(f.node, f.strikes) for f in seen] == [("n2", 2), ("n3", 1)]
    assert all(f.age >= 0 and abs(f.server_now - f.last_at) < 60 for f in seen)
    assert not store.forget_failures("n2", strikes=1)  # one more was recorded since that read
    assert [(f.node, f.strikes) for f in store.failures()] == [("n2", 2), ("n3", 1)]
    assert store.forget_failures("n2", strikes=2)
    assert store.forget_failures("n3")
    assert not store.forget_failures("n3")
    assert store.failures() == []
    assert store.record_failure("n2").strikes == 1  # counting starts again
    assert [f["node"] for f in store.dump()["failures"]] == ["n2"]


def test_clear_drops_drains_and_failed_starts(store: Metastore) -> None:
    store.drain("n1", NODES, "r")
    store.record_failure("n2")
    store.clear()
    assert store.read_state().drained == {}
    assert store.failures() == []
    assert store.drain("n1", NODES)  # and they work afterwards
    assert store.record_failure("n2").strikes == 1
