"""`status` judged once as data (status.py); `switchover` decided on the outcome event's kind, never its words."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from scheduler_failover_controller.config import load_config
from scheduler_failover_controller.controller.term import Role
from scheduler_failover_controller.metastore.base import ControllerInfo, Observation
from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.probe_result import SchedulerState
from scheduler_failover_controller.status import ClusterHealth, read_status, role_by_lease
from tests.support.waiting import wait_for

from .cli_support import HOST, NO_MATCH, Cli, as_json, make_cli

OTHER = "node-b"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    # Two nodes on this host (so a sqlite metastore will do), each with its own match.
    return make_cli(
        tmp_path,
        scheduler_nodes_in_cluster=f"{HOST},{OTHER}",
        local_nodes=f"{HOST},{OTHER}",
        node_control="ssh",
        scheduler_process_match=f"{NO_MATCH}_{{node}}",
        lease_ttl="30",
    )


def test_cluster_health_exit_codes() -> None:
    assert [(h.value, h.exit_code) for h in ClusterHealth] == [("healthy", 0), ("degraded", 1), ("no scheduler", 2)]


def test_a_role_is_what_the_lease_says_and_an_unknown_one_is_kept_as_written() -> None:
    assert role_by_lease("standby", holds_lease=True, silent=False) is Role.ACTIVE
    assert role_by_lease("active", holds_lease=False, silent=True) is Role.SILENT
    assert role_by_lease("active", holds_lease=False, silent=False) is Role.STANDBY
    assert role_by_lease("starting", holds_lease=False, silent=False) is Role.STARTING
    assert role_by_lease("observer", holds_lease=False, silent=False) == "observer"


def test_status_is_data_on_enums_and_its_json_keeps_its_field_names(cli: Cli) -> None:
    store = cli.store()
    try:
        lease = store.acquire_or_renew("holder-a", HOST, 30)
        assert lease is not None
        store.heartbeat(ControllerInfo(HOST, "holder-a", 4242, "9.9", "active", 0.0, 0.0))
        store.heartbeat(ControllerInfo(OTHER, "holder-b", 4343, "9.9", "observer", 0.0, 0.0))
        assert store.set_placement(HOST, "holder-a", lease.epoch, 0, 30) is not None
        observed = [Observation(HOST, "running", (1234,), ""), Observation(OTHER, "sideways", (), "")]
        assert store.record_observations("holder-a", lease.epoch, observed)
        status = read_status(store, load_config(str(cli.config)))
    finally:
        store.close()
    assert status.health is ClusterHealth.HEALTHY and status.problems == []
    assert [c.role for c in status.controllers] == [Role.ACTIVE, "observer"]
    assert [n.scheduler for n in status.nodes] == [SchedulerState.RUNNING, "sideways"]
    data = status.to_json()
    assert list(data) == [
        "health",
        "problems",
        "active_controller",
        "epoch",
        "scheduler_node",
        "placement_expires_in_s",
        "paused",
        "implausible",
        "controllers",
        "nodes",
        "last_failover",
        "node_control",
        "drained",
        "failed_starts",
        "services",
    ]
    assert data["health"] == "healthy"
    assert [list(s) for s in data["services"]] == [
        [
            "name",
            "node",
            "state",
            "health",
            "problems",
            "placement_expires_in_s",
            "switchover",
            "nodes",
            "failed_starts",
        ]
    ]
    assert [list(c) for c in data["controllers"]] == [
        ["host", "role", "pid", "version", "heartbeat_age_s", "paused"]
    ] * 2
    assert [c["role"] for c in data["controllers"]] == ["active", "observer"]
    assert [list(n) for n in data["nodes"]] == [
        ["host", "scheduler", "pids", "observed_age_s", "foreign", "report_age_s"]
    ] * 2
    assert [(n["host"], n["scheduler"], n["pids"]) for n in data["nodes"]] == [
        (HOST, "running", [1234]),
        (OTHER, "sideways", []),
    ]
    result = cli("status", "--json")
    assert result.exit_code == 0, result.output
    shown = as_json(result)
    assert isinstance(shown, dict) and list(shown) == list(data)


def play_active(
    cli: Cli, kind: EventKind, message: str, place_on: str | None, with_id: bool = True
) -> threading.Thread:
    """Stand in for the active controller: answer the next switchover request with ``kind`` and ``message``.

    Like a controller, it clears the request first and then records the outcome, with the request's
    id (``with_id``) or without one (a controller of a release without ids).
    """

    def answer() -> None:
        store = cli.store()
        try:
            wait_for(lambda: store.read_state().switchover is not None, 20, "the switchover request")
            request_id = store.read_state().switchover_id if with_id else ""
            if place_on is not None:
                lease = store.acquire_or_renew("holder-a", HOST, 30)
                assert lease is not None
                assert store.set_placement(place_on, "holder-a", lease.epoch, 0, 30) is not None
            store.clear_switchover()
            store.add_event(HOST, kind, message, 1, request_id)
        finally:
            store.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("kind", "code"),
    [(EventKind.SWITCHOVER_DONE, 0), (EventKind.SWITCHOVER_REFUSED, 1), (EventKind.SWITCHOVER_FAILED, 1)],
)
def test_switchover_is_judged_by_the_outcome_kind_not_its_words(cli: Cli, kind: EventKind, code: int) -> None:
    cli.store().close()  # the schema, before both sides use it
    # The words say nothing either way: only the kind tells.
    message = "the operator's wish was considered"
    answer = play_active(cli, kind, message, place_on=OTHER)
    result = cli("switchover", "--to", OTHER, "--wait", "20")
    answer.join(10)
    assert result.exit_code == code, result.output
    assert result.output.strip() == (message if code == 0 else f"Error: {message}")
    history = cli("history", "--json")
    events = as_json(history)
    assert isinstance(events, list)
    assert [e["kind"] for e in events] == ["switchover", kind.value]


def test_an_earlier_switchovers_outcome_is_not_taken_for_this_ones(cli: Cli) -> None:
    """The outcome is looked for after this request's event only: an old failure says nothing now."""
    store = cli.store()
    store.add_event(HOST, EventKind.SWITCHOVER, f"controlled switchover to {OTHER} requested", 1)
    store.add_event(HOST, EventKind.SWITCHOVER_FAILED, "an old failure", 1)
    store.close()

    def carry_out_silently() -> None:  # an active that moves it but records no outcome (an older release)
        active = cli.store()
        try:
            wait_for(lambda: active.read_state().switchover is not None, 20, "the switchover request")
            lease = active.acquire_or_renew("holder-a", HOST, 30)
            assert lease is not None
            assert active.set_placement(OTHER, "holder-a", lease.epoch, 0, 30) is not None
            active.clear_switchover()
        finally:
            active.close()

    thread = threading.Thread(target=carry_out_silently, daemon=True)
    thread.start()
    result = cli("switchover", "--to", OTHER, "--wait", "20")
    thread.join(10)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "no outcome recorded"


def test_switchover_words_that_once_meant_failure_do_not_fail_a_done_one(cli: Cli) -> None:
    cli.store().close()
    message = (
        "controlled switchover from node-a to node-b: stopped ['node-a'], started: up after 1.0s (it had failed once)"
    )
    answer = play_active(cli, EventKind.SWITCHOVER_DONE, message, place_on=OTHER)
    result = cli("switchover", "--to", OTHER, "--wait", "20")
    answer.join(10)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == message


def test_a_done_switchover_that_did_not_place_the_scheduler_there_fails(cli: Cli) -> None:
    cli.store().close()
    answer = play_active(cli, EventKind.SWITCHOVER_DONE, "switched", place_on=HOST)
    result = cli("switchover", "--to", OTHER, "--wait", "20")
    answer.join(10)
    assert result.exit_code == 1, result.output
    assert result.output.strip() == "Error: switched"
