"""Operations per service from the command line: ``switchover --service``, ``status`` and
``history`` with a service ``beat`` beside the scheduler, and ``drain --wait`` waiting for every
service to leave the node.

Real commands on a config with a section for ``beat``, on the real SQLite metastore; a thread
writing through the same store stands in for the active controller where one must answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from scheduler_failover_controller.metastore.base import Metastore
from scheduler_failover_controller.metastore.events import EventKind
from tests.cli.cli_support import HOST, NO_MATCH, Cli, as_json, assert_one_error_line, lines
from tests.support.waiting import wait_for
from tests.unit.ops_support import BEAT, place

OTHER = "node-b"
HOLDER = "holder-a"
STOPPED = {HOST: "stopped", OTHER: "stopped"}


def write(cli: Cli, extra: str = "", **keys: str) -> None:
    base = {  # two nodes on this host
        "scheduler_nodes_in_cluster": f"{HOST},{OTHER}",
        "local_nodes": f"{HOST},{OTHER}",
        "node_control": "ssh",
        "scheduler_process_match": f"{NO_MATCH}_{{node}}",
    }
    cli.write_keys({**base, **keys}, extra)


def beat_section(nodes: str = "") -> str:
    return (
        f"[scheduler_failover_service_{BEAT}]\n"
        f"start_command = sleep 1000\nprocess_match = {NO_MATCH}_beat_{{node}}\n"
        + (f"nodes = {nodes}\n" if nodes else "")
    )


@pytest.fixture
def two(cli: Cli) -> Cli:
    write(cli)
    return cli


@pytest.fixture
def fleet(two: Cli) -> Iterator[Metastore]:
    """The config gains ``beat`` (on both nodes); the test writes the records through the real store."""
    write(two, beat_section(), services=BEAT)
    store = two.store()
    try:
        yield store
    finally:
        store.close()


def test_an_unknown_service_is_one_line_and_exit_2(two: Cli) -> None:
    result = two("switchover", "--to", OTHER, "--service", "nope")
    assert_one_error_line(result, 2, "--service: no service 'nope'", "(services: scheduler)")


def test_switchover_of_a_service_goes_through_its_view(two: Cli, fleet: Metastore) -> None:
    result = two("switchover", "--to", OTHER, "--service", BEAT, "--wait", "0")
    assert result.exit_code == 0, result.output
    assert lines(result) == [f"requested a controlled switchover of {BEAT} to {OTHER}"]
    assert fleet.for_service(BEAT).read_state().switchover == (OTHER, "controlled")
    assert fleet.read_state().switchover is None  # the scheduler's request is untouched
    events = as_json(two("history", "--json"))
    assert isinstance(events, list)
    assert [(e["service"], e["kind"]) for e in events] == [(BEAT, "switchover")]


def test_switchover_wait_follows_the_outcome_of_that_service(two: Cli, fleet: Metastore) -> None:
    assert fleet.acquire_or_renew(HOLDER, HOST, 5) is not None
    beat = fleet.for_service(BEAT)
    place(beat, HOLDER, HOST, {**STOPPED, HOST: "running"})
    # The scheduler's own outcome under another id, and nothing of beat's yet: no answer.
    fleet.add_event(HOST, EventKind.SWITCHOVER_DONE, "the scheduler moved", 1, "other")

    def active() -> None:  # stands in for the active controller: carries beat's request out
        wait_for(lambda: beat.read_state().switchover is not None, 20, "beat's request")
        request = beat.read_state().switchover_id
        place(beat, HOLDER, OTHER, {**STOPPED, OTHER: "running"})
        beat.clear_switchover()
        beat.add_event(HOST, EventKind.SWITCHOVER_DONE, f"beat moved to {OTHER}", 1, request)

    thread = threading.Thread(target=active, daemon=True)
    thread.start()
    try:
        result = two("switchover", "--to", OTHER, "--service", BEAT, "--wait", "20")
    finally:
        thread.join(10)
    assert result.exit_code == 0, result.output
    assert lines(result) == [f"beat moved to {OTHER}"]


def test_a_node_not_of_the_service_is_refused(two: Cli, fleet: Metastore) -> None:
    write(two, beat_section(nodes=HOST), services=BEAT)
    result = two("switchover", "--to", OTHER, "--service", BEAT)
    assert result.exit_code == 2 and f"'{OTHER}' is not in the nodes of beat ({HOST})" in result.output


def test_status_shows_every_service(two: Cli, fleet: Metastore) -> None:
    assert fleet.acquire_or_renew(HOLDER, HOST, 5) is not None
    place(fleet, HOLDER, HOST, {**STOPPED, HOST: "running"})
    place(fleet.for_service(BEAT), HOLDER, OTHER, {**STOPPED, OTHER: "running"})
    status = as_json(two("status", "--json"))
    assert isinstance(status, dict)
    assert status["scheduler_node"] == HOST
    assert [(s["name"], s["node"], s["state"]) for s in status["services"]] == [
        ("scheduler", HOST, "running"),
        (BEAT, OTHER, "running"),
    ]
    text = two("status").output
    services = text[text.index("services:") :].splitlines()
    assert services[:3] == [
        "services:",
        f"  scheduler: running on {HOST} (healthy)",
        f"  {BEAT}: running on {OTHER} (healthy)",
    ]
    assert services[3].startswith(f"    {HOST}: stopped (observed ")


def test_history_text_names_the_service(two: Cli, fleet: Metastore) -> None:
    fleet.add_event(HOST, EventKind.START, "scheduler started")
    fleet.for_service(BEAT).add_event(HOST, EventKind.START, "beat started")
    out = two("history").stdout.splitlines()
    assert " scheduler [start] " in out[0] and out[0].endswith("scheduler started")
    assert f" {BEAT}      [start] " in out[1] and out[1].endswith("beat started")


def test_drain_wait_waits_until_no_service_is_left(two: Cli, fleet: Metastore) -> None:
    assert fleet.acquire_or_renew(HOLDER, HOST, 5) is not None
    beat = fleet.for_service(BEAT)
    place(fleet, HOLDER, OTHER, {**STOPPED, OTHER: "running"})  # the scheduler is elsewhere already
    place(beat, HOLDER, HOST, {**STOPPED, HOST: "running"})  # beat is on the node to drain

    def active() -> None:  # moves beat off the drained node, under the drain's id
        wait_for(lambda: HOST in fleet.read_state().drained, 20, "the drain")
        request = fleet.read_state().drained[HOST]
        place(beat, HOLDER, OTHER, {**STOPPED, OTHER: "running"})
        beat.add_event(HOST, EventKind.SWITCHOVER_DONE, f"beat moved from {HOST} to {OTHER}", 1, request)

    thread = threading.Thread(target=active, daemon=True)
    thread.start()
    try:
        result = two("drain", HOST, "--wait", "20")
    finally:
        thread.join(10)
    assert result.exit_code == 0, result.output
    assert lines(result) == [f"drained {HOST}; the scheduler runs on {OTHER}", f"beat moved from {HOST} to {OTHER}"]
