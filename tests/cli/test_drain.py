"""`drain NODE` and `undrain NODE` from the command line, on a SQLite metastore: bad names are one
line and exit 2, a drain that would leave no node is refused, the state and its events show in
`status` and `history`, and `--wait` follows the active's outcome for the drain's request id."""

from __future__ import annotations

import threading

import pytest

from scheduler_failover_controller.metastore.events import EventKind
from tests.cli.cli_support import HOST, NO_MATCH, Cli, as_json, assert_one_error_line, lines
from tests.support.waiting import wait_for

OTHER = "node-b"


@pytest.fixture
def two(cli: Cli) -> Cli:
    cli.write(  # two nodes on this host, so that a SQLite metastore will do
        scheduler_nodes_in_cluster=f"{HOST},{OTHER}",
        local_nodes=f"{HOST},{OTHER}",
        node_control="ssh",
        scheduler_process_match=f"{NO_MATCH}_{{node}}",
    )
    return cli


@pytest.mark.parametrize("command", ["drain", "undrain"])
def test_a_node_not_in_the_cluster_is_one_line_and_exit_2(two: Cli, command: str) -> None:
    result = two(command, "node-z")
    assert_one_error_line(result, 2, "'node-z' is not in scheduler_nodes_in_cluster (node-a, node-b)")


def test_drain_and_undrain_show_in_status_and_history(two: Cli) -> None:
    result = two("drain", OTHER, "--wait", "0")
    assert result.exit_code == 0 and lines(result) == [f"drained {OTHER}"], result.output
    status = as_json(two("status", "--json"))
    assert isinstance(status, dict) and status["drained"] == [OTHER]
    assert f"drained: {OTHER}" in two("status").output
    result = two("drain", HOST, "--wait", "0")
    assert_one_error_line(result, 1, f"refused to drain {HOST}: every other node is drained")
    assert lines(two("undrain", OTHER)) == [f"undrained {OTHER}"]
    assert lines(two("undrain", OTHER)) == [f"{OTHER} was not drained"]
    status = as_json(two("status", "--json"))
    assert isinstance(status, dict) and status["drained"] == []
    events = as_json(two("history", "--json"))
    assert isinstance(events, list)
    assert [e["kind"] for e in events] == ["drain", "undrain"]


def test_drain_wait_returns_at_once_when_the_scheduler_is_elsewhere(two: Cli) -> None:
    result = two("drain", OTHER, "--wait", "20")
    assert result.exit_code == 0, result.output
    assert lines(result) == [f"drained {OTHER}; the scheduler runs on no node"]


@pytest.mark.parametrize(("kind", "code"), [(EventKind.SWITCHOVER_DONE, 0), (EventKind.SWITCHOVER_FAILED, 1)])
def test_drain_wait_follows_the_outcome_of_the_drains_move(two: Cli, kind: EventKind, code: int) -> None:
    store = two.store()
    lease = store.acquire_or_renew("holder-a", HOST, 30)
    assert lease is not None and store.set_placement(HOST, "holder-a", lease.epoch, 0, 30) is not None

    def active() -> None:  # stands in for the active controller: moves it off the drained node
        wait_for(lambda: HOST in store.read_state().drained, 20, "the drain")
        request = store.read_state().drained[HOST]
        version = store.read_state().placement.version
        assert store.set_placement(OTHER, "holder-a", lease.epoch, version, 30) is not None
        store.add_event(HOST, kind, f"controlled switchover from {HOST} to {OTHER}: the words", 1, request)

    thread = threading.Thread(target=active, daemon=True)
    thread.start()
    try:
        result = two("drain", HOST, "--wait", "20")
    finally:
        thread.join(10)
        store.close()
    assert result.exit_code == code, result.output
    if code == 0:
        assert lines(result) == [f"controlled switchover from {HOST} to {OTHER}: the words"]
    else:
        assert_one_error_line(result, 1, "the scheduler was not moved")


def test_drain_wait_gives_up_with_one_line_when_nobody_moves_it(two: Cli) -> None:
    store = two.store()
    lease = store.acquire_or_renew("holder-a", HOST, 30)
    assert lease is not None and store.set_placement(HOST, "holder-a", lease.epoch, 0, 30) is not None
    store.close()
    result = two("drain", HOST, "--wait", "1")
    assert_one_error_line(result, 1, f"drained {HOST}, but the scheduler still runs there after 1s")
