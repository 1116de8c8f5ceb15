"""The unit tests' fakes keep the contract they stand for, and ``make_config`` builds a valid config."""

from __future__ import annotations

import pytest

from scheduler_failover_controller.exceptions import MetastoreError
from scheduler_failover_controller.probe_result import SchedulerState

from .fakes import FakeClock, FakeRunner, FakeStore, make_config

# --- the fakes keep the contract they stand for ---------------------------------------------


def test_fake_store_keeps_the_lease_and_placement_contract() -> None:
    store = FakeStore(server_now=100.0)
    a = store.acquire_or_renew("a", "n1", 5)
    assert a is not None and a.epoch == 1 and a.remaining == 5
    assert store.acquire_or_renew("b", "n2", 5) is None  # a's lease is still valid
    store.advance(3)
    renewed = store.acquire_or_renew("a", "n1", 5)
    assert renewed is not None and renewed.epoch == 1  # renewal keeps the epoch
    store.advance(5.5)
    b = store.acquire_or_renew("b", "n2", 5)
    assert b is not None and b.epoch == 2  # new holder after expiry: new term
    assert store.set_placement("n1", "a", 1, 0, 5) is None  # stale epoch is fenced off
    p = store.set_placement("n2", "b", 2, 0, 5)
    assert p is not None and p.version == 1 and p.epoch == 2 and p.valid
    assert store.set_placement("n3", "b", 2, 0, 5) is None  # version moved
    assert store.renew_placement("n1", 5) is None  # not n1's
    assert store.renew_placement("n2", 5, "a", 1) is None  # fenced renewal by a stale leader
    store.advance(6)
    assert store.renew_placement("n2", 5) is None  # an expired placement is never revived
    assert store.release("a") is False
    b2 = store.acquire_or_renew("b", "n2", 5)
    assert b2 is not None and b2.epoch == 3  # same holder after expiry: new term
    assert store.release("b") is True and not store.read_state().lease.valid
    store.fail = True
    with pytest.raises(MetastoreError):
        store.read_state()


def test_fake_runner_start_stop_and_faults() -> None:
    clock = FakeClock()
    runner = FakeRunner("n1")
    assert runner.probe().state is SchedulerState.STOPPED
    runner.start(0.0)
    assert runner.probe().state is SchedulerState.RUNNING and runner.starts == 1
    assert runner.stop().state is SchedulerState.STOPPED and runner.stops == 1
    runner.reachable = False
    assert runner.probe().state is SchedulerState.UNKNOWN
    clock.sleep(2)
    assert clock.monotonic() == 1002.0 and clock.slept == [2]


def test_make_config_builds_a_valid_test_config() -> None:
    config = make_config("n2", lease_ttl=7)
    assert config.current_host == "n2" and config.nodes == ("n1", "n2", "n3")
    assert (config.poll_frequency, config.lease_ttl, config.metastore_timeout) == (1, 7, 0.5)
