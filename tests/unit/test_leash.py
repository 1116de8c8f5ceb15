"""The leash's pure parts: the deadline file, its spec, registrations and the leashed verdicts.

Real processes: tests/process/test_leash.py and tests/ssh/test_ssh_leash.py.
"""

from __future__ import annotations

import logging
import math
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from scheduler_failover_controller.leash.deadline import deadline_path, read_deadline_file, write_deadline
from scheduler_failover_controller.leash.records import LeashRecord, parse_leash_record
from scheduler_failover_controller.leash.spec import (
    ENV_COMMAND,
    ENV_DEADLINE,
    ENV_NODE,
    ENV_STATE_DIR,
    LOCAL_ARGV,
    SERVE_BANNER,
    Spec,
    child_environment,
)
from scheduler_failover_controller.nodes.local import launch_command
from scheduler_failover_controller.nodes.ssh.ps_table import ProcessEntry, listed_leashes, probe_table, table_leashed
from scheduler_failover_controller.probe import MATCH_ENV, leashed_roots
from scheduler_failover_controller.probe_result import ProbeResult, SchedulerState

ROOT = Path(__file__).resolve().parents[2]


def spec(tmp_path: Path, **overrides: object) -> Spec:
    values: dict[str, object] = {
        "node": "master-1",
        "state_dir": tmp_path,
        "command": "exec airflow scheduler",
        "stop_command": "systemctl stop airflow-scheduler",
        "stop_timeout": 2.0,
        "ttl": 30.0,
        "deadline": 1234.5,
        "match": "airflow scheduler",
        "linger": 60.0,
        "token": "abc",
    }
    values.update(overrides)
    return Spec(**values)  # type: ignore[arg-type]


# --- the deadline file ---------------------------------------------------------------------------


def test_deadline_path_is_per_node_in_state_dir(tmp_path: Path) -> None:
    assert deadline_path(tmp_path, "master-1") == tmp_path / "leash" / "master-1.deadline"


def test_write_deadline_is_atomic_private_and_readable_back(tmp_path: Path) -> None:
    write_deadline(tmp_path, "n1", 100.25)
    write_deadline(tmp_path, "n1", 101.5)
    path = deadline_path(tmp_path, "n1")
    assert read_deadline_file(path) == 101.5
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert sorted(os.listdir(path.parent)) == ["n1.deadline"]  # no temp file left


def test_write_deadline_tightens_a_wide_directory(tmp_path: Path) -> None:
    (tmp_path / "leash").mkdir(mode=0o777)
    os.chmod(tmp_path / "leash", 0o777)
    write_deadline(tmp_path, "n1", 1.0)
    assert (tmp_path / "leash").stat().st_mode & 0o777 == 0o700


def test_write_deadline_never_raises_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where state_dir should be")
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            write_deadline(blocked, "n1", 1.0)
        write_deadline(blocked, "n1", math.inf)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot renew the leash" in warnings[0].getMessage()


def test_unreadable_or_foreign_deadline_files_are_ignored(tmp_path: Path) -> None:
    path = deadline_path(tmp_path, "n1")
    write_deadline(tmp_path, "n1", 5.0)
    for text in ("", "soon\n", "nan\n", "inf\n", "1e400\n"):
        path.write_text(text)
        assert read_deadline_file(path) is None, text
    path.unlink()
    assert read_deadline_file(path) is None
    target = tmp_path / "elsewhere"
    target.write_text("5.0\n")
    path.symlink_to(target)
    assert read_deadline_file(path) is None  # not followed
    path.unlink()
    if os.geteuid() == 0:
        write_deadline(tmp_path, "n1", 5.0)
        os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)
        assert read_deadline_file(path) is None


# --- the spec -----------------------------------------------------------------------------------


def test_spec_travels_in_the_environment(tmp_path: Path) -> None:
    original = spec(tmp_path)
    env = original.environment()
    assert env[MATCH_ENV] == "airflow scheduler" and env[ENV_NODE] == "master-1"
    assert Spec.from_env(env) == original


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({ENV_NODE: ""}, ENV_NODE),
        ({ENV_COMMAND: ""}, ENV_COMMAND),
        ({ENV_DEADLINE: "later"}, ENV_DEADLINE),
        ({ENV_DEADLINE: "nan"}, ENV_DEADLINE),
        ({"SFC_LEASH_TTL": "0"}, "SFC_LEASH_TTL"),
        ({"SFC_LEASH_STOP_TIMEOUT": "-1"}, "SFC_LEASH_STOP_TIMEOUT"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_variable(tmp_path: Path, change: dict[str, str], message: str) -> None:
    env = {**spec(tmp_path).environment(), **change}
    with pytest.raises(ValueError, match=message):
        Spec.from_env(env)


def test_the_scheduler_does_not_inherit_the_spec(tmp_path: Path) -> None:
    env = {"PATH": "/bin", "HOME": "/root", **spec(tmp_path).environment(), "SFC_STATE_DIR": "/x"}
    assert child_environment(env) == {"PATH": "/bin", "HOME": "/root"}


def test_a_leash_without_its_spec_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFC_")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(list(LOCAL_ARGV), env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "SFC_LEASH_NODE is not set" in result.stderr


# --- the launch line ----------------------------------------------------------------------------


def test_a_leashed_launch_quotes_every_value_and_shows_none_without_exports(tmp_path: Path) -> None:
    from scheduler_failover_controller.config import load_config

    cfg = tmp_path / "sfc.cfg"
    cfg.write_text(
        "[scheduler_failover]\nscheduler_nodes_in_cluster = n1\ncurrent_host = n1\n"
        f"state_dir = {tmp_path / 'state'}\nairflow_scheduler_start_command = airflow scheduler --secret s3cr3t\n"
    )
    config = load_config(str(cfg), env={})
    bare = launch_command(config, "n1", ["/venv/bin/sfc", "leash"])
    assert "s3cr3t" not in bare and "exec /venv/bin/sfc leash" in bare
    evil = {"SFC_LEASH_COMMAND": "x'; touch /tmp/pwned; '", "SFC_LEASH_NODE": "$(reboot)"}
    line = launch_command(config, "n1", ["/venv/bin/sfc", "leash"], evil)
    (tmp_path / "state").mkdir()
    log = tmp_path / "state" / "scheduler.log"
    out = subprocess.run(
        ["/bin/sh", "-c", line.replace("exec /venv/bin/sfc leash", 'echo "$SFC_LEASH_COMMAND|$SFC_LEASH_NODE"')],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode == 0
    until = time.monotonic() + 5  # the launch is in the background
    while not (log.exists() and log.read_text()) and time.monotonic() < until:
        time.sleep(0.02)
    assert log.read_text() == "x'; touch /tmp/pwned; '|$(reboot)\n"
    with pytest.raises(ValueError):
        launch_command(config, "n1", ["sfc"], {"BAD NAME": "x"})


# --- serve -----------------------------------------------------------------------------------------


def test_serve_answers_clock_and_set(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), ENV_NODE: "n1", ENV_STATE_DIR: str(tmp_path)}
    before = time.monotonic()
    result = subprocess.run(
        [*LOCAL_ARGV, "--serve"],
        input="clock\nset 42.5\nset soon\nwhat\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines = result.stdout.splitlines()
    assert lines[0] == SERVE_BANNER
    assert lines[1].startswith("clock ") and before <= float(lines[1].split()[1]) <= time.monotonic()
    assert lines[2:] == ["ok", "error not a number", "error unknown request"]
    assert read_deadline_file(deadline_path(tmp_path, "n1")) == 42.5


# --- registrations and the leashed verdicts ------------------------------------------------------


def test_registration_records_round_trip_and_reject_junk() -> None:
    record = LeashRecord(10, 1700000000.5, "watch", "tok", 11, start=4242, boot="b-1", hz=250)
    assert parse_leash_record(record.to_json()) == record
    assert record.started == 4242 / 250
    for junk in ("", "{}", '{"pid": 0, "create_time": 1, "mode": "tree"}', '{"pid": 5, "create_time": 1, "mode": "x"}'):
        assert parse_leash_record(junk) is None


def entry(pid: int, ppid: int, args: str, created: float = 100.0, status: str = "sleeping") -> ProcessEntry:
    # ``created``: its start in seconds since boot, as a listing with the node's uptime gives it
    return ProcessEntry(
        pid, ppid, tuple(args.split()), status, created, args, os.geteuid(), os.geteuid(), started=created
    )


BOOT = "b0000000-0000-4000-8000-000000000001"


def listed(pid: int, started: float, mode: str = "tree", token: str = "", watcher: int = 0) -> LeashRecord:
    """A registration of a leash that started ``started`` seconds after boot ``BOOT``."""
    return LeashRecord(pid, 1.7e9 + started, mode, token, watcher, start=int(started * 100), boot=BOOT, hz=100)


LEASH_ARGS = "/venv/bin/python -m scheduler_failover_controller.leash"


def test_a_listed_scheduler_below_a_registered_leash_is_leashed() -> None:
    table = [
        entry(1, 0, "/sbin/init"),
        entry(10, 1, LEASH_ARGS, created=100.4),
        entry(11, 10, LEASH_ARGS, created=100.5),  # its watcher
        entry(12, 10, "/venv/bin/airflow scheduler"),
        entry(13, 12, "airflow scheduler -- DagFileProcessorManager"),
        entry(20, 1, "/venv/bin/airflow scheduler"),  # a stray, not below it
    ]
    record = listed(10, 100.0, "tree", "t", 11)
    assert listed_leashes(table, [record], BOOT) == [record]
    assert listed_leashes(table, [listed(10, 90.0)], BOOT) == []  # a recycled pid
    assert listed_leashes([entry(10, 1, "sleep 100")], [record], BOOT) == []  # not a leash
    assert listed_leashes(table, [record], "another boot") == []  # a record of another boot
    assert listed_leashes(table, [LeashRecord(10, 100.0, "tree", boot=BOOT)], BOOT) == []  # no start: older format
    unlisted = [ProcessEntry(e.pid, e.ppid, e.argv, e.status, e.create_time, e.args) for e in table]
    assert listed_leashes(unlisted, [record], BOOT) == []  # no uptime listed: nothing to check against
    roots = [e for e in table if e.pid in (12,)]
    assert table_leashed(table, roots, [record])
    assert not table_leashed(table, [table[5]], [record])
    assert not table_leashed(table, [], [record])
    result = probe_table("n", table[:5], "airflow scheduler", leashes=[record], boot=BOOT)
    assert result == ProbeResult("n", SchedulerState.RUNNING, (12,), leashed=True)
    assert probe_table("n", table[:5], "airflow scheduler") == ProbeResult("n", SchedulerState.RUNNING, (12,))
    # one unleashed root among several: not leashed
    assert not probe_table("n", table, "airflow scheduler", leashes=[record], boot=BOOT).leashed


def test_a_watching_leash_covers_every_root() -> None:
    table = [entry(10, 1, LEASH_ARGS), entry(30, 1, "/venv/bin/airflow scheduler")]
    record = listed(10, 100.0, "watch")
    assert probe_table("n", table, "airflow scheduler", leashes=[record], boot=BOOT).leashed


def test_the_leash_itself_is_never_a_listed_scheduler() -> None:
    table = [entry(10, 1, LEASH_ARGS), entry(11, 10, LEASH_ARGS)]
    record = listed(10, 100.0, "tree", watcher=11)
    assert probe_table("n", table, "-m scheduler_failover_controller.leash", leashes=[record], boot=BOOT).state is (
        SchedulerState.STOPPED
    )


def test_leashed_roots_needs_a_leash_among_the_ancestors() -> None:
    me = psutil.Process()
    parent = me.parent()
    assert parent is not None
    assert leashed_roots([me], [LeashRecord(parent.pid, 0.0, "tree")])
    assert not leashed_roots([me], [LeashRecord(me.pid, 0.0, "tree")])  # itself is no ancestor
    assert leashed_roots([me], [LeashRecord(1234567, 0.0, "watch")])
    assert not leashed_roots([], [LeashRecord(1234567, 0.0, "watch")])


def test_probe_json_carries_leashed() -> None:
    assert ProbeResult("n", SchedulerState.RUNNING, (1,), leashed=True).to_json()["leashed"] is True
    assert sys.executable == LOCAL_ARGV[0]
