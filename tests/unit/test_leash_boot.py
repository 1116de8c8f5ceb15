"""Records that carry their boot: the deadline file's rule, leash identity by start ticks, the listing's
boot and uptime, the session a start records (docs/design.md, section 3)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from scheduler_failover_controller import boot
from scheduler_failover_controller.leash.deadline import (
    DeadlineFile,
    Renewal,
    deadline_path,
    read_deadline_file,
    read_renewal,
    write_deadline,
)
from scheduler_failover_controller.leash.records import LeashRecord, leash_alive, own_leash_record, parse_leash_record
from scheduler_failover_controller.nodes.ssh import scripts

OTHER_BOOT = "0a1b2c3d-0000-4000-8000-000000000000"
TTL = 10.0


def put(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(text)
    path.chmod(0o600)


# --- the deadline file -----------------------------------------------------------------------------


def test_a_write_names_its_boot_and_when_it_was_written(tmp_path: Path) -> None:
    before = time.monotonic()
    assert write_deadline(tmp_path, "n1", 123.5) is True
    renewal = read_renewal(deadline_path(tmp_path, "n1"))
    assert renewal is not None
    assert renewal.deadline == 123.5 and renewal.boot == boot.boot_id()
    assert before <= renewal.written <= time.monotonic()
    assert read_deadline_file(deadline_path(tmp_path, "n1")) == 123.5  # the value comes first


def test_a_write_that_fails_says_so(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert write_deadline(blocked, "n1", 1.0) is False  # state_dir is a file: nothing can be written
    assert write_deadline(tmp_path, "n1", float("inf")) is False


def test_the_leash_takes_only_a_renewal_of_this_boot_written_after_it_started(tmp_path: Path) -> None:
    path = deadline_path(tmp_path, "n1")
    now = time.monotonic()
    channel = DeadlineFile(path, TTL, started=now)
    assert channel.take() == (None, "")  # no file yet
    put(path, Renewal(now + 5, boot.boot_id(), now - 1).text())  # written before it started
    assert channel.take() == (None, "")
    put(path, Renewal(now + 10**6, OTHER_BOOT, now + 1).text())  # another boot
    value, complaint = channel.take()
    assert value is None and "another boot" in complaint
    put(path, f"{now + 10**6!r}\n")  # the older format: no boot, no time of writing
    value, complaint = channel.take()
    assert value is None and "ignored" in complaint
    later = time.monotonic()
    put(path, Renewal(later + 3600, boot.boot_id(), later).text())  # after it started: at most ttl on
    assert channel.take() == (later + TTL, "")
    assert channel.take() == (None, "")  # unchanged: read once
    put(path, Renewal(later + 4, boot.boot_id(), time.monotonic() + 60).text())  # "written" in the future
    assert channel.take() == (None, "")


def test_a_renewal_written_just_as_the_leash_looks_is_not_lost(tmp_path: Path) -> None:
    """The leash compares the time of writing with its clock at the read, not at the top of its loop."""
    path = deadline_path(tmp_path, "n1")
    channel = DeadlineFile(path, TTL, started=time.monotonic())
    write_deadline(tmp_path, "n1", time.monotonic() + 5)
    value, _complaint = channel.take()
    assert value is not None


# --- a leash's identity ------------------------------------------------------------------------------


def test_a_leash_record_is_live_by_pid_start_ticks_and_boot() -> None:
    record = own_leash_record("tree", "tok", 0)
    assert record.pid == os.getpid() and record.boot == boot.boot_id() and record.start > 0
    assert leash_alive(record)
    assert parse_leash_record(record.to_json()) == record
    assert not leash_alive(
        LeashRecord(record.pid, record.create_time, "tree", start=record.start + 1, boot=record.boot)
    )
    assert not leash_alive(LeashRecord(record.pid, record.create_time, "tree", start=record.start, boot=OTHER_BOOT))
    assert not leash_alive(LeashRecord(record.pid, record.create_time, "tree"))  # older format: no start ticks


def test_a_step_of_the_wall_clock_does_not_make_a_live_leash_dead(monkeypatch: pytest.MonkeyPatch) -> None:
    """psutil's create times are the boot time (re-read from the kernel, which derives it from the
    wall clock) plus the start ticks: a step of the clock moves them, not the ticks."""
    record = own_leash_record("tree", "", 0)
    from psutil import _pslinux

    real = _pslinux.boot_time()
    monkeypatch.setattr(_pslinux, "boot_time", lambda: real + 3600.0)
    assert abs(psutil.Process().create_time() - record.create_time) >= 3599  # what used to be compared
    assert leash_alive(record)


def test_start_ticks_of_a_process_that_is_gone_is_none() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert boot.start_ticks(child.pid) is None
    assert boot.start_ticks(os.getpid()) == int(Path("/proc/self/stat").read_bytes().rpartition(b")")[2].split()[19])


# --- the listing over SSH ---------------------------------------------------------------------------------


def test_the_listing_prints_the_node_s_boot_and_uptime_and_starts_count_from_it(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100)"])
    try:
        out = subprocess.run(
            ["/bin/sh", "-s"], input=scripts.listing_script(tmp_path, "n1"), capture_output=True, text=True, timeout=30
        ).stdout
        listed_boot = scripts.parse_listing_boot(out)
        assert listed_boot is not None and listed_boot[0] == boot.boot_id()
        table = scripts.parse_listing(out)
        assert table is not None
        [entry] = [e for e in table if e.pid == other.pid]
        ours = (boot.start_ticks(other.pid) or 0) / boot.clock_ticks()
        assert entry.started is not None and abs(entry.started - ours) <= 2.5  # ps etime is whole seconds
    finally:
        other.kill()
        other.wait()
    assert scripts.parse_listing_boot("@@sfc-ps@@ 1\n") is None


# --- the session a start records -----------------------------------------------------------------------


def test_the_session_of_another_boot_is_never_ended_over_ssh(tmp_path: Path) -> None:
    """The shell fallback: a session file of another boot names a sid that means nothing now."""
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100)"], start_new_session=True)
    try:
        session = tmp_path / "n1.session"
        ticks = boot.start_ticks(victim.pid)
        session.write_text(f"{victim.pid} {ticks} {OTHER_BOOT} {int(time.time()) - 5}\n")
        subprocess.run(["/bin/sh", "-s"], input=scripts.end_session_script(session), text=True, timeout=30, check=True)
        assert victim.poll() is None and not session.exists()  # spared, and the record forgotten
        session.write_text(f"{victim.pid} {ticks} {boot.boot_id()} {int(time.time()) - 5}\n")
        subprocess.run(["/bin/sh", "-s"], input=scripts.end_session_script(session), text=True, timeout=30, check=True)
        assert victim.wait(5) == -9  # this boot's, started with its leader: ended
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()


def test_a_process_older_than_the_session_s_leader_is_not_ended_over_ssh(tmp_path: Path) -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100)"], start_new_session=True)
    try:
        session = tmp_path / "n1.session"
        ticks = (boot.start_ticks(victim.pid) or 0) + 100  # a leader that started after it: a recycled sid
        session.write_text(f"{victim.pid} {ticks} {boot.boot_id()} {int(time.time())}\n")
        subprocess.run(["/bin/sh", "-s"], input=scripts.end_session_script(session), text=True, timeout=30, check=True)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_the_launch_records_its_session_with_its_start_ticks_and_boot(tmp_path: Path) -> None:
    session = tmp_path / "state" / "n1.session"
    script = scripts.launch_script(
        "true", node="n1", token="t1", state_dir=tmp_path / "state", lock_dir=tmp_path / "locks", session_path=session
    )
    subprocess.run(["/bin/sh", "-s"], input=script, text=True, timeout=30, capture_output=True)
    for _ in range(100):
        if session.exists() and len(session.read_text().split()) == 4:
            break
        time.sleep(0.05)
    sid, ticks, recorded, wall = session.read_text().split()
    assert int(sid) > 1 and int(ticks) > 0 and recorded == boot.boot_id() and int(wall) > 0


def test_a_process_s_start_on_the_monotonic_clock() -> None:
    """The leash counts renewals from its exec, not from when its Python got round to reading."""
    now = time.monotonic()
    started = boot.started_monotonic(os.getpid(), now, window=10**6)
    assert started <= now
    assert abs(started - (now - (time.time() - psutil.Process().create_time()))) < 1.0
    assert boot.started_monotonic(os.getpid(), now, window=0.0) == now  # never before now - window
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert boot.started_monotonic(child.pid, now) == now  # gone: now
