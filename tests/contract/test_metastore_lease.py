"""The metastore contract's leadership lease: one atomic election, renewals, the epoch and expiry
by the server's clock, run against every backend (embedded SQLite, a real MariaDB, a real
PostgreSQL through psycopg2 and psycopg 3, a real 3-server ZooKeeper ensemble, each test in its own
database or chroot, and the unit tests' in-memory FakeStore, which so keeps the same contract).
Frozen and cut-off servers: test_metastore_faults.py.

The backends and the ``be``, ``sql_be``, ``store`` and ``other`` fixtures: tests/contract/conftest.py and
metastore_backends.py.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from scheduler_failover_controller.exceptions import MetastoreError
from scheduler_failover_controller.metastore.base import (
    Metastore,
)
from scheduler_failover_controller.metastore.sql import SQLMetastore
from tests.contract.metastore_backends import LEASE, TIMEOUT, Backend, open_spec

# --- leadership lease -----------------------------------------------------------------------


def test_first_acquire_wins_and_others_are_refused(store: Metastore, other: Any) -> None:
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None and lease.holder == "a" and lease.epoch == 1
    assert LEASE - 1 < lease.remaining <= LEASE
    b = other()
    assert b.acquire_or_renew("b", "host-b", LEASE) is None
    state = b.read_state()
    assert state.lease.holder == "a" and state.lease.host == "host-a" and state.lease.valid


def test_renewal_keeps_epoch_and_the_lease(store: Metastore) -> None:
    first = store.acquire_or_renew("a", "host-a", LEASE)
    time.sleep(0.2)
    second = store.acquire_or_renew("a", "host-a", LEASE)
    assert first and second
    assert second.epoch == first.epoch
    assert LEASE - 1 < second.remaining <= LEASE


def test_release_lets_another_take_over_with_next_epoch(store: Metastore, other: Any) -> None:
    first = store.acquire_or_renew("a", "host-a", LEASE)
    assert first is not None
    assert store.release("a") is True
    assert store.release("a") is False  # already released
    taken = other().acquire_or_renew("b", "host-b", LEASE)
    assert taken is not None and taken.epoch == first.epoch + 1


def test_a_lapsed_lease_goes_to_the_next_contender(store: Metastore, other: Any, be: Backend) -> None:
    first = store.acquire_or_renew("a", "host-a", LEASE)
    assert first is not None
    b = other()
    assert b.acquire_or_renew("b", "host-b", LEASE) is None
    be.lapse(store)
    taken = b.acquire_or_renew("b", "host-b", LEASE)
    assert taken is not None and taken.epoch == first.epoch + 1
    # The old holder cannot renew: its lease (or session) is gone, and the new one's is valid.
    assert store.acquire_or_renew("a", "host-a", LEASE) is None


def test_expiry_is_judged_by_server_time(tmp_path: Path, backend: tuple[str, str]) -> None:
    """SQL: a lease left alone expires by the server's clock, with no help from the holder."""
    a, b = SQLMetastore(backend[1], TIMEOUT), SQLMetastore(backend[1], TIMEOUT)
    first = a.acquire_or_renew("a", "host-a", 0.6)
    assert first is not None
    assert b.acquire_or_renew("b", "host-b", 5) is None
    time.sleep(0.8)
    taken = b.acquire_or_renew("b", "host-b", 5)
    assert taken is not None and taken.epoch == first.epoch + 1
    assert a.acquire_or_renew("a", "host-a", 5) is None
    a.close()
    b.close()


def test_same_holder_after_a_lapse_starts_a_new_term(store: Metastore, be: Backend) -> None:
    first = store.acquire_or_renew("a", "host-a", LEASE)
    be.lapse(store)
    again = None
    for _ in range(50):  # ZooKeeper: the client reconnects with a new session first
        try:
            again = store.acquire_or_renew("a", "host-a", LEASE)
            break
        except MetastoreError:
            time.sleep(0.1)
    assert first and again and again.epoch == first.epoch + 1


def test_epoch_is_monotonic_across_many_changes_and_a_wipe(store: Metastore) -> None:
    epochs = []
    for i in range(20):
        lease = store.acquire_or_renew(f"h{i % 3}", "h", LEASE)
        assert lease is not None
        epochs.append(lease.epoch)
        assert store.release(f"h{i % 3}")
    assert epochs == list(range(epochs[0], epochs[0] + 20))
    store.clear()
    after = store.acquire_or_renew("z", "z", LEASE)
    assert after is not None and after.epoch == epochs[-1] + 1


def test_controller_clock_is_never_used(store: Metastore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller's wall clock jumping by hours changes nothing: only the server's counts."""
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    monkeypatch.setattr(time, "time", lambda: 0.0)
    assert lease is not None
    renewed = store.acquire_or_renew("a", "host-a", LEASE)
    assert renewed is not None and renewed.epoch == lease.epoch and LEASE - 1 < renewed.remaining <= LEASE


def _contend(spec: tuple[str, str], me: str, rounds: int, barrier: Any, results: Any) -> None:
    # The race is about atomicity, not speed: a call that times out on a loaded machine would leave
    # the round without its answer, so each call gets a generous deadline.
    s = open_spec(spec, timeout=20.0)
    for r in range(rounds):
        barrier.wait()
        lease = s.acquire_or_renew(me, me, 60)
        results.put((r, me, lease.epoch if lease else None))
        barrier.wait()
        if lease is not None:
            s.release(me)
        barrier.wait()
    s.close()


@pytest.mark.parametrize("contenders", [2, 3])
def test_racing_processes_exactly_one_wins_every_round(be: Backend, contenders: int) -> None:
    be.needs_server("processes racing need a store they share")
    be.open().close()  # schema first, so the race is about the lease
    rounds = 40
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(contenders, timeout=60)
    results = ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(be.spec, f"c{i}", rounds, barrier, results)) for i in range(contenders)]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=120) for _ in range(rounds * contenders)]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs)
    winners: dict[int, list[tuple[str, int]]] = {}
    for r, me, epoch in got:
        if epoch is not None:
            winners.setdefault(r, []).append((me, epoch))
    assert sorted(winners) == list(range(rounds)), "a round had no winner"
    assert all(len(w) == 1 for w in winners.values()), f"two winners in one round: {winners}"
    epochs = [winners[r][0][1] for r in range(rounds)]
    assert epochs == list(range(epochs[0], epochs[0] + rounds))


def test_concurrent_setup_from_many_processes(be: Backend) -> None:
    be.needs_server("processes need a store they share")
    code = textwrap.dedent(
        f"""
        from tests.contract.metastore_backends import open_spec
        s = open_spec({be.spec!r})
        print(s.read_state().lease.epoch)
        s.close()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [o[1].decode()[-500:] for o in outs]
    assert all(o[0].decode().strip() == "0" for o in outs)


def test_newer_schema_is_refused(store: Metastore, be: Backend) -> None:
    be.set_schema(store, 99)
    with pytest.raises(MetastoreError, match="schema version 99"):
        be.open()
