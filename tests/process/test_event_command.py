"""``event_command`` driven by real controllers: a script records its environment for each event.

A scheduler kill gives a ``restart`` event with the right variables, the CLI's ``pause`` and
``resume`` and the controller's ``stop`` run it too, and none of the controller's secrets (the
metastore password, a webhook token, the SMTP password, its own environment's) reach it. A command
that hangs delays no restart, is killed with its whole process group at its timeout, and none is
left behind when the controller exits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from tests.process.harness import ROOT, Cluster
from tests.support.waiting import wait_for

RECORDER = ROOT / "tests" / "support" / "record_env.py"
TOKEN = "Hook-Token-5521"
SECRETS = {
    "AIRFLOW__SCHEDULER_FAILOVER__ALERT_WEBHOOK_URL": f"http://127.0.0.1:9/hooks/{TOKEN}",
    "AIRFLOW__SMTP__SMTP_PASSWORD": "Smtp-Pw-7730",
    "AWS_SECRET_ACCESS_KEY": "Aws-Key-9164",
}
EVENT_VARS = {
    "SFC_EVENT",
    "SFC_NODE",
    "SFC_FROM_NODE",
    "SFC_EPOCH",
    "SFC_CONTROLLER",
    "SFC_MESSAGE",
    "SFC_TIME",
    "SFC_SERVICE",
}
PASSED = {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"}


@pytest.fixture(params=["sqlite", "mariadb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The metastore: embedded SQLite, or real MariaDB (its URL holds a password)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metastore.db'}"
    return str(request.getfixturevalue("mariadb_url"))


def _records(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _kinds(path: Path) -> list[str]:
    return [r["SFC_EVENT"] for r in _records(path)]


def _running(cluster: Cluster) -> list[int]:
    return [s.pid for s in cluster.observer.current()]


def test_events_reach_the_command_with_their_variables_and_no_secret(
    make_cluster: Callable[..., Cluster], url: str, tmp_path: Path
) -> None:
    cluster = make_cluster(url, 1, ttl=6.0)  # metastore_timeout 1.25s: a loaded MariaDB still answers the CLI
    out = tmp_path / "events.jsonl"
    cluster.config.write_text(
        cluster.config.read_text() + f"event_command = {sys.executable} {RECORDER} {out}\nevent_command_timeout = 10\n"
    )
    cluster.extra_env.update(SECRETS)
    cluster.observer.start()
    cluster.start("n1")
    wait_for(lambda: len(_running(cluster)) == 1, 60, "a scheduler running")
    wait_for(lambda: "start" in _kinds(out), 30, "the start event's command")
    killed_at = time.time()
    os.kill(_running(cluster)[0], signal.SIGKILL)
    wait_for(lambda: "restart" in _kinds(out), 30, "the restart event's command")
    for command in ("pause", "resume"):
        done = cluster.cli(command)
        assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
    cluster.signal("n1", signal.SIGTERM)
    assert cluster.procs["n1"].wait(30) == 0
    records = _records(out)
    kinds = [r["SFC_EVENT"] for r in records]
    wanted = ["elected", "start", "restart", "pause", "resume", "stop"]
    assert [k for k in kinds if k in wanted] == wanted, kinds
    by_kind = {r["SFC_EVENT"]: r for r in records}
    restart = by_kind["restart"]
    assert (restart["SFC_NODE"], restart["SFC_FROM_NODE"], restart["SFC_EPOCH"], restart["SFC_CONTROLLER"]) == (
        "n1",
        "",
        "1",
        "n1",
    )
    assert restart["SFC_MESSAGE"].startswith("restarted the scheduler on n1"), restart["SFC_MESSAGE"]
    at = datetime.fromisoformat(restart["SFC_TIME"]).timestamp()
    assert killed_at - 1 <= at <= time.time(), (killed_at, restart["SFC_TIME"])
    assert (by_kind["pause"]["SFC_CONTROLLER"], by_kind["pause"]["SFC_EPOCH"]) == ("n1", "0")  # the CLI's
    assert by_kind["stop"]["SFC_NODE"] == "n1"
    secrets = [TOKEN, *SECRETS.values(), *([url.split(":")[2].split("@")[0]] if "@" in url else [])]
    for record in records:
        assert set(record) - PASSED <= EVENT_VARS | {"PWD", "SHLVL", "_"}, sorted(record)  # the shell's own
        assert set(record) >= EVENT_VARS, sorted(record)
        text = json.dumps(record)
        assert not [s for s in secrets if s in text], record


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _hanging(token: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if token in (proc.info["cmdline"] or []) and _alive(proc):
            found.append(proc)
    return found


def _hang_on(cluster: Cluster, tmp_path: Path, kinds: str, timeout: float) -> str:
    """Make event_command hang (two processes, one in the background) for the events ``kinds``
    names (``elected|stop``); the token on their command lines is returned."""
    token = f"hang-{cluster.token}"
    hang = f"{sys.executable} -c 'import time; time.sleep(600)' {token}"
    script = tmp_path / "hook.sh"
    script.write_text(f'case "$SFC_EVENT" in\n  {kinds}) {hang} & {hang} ;;\nesac\n')
    cluster.config.write_text(
        cluster.config.read_text() + f"event_command = /bin/sh {script}\nevent_command_timeout = {timeout:g}\n"
    )
    return token


def test_a_hanging_command_delays_no_start_and_no_restart(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    """The election's command hangs for its whole minute: the first start and the restart after a
    kill come long before (a command run in the cycle would hold the cycle for that minute)."""
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    token = _hang_on(cluster, tmp_path, "elected", 60)
    cluster.observer.start()
    try:
        began = time.monotonic()
        cluster.start("n1")
        wait_for(lambda: len(_running(cluster)) == 1, 20, "a scheduler running, long before the command's timeout")
        wait_for(lambda: len(_hanging(token)) == 2, 10, "the election's command hanging")
        old = _running(cluster)[0]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: _running(cluster) and _running(cluster) != [old], 20, "the scheduler restarted")
        assert len(_hanging(token)) == 2 and time.monotonic() - began < 60, "the command stopped hanging too early"
        for proc in _hanging(token):
            proc.kill()
        failed = "event_command for the elected event failed (exit 137)"  # sh: its command killed by SIGKILL
        wait_for(lambda: failed in cluster.log("n1"), 10, "the command's end as one line")
        cluster.signal("n1", signal.SIGTERM)
        assert cluster.procs["n1"].wait(30) == 0
        log = cluster.log("n1")
        assert "restarted it in place" in log and "Traceback" not in log, log[-3000:]
    finally:
        for proc in _hanging(token):
            proc.kill()


def test_a_hanging_command_is_killed_whole_at_its_timeout_and_at_exit(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    token = _hang_on(cluster, tmp_path, "elected|stop", 3)
    cluster.observer.start()
    try:
        cluster.start("n1")
        wait_for(lambda: len(_hanging(token)) == 2, 20, "the election's command hanging (two processes)")
        first = _hanging(token)
        timed_out = "event_command for the elected event timed out after 3s; its process group was killed"
        wait_for(lambda: timed_out in cluster.log("n1"), 15, "the timeout's one line")
        wait_for(lambda: not any(_alive(p) for p in first), 5, "both processes of the command killed")
        wait_for(lambda: len(_running(cluster)) == 1, 20, "a scheduler running")
        cluster.signal("n1", signal.SIGTERM)  # the stop event's command hangs too
        assert cluster.procs["n1"].wait(30) == 0
        assert not _hanging(token), "a command outlived the controller"
        log = cluster.log("n1")
        assert log.count(timed_out) == 1 and "Traceback" not in log, log[-3000:]
        assert "exiting: ended the running event_command and dropped 0 queued event(s)" in log, log[-3000:]
    finally:
        for proc in _hanging(token):
            proc.kill()
