"""Whose processes count as the scheduler (ownership), foreign ones reported, and the placed node
looked after before strays elsewhere."""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from scheduler_failover_controller.config import ConfigError
from scheduler_failover_controller.metastore.base import Observation
from scheduler_failover_controller.nodes.ssh import scripts
from scheduler_failover_controller.ownership import (
    SCHEDULER_USER_ENV,
    ForeignLog,
    counts,
    expected_uid,
    resolve_user,
    split_procs,
)
from scheduler_failover_controller.probe_result import ForeignProcess, ProbeResult, SchedulerState
from scheduler_failover_controller.process_tree import below
from scheduler_failover_controller.status import read_status

from .fakes import Cluster, make_config

NOBODY = pwd.getpwnam("nobody").pw_uid
ME = os.geteuid()
ME_NAME = pwd.getpwuid(ME).pw_name


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.close()


# --- the rule -------------------------------------------------------------------------------------


def test_a_user_is_a_name_or_a_uid_and_an_unknown_name_is_refused() -> None:
    assert resolve_user("nobody") == NOBODY
    assert resolve_user(str(NOBODY)) == NOBODY
    assert resolve_user(" 4242 ") == 4242  # a uid needs no name
    with pytest.raises(ValueError, match=r"must name a user of this machine .*'no-such-user-x'"):
        resolve_user("no-such-user-x")
    with pytest.raises(ValueError, match="must be"):
        resolve_user(str(2**32))


def test_the_expected_user_is_the_configured_one_else_the_env_else_our_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCHEDULER_USER_ENV, raising=False)
    assert expected_uid() == ME and expected_uid("") == ME
    assert expected_uid("nobody") == NOBODY
    monkeypatch.setenv(SCHEDULER_USER_ENV, "nobody")
    assert expected_uid() == NOBODY


def test_counts_below_a_leash_whatever_the_user_else_only_the_expected_user() -> None:
    assert counts((NOBODY, NOBODY), ME, leashed=True)
    assert counts((ME, ME), ME, leashed=False)
    assert not counts((NOBODY, NOBODY), ME, leashed=False)
    assert not counts((NOBODY, ME), ME, leashed=False)  # a set-uid program another user ran
    assert not counts((ME, NOBODY), ME, leashed=False)
    assert not counts(None, ME, leashed=False)  # not known: not ours


def test_below_follows_the_ancestors() -> None:
    parents = {30: 20, 20: 10, 10: 1, 1: 0}
    assert below(30, parents.get, {10})
    assert not below(30, parents.get, {30})  # itself is no ancestor
    assert not below(30, parents.get, {99})
    loop = {5: 6, 6: 5}
    assert not below(5, loop.get, {99})  # bounded


def test_split_procs_on_real_processes() -> None:
    me = psutil.Process()
    parent = me.parent()
    assert parent is not None
    assert split_procs([me], ME, set()) == ([me], [])
    owned, foreign = split_procs([me], NOBODY, set())
    assert owned == [] and foreign == [ForeignProcess(me.pid, ME_NAME)]
    assert split_procs([me], NOBODY, {parent.pid}) == ([me], [])  # below a live leash: counts


def test_foreign_processes_are_logged_when_they_appear_and_go_not_every_cycle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = ForeignLog(logging.getLogger("test.foreign"))
    one, two = ForeignProcess(7, "nobody"), ForeignProcess(8, "nobody")
    with caplog.at_level(logging.INFO, logger="test.foreign"):
        for _ in range(3):
            log.note("n1", [one])
        log.note("n1", [one, two])
        log.note("n1", [two])
        log.note("n1", [])
        log.note("n1", [])
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert "pid 7 (nobody)" in messages[0] and "neither counted nor signalled" in messages[0]
    assert "pid 8 (nobody)" in messages[1] and "pid 7" not in messages[1]
    assert messages[2] == "n1: no foreign scheduler process any more"


# --- config ---------------------------------------------------------------------------------------


def test_scheduler_user_is_checked_when_the_config_is_loaded() -> None:
    assert make_config("n1", scheduler_user="nobody").scheduler_uid() == NOBODY
    assert make_config("n1").scheduler_uid() == ME
    with pytest.raises(ConfigError, match=r"scheduler_user.*no-such-user-x") as caught:
        make_config("n1", scheduler_user="no-such-user-x")
    assert "\n" not in str(caught.value)


# --- the SSH side ---------------------------------------------------------------------------------


def test_the_listing_says_whose_processes_count_there(tmp_path: Path) -> None:
    script = scripts.listing_script(tmp_path, "n1", "air flow")
    assert "id -u 'air flow'" in script
    assert "id -u 2>/dev/null" in scripts.listing_script(tmp_path, "n1")
    assert f'{scripts.Marker.UID.text} 4242"' in scripts.listing_script(tmp_path, "n1", "4242")
    assert scripts.parse_expected_uid(f"{scripts.Marker.UID.text} 1001\n{scripts.Marker.PS.text} 5\n") == 1001
    assert scripts.parse_expected_uid(f"{scripts.Marker.UID.text} \n{scripts.Marker.PS.text} 5\n") is None
    # after the marker a listed process could print anything: not read
    assert scripts.parse_expected_uid(f"{scripts.Marker.PS.text} 5\n{scripts.Marker.UID.text} 0\n") is None


def test_the_remote_probe_carries_its_foreign_processes() -> None:
    result = ProbeResult("n1", SchedulerState.RUNNING, (5,), foreign=(ForeignProcess(7, "nobody"),))
    import json

    line = json.dumps(result.to_json())
    assert json.loads(line)["foreign"] == [{"pid": 7, "user": "nobody"}]
    assert scripts.parse_probe_json("n1", line) == result
    assert scripts.parse_probe_json("n1", line).foreign == result.foreign  # type: ignore[union-attr]
    assert scripts.parse_probe_json("n1", line.replace('"pid": 7', '"pid": "x"')) is None
    assert result.describe() == "running (pid 5); foreign, not counted: pid 7 (nobody)"


# --- the controller -------------------------------------------------------------------------------


def test_a_foreign_process_is_recorded_for_status_and_logged_once(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    c1 = cluster.controller("n1")
    c1.run_cycle()
    cluster.runners["n2"].foreign = (ForeignProcess(77, "nobody"),)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            cluster.clock.advance(1)
            sentence = c1.run_cycle()
            assert sentence.startswith("active (epoch 1): scheduler healthy on n1"), sentence
    assert cluster.actions == [("n1", "start")]  # nothing signalled on n2
    assert sum("pid 77 (nobody)" in r.getMessage() for r in caplog.records) == 1
    observed = {o.node: o.foreign for o in cluster.store.observations()}
    assert observed == {"n1": (), "n2": ((77, "nobody"),), "n3": ()}
    status = read_status(cluster.store, c1.config)
    assert [n.foreign for n in status.nodes] == [(), ((77, "nobody"),), ()]
    assert "foreign scheduler process on n2: pid 77 (nobody) (another user's, not counted)" in status.problems
    assert status.to_json()["nodes"][1]["foreign"] == [{"pid": 77, "user": "nobody"}]


def test_status_without_foreign_processes_has_no_such_problem(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    c1.run_cycle()
    cluster.store.record_observations(c1.holder, 1, [Observation("n1", "running", (5,), "")])
    status = read_status(cluster.store, c1.config)
    assert not [p for p in status.problems if "foreign" in p]
    assert status.to_json()["nodes"][0]["foreign"] == []


def test_a_stray_that_keeps_coming_back_does_not_keep_the_placed_node_from_being_renewed(
    cluster: Cluster,
) -> None:
    """n2 runs the scheduler and no controller of its own: only the active renews its placement."""
    cluster.runners["n2"].run()
    cluster.store.force_placement("n2", 5.0)
    c1 = cluster.controller("n1")
    c1.run_cycle()
    n3 = cluster.runners["n3"]
    for _ in range(8):  # longer than the placement's ttl
        n3.run()  # a loop restarts the stray
        expiry = cluster.store.placement_expires_at
        cluster.clock.advance(1)
        sentence = c1.run_cycle()
        assert sentence.startswith(
            f"active (epoch 1): scheduler healthy on n2 (running (pid {cluster.runners['n2'].pids[0]})); "
        )
        assert "killed stray scheduler(s) on n3" in sentence
        assert cluster.store.placement_expires_at > expiry  # renewed all along
    assert cluster.store.placement_node == "n2" and cluster.running() == ["n2"]


def test_strays_are_stopped_before_the_placed_node_is_restarted_in_the_same_cycle(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    c1.run_cycle()
    cluster.runners["n1"].die()
    cluster.runners["n3"].run()
    cluster.clock.advance(1)
    sentence = c1.run_cycle()
    assert "killed stray scheduler(s) on n3" in sentence and "restarted it in place" in sentence, sentence
    assert cluster.actions == [("n1", "start"), ("n3", "stop"), ("n1", "start")]


def test_the_placed_node_is_not_restarted_while_a_stray_may_still_run(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    c1.run_cycle()
    cluster.runners["n1"].die()
    cluster.runners["n3"].run()
    cluster.runners["n3"].stop_fails = True
    cluster.clock.advance(1)
    sentence = c1.run_cycle()
    assert sentence.endswith("the scheduler on n1 is stopped: not restarted while a stray may run"), sentence
    assert cluster.actions == [("n1", "start"), ("n3", "stop")]


def test_a_stray_on_the_active_node_itself_does_not_keep_the_placed_node_from_being_renewed(
    cluster: Cluster,
) -> None:
    cluster.runners["n2"].run()
    cluster.store.force_placement("n2", 5.0)
    c1 = cluster.controller("n1")
    c1.run_cycle()
    for _ in range(8):  # longer than the placement's ttl
        cluster.runners["n1"].run()  # a loop restarts the stray on the active's own node
        expiry = cluster.store.placement_expires_at
        cluster.clock.advance(1)
        sentence = c1.run_cycle()
        assert sentence.startswith("active: stopped a scheduler on n1"), sentence
        assert (
            f"; active (epoch 1): scheduler healthy on n2 (running (pid {cluster.runners['n2'].pids[0]}))" in sentence
        )
        assert cluster.store.placement_expires_at > expiry
    assert cluster.store.placement_node == "n2" and cluster.running() == ["n2"]
