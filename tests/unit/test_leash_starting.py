"""A leash still bringing up its scheduler keeps its node from reading as empty (no second start)."""

from __future__ import annotations

from dataclasses import replace

from scheduler_failover_controller.leash.records import LeashRecord, parse_leash_record, starting_leashes
from scheduler_failover_controller.nodes.ssh.ps_table import probe_table
from scheduler_failover_controller.probe import classify
from scheduler_failover_controller.probe_result import SchedulerState
from tests.unit.test_leash import BOOT, LEASH_ARGS, entry, listed


def test_a_record_carries_its_start_timeout() -> None:
    record = replace(listed(10, 100.0), linger=30.0)
    assert parse_leash_record(record.to_json()) == record
    assert parse_leash_record(replace(record, shown=True).to_json()) == replace(record, shown=True)
    assert parse_leash_record(record.to_json().replace("30.0", "-1.0")) is None
    assert parse_leash_record(record.to_json().replace("30.0", "NaN")) is None


def test_a_tree_leash_is_starting_until_its_start_timeout_has_passed() -> None:
    record = replace(listed(10, 100.0), linger=30.0)
    assert starting_leashes([record], 100.5) == [record]
    assert starting_leashes([record], 131.0) == [record]  # a little slack for the listing
    assert starting_leashes([record], 133.0) == []
    assert starting_leashes([record], None) == []  # the node's time since boot not known
    assert starting_leashes([replace(record, mode="denied")], 101.0) == []  # may be a watching one
    assert starting_leashes([replace(record, mode="watch")], 101.0) == []  # handed off: watched
    assert starting_leashes([replace(record, linger=0.0)], 101.0) == []  # an older leash claims none
    assert starting_leashes([replace(record, shown=True)], 101.0) == []  # its scheduler has shown: over


def test_no_scheduler_below_a_starting_leash_is_unhealthy_never_stopped() -> None:
    record: LeashRecord = replace(listed(10, 100.0), linger=30.0)
    result = classify("n", [], starting=[record])
    assert result.state is SchedulerState.UNHEALTHY and result.state.maybe_running
    assert result.leashed and "starting" in result.detail and "pid 10" in result.detail
    assert classify("n", []).state is SchedulerState.STOPPED


def test_a_listing_tells_a_start_under_way_by_the_time_of_its_newest_row() -> None:
    record = replace(listed(10, 100.0, watcher=11), linger=30.0)
    early = [entry(10, 1, LEASH_ARGS), entry(11, 10, LEASH_ARGS), entry(12, 10, "sleep 3", created=101.0)]
    result = probe_table("n", early, "airflow scheduler", leashes=[record], boot=BOOT)
    assert result.state is SchedulerState.UNHEALTHY and "starting" in result.detail
    late = [*early, entry(40, 1, "ps -eo pid", created=140.0)]
    assert probe_table("n", late, "airflow scheduler", leashes=[record], boot=BOOT).state is SchedulerState.STOPPED
