"""`switchover --wait` finds its outcome by its request's id; `history` shows ids and kinds it does not know."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import cast

import pytest

from scheduler_failover_controller.metastore.events import EventKind
from tests.support.waiting import wait_for

from .cli_support import HOST, NO_MATCH, Cli, as_json, make_cli
from .test_status_and_switchover import play_active

OTHER = "node-b"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return make_cli(
        tmp_path,
        scheduler_nodes_in_cluster=f"{HOST},{OTHER}",
        local_nodes=f"{HOST},{OTHER}",
        scheduler_process_match=f"{NO_MATCH}_{{node}}",
        lease_ttl="30",
    )


def test_switchover_takes_the_outcome_with_its_id_not_the_last_one(cli: Cli) -> None:
    cli.store().close()

    def answer() -> None:  # ours, and just after it another request's outcome
        store = cli.store()
        try:
            wait_for(lambda: store.read_state().switchover is not None, 20, "the switchover request")
            ours = store.read_state().switchover_id
            lease = store.acquire_or_renew("holder-a", HOST, 30)
            assert lease is not None and ours
            assert store.set_placement(OTHER, "holder-a", lease.epoch, 0, 30) is not None
            store.clear_switchover()
            store.add_event(HOST, EventKind.SWITCHOVER_DONE, "ours: switched to node-b", 1, ours)
            store.add_event(HOST, EventKind.SWITCHOVER_REFUSED, "someone else's: refused", 1, "another-request")
        finally:
            store.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    result = cli("switchover", "--to", OTHER, "--wait", "20")
    thread.join(10)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "ours: switched to node-b"
    events = as_json(cli("history", "--json"))
    assert isinstance(events, list)
    request, done, _ = events
    assert request["kind"] == "switchover" and request["request_id"] == done["request_id"] != ""


def test_switchover_ends_with_an_older_active_that_answers_without_an_id(cli: Cli) -> None:
    cli.store().close()
    answer = play_active(cli, EventKind.SWITCHOVER_DONE, "switched by an older controller", OTHER, with_id=False)
    result = cli("switchover", "--to", OTHER, "--wait", "20")
    answer.join(10)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "switched by an older controller"


def test_history_shows_request_ids_and_kinds_this_release_does_not_know(cli: Cli) -> None:
    store = cli.store()
    try:
        store.add_event(HOST, cast(EventKind, "from_a_newer_release"), "something new", 2)
        store.add_event(HOST, EventKind.SWITCHOVER_DONE, "switched", 2, "abc123")
    finally:
        store.close()
    result = cli("history", "--json")
    assert result.exit_code == 0, result.output
    events = as_json(result)
    assert isinstance(events, list)
    assert [(e["kind"], e["request_id"]) for e in events] == [
        ("from_a_newer_release", ""),
        ("switchover_done", "abc123"),
    ]
    text = cli("history")
    assert text.exit_code == 0, text.output
    assert f"[from_a_newer_release] {HOST} (epoch 2): something new" in text.output
    assert "(epoch 2) (request abc123): switched" in text.output
