"""The real leash frozen together with its scheduler past the deadline, then thawed (``docker
pause``/``unpause``, a frozen VM, a SIGSTOPped cgroup): the scheduler must end at once.

The leash, its watcher and a scheduler that ignores SIGTERM run in a v1 freezer cgroup of the
test's own, so that all of them are frozen and thawed in one write. The leash's log is a pipe the
test reads: at its first line after the thaw, the scheduler must already have been sent SIGKILL
(nothing is logged before the kill), and the best of the trials must end the scheduler within
0.1 s of the thaw.
"""

from __future__ import annotations

import contextlib
import os
import select
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler_failover_controller.leash.spec import LOCAL_ARGV
from scheduler_failover_controller.matching import find_schedulers
from tests.process.test_leash import ROOT, Lab
from tests.support.waiting import wait_until

pytestmark = pytest.mark.process

FREEZER = Path("/sys/fs/cgroup/freezer")
BOUND = 0.1  # seconds from the thaw until the scheduler is gone (issue 19's bound)
SIGKILL_BIT = 1 << (9 - 1)  # SIGKILL in /proc/PID/status's pending masks
PF_EXITING = 0x4  # in /proc/PID/stat's flags: the process is in its exit


@pytest.fixture
def freezer(lab: Lab) -> Iterator[Path]:
    """A freezer cgroup of this test's own (thawed and removed after, also when the test fails)."""
    if os.geteuid() != 0 or not (FREEZER / "cgroup.procs").exists():
        pytest.skip("needs root and the v1 freezer hierarchy at /sys/fs/cgroup/freezer")
    group = FREEZER / f"sfc-thaw-{lab.token}"
    group.mkdir()
    try:
        yield group
    finally:
        (group / "freezer.state").write_text("THAWED")
        lab.close()
        for _ in range(100):  # its members are being reaped
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.05)


class LogPipe:
    """The leash's stdout and stderr, read line by line as they come."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.text = ""
        self.buffer = b""

    def lines(self, timeout: float) -> list[str]:
        """The complete lines that arrive within ``timeout`` (at least one, else none)."""
        until = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = until - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return []
            data = os.read(self.fd, 65536)
            if not data:
                return []
            self.buffer += data
        done, _sep, self.buffer = self.buffer.rpartition(b"\n")
        lines = done.decode(errors="replace").split("\n")
        self.text += "".join(line + "\n" for line in lines)
        return lines

    def wait_for(self, words: str, timeout: float) -> None:
        until = time.monotonic() + timeout
        while words not in self.text:
            assert time.monotonic() < until, f"no {words!r} in the leash's log:\n{self.text}"
            self.lines(until - time.monotonic())


def killed(pid: int) -> bool:
    """``pid`` is gone, exiting (PF_EXITING: SIGKILL taken, not yet a zombie), a zombie, or has
    SIGKILL pending: nothing it does counts any more."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rpartition(b")")[2].split()
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            status = dict(line.split(":", 1) for line in handle if ":" in line)
    except OSError:
        return True
    if fields[0] in (b"Z", b"X") or int(fields[6]) & PF_EXITING:
        return True
    return any(int(status.get(key, "0").strip(), 16) & SIGKILL_BIT for key in ("SigPnd", "ShdPnd"))


def running(pid: int) -> bool:
    """``pid`` still runs: neither gone nor a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def watch_thaw(scheduler: int, log: LogPipe) -> tuple[float | None, bool | None]:
    """Right after the thaw: when the scheduler was seen gone, and whether it had been killed when
    the leash's first line after the thaw was read (None: not seen within 5 s)."""
    gone: float | None = None
    said: bool | None = None
    until = time.monotonic() + 5.0
    while (gone is None or said is None) and time.monotonic() < until:
        if gone is None and not running(scheduler):
            gone = time.monotonic()
        if said is None and log.lines(0.0005 if gone is None else 0.05):
            said = killed(scheduler)
    return gone, said


def trial(lab: Lab, group: Path, terminating: bool) -> tuple[float, str]:
    """One freeze and thaw; the seconds from the thaw until the scheduler was gone, and the log."""
    command = "exec " + lab.sleeper("scheduler", "stubborn")
    spec = lab.spec(command, deadline_in=4.0, stop_timeout=1.5, match=f"sleeper.py {lab.token} scheduler")
    lab.state.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    enter = 'echo $$ > "$0/cgroup.procs" && exec "$@"'  # everything it forks is in the freezer group
    proc = subprocess.Popen(
        ["/bin/sh", "-c", enter, str(group), *LOCAL_ARGV],
        env={**os.environ, "PYTHONPATH": str(ROOT), **spec.environment()},
        stdin=subprocess.DEVNULL,
        stdout=write_end,
        stderr=write_end,
        start_new_session=True,
    )
    os.close(write_end)
    lab.procs.append(proc)
    log = LogPipe(read_end)
    try:
        wait_until(lambda: find_schedulers(spec.match), 10, "the scheduler")
        scheduler = find_schedulers(spec.match)[0].pid
        if terminating:  # frozen between its SIGTERM and its SIGKILL
            log.wait_for("SIGTERM to", spec.deadline - time.monotonic() + 1.0)
        else:  # frozen while it runs, before the stop
            assert time.monotonic() < spec.deadline - spec.stop_timeout - 0.5, "too slow to start: no time to freeze"
        (group / "freezer.state").write_text("FROZEN")
        wait_until(lambda: (group / "freezer.state").read_text().strip() == "FROZEN", 5, "the freeze", 0.01)
        log.lines(0.05)  # what it said before the freeze
        before = log.text
        wait_until(lambda: time.monotonic() >= spec.deadline + 0.4, 10, "the deadline to pass", 0.02)
        assert running(scheduler), log.text
        (group / "freezer.state").write_text("THAWED")
        thawed = time.monotonic()
        gone, said = watch_thaw(scheduler, log)
        after = log.text[len(before) :]
        assert said is not None, f"the leash said nothing after the thaw:\n{log.text}"
        assert said, f"the leash spoke after the thaw before it killed the scheduler:\n{after}"
        assert after.splitlines()[0].endswith("(the leash was frozen or starved)"), log.text
        assert "SIGTERM" not in after, log.text
        assert gone is not None, f"the scheduler runs on 5s after the thaw:\n{log.text}"
        assert proc.wait(10) == 0, log.text
        return gone - thawed, log.text
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        with contextlib.suppress(OSError):
            os.close(read_end)


@pytest.mark.parametrize("terminating", [False, True], ids=["running", "terminating"])
def test_a_frozen_leash_kills_its_scheduler_within_0_1s_of_the_thaw(lab: Lab, freezer: Path, terminating: bool) -> None:
    times = [trial(lab, freezer, terminating)[0] for _ in range(3)]
    print(f"thaw to gone: {', '.join(f'{t * 1000:.1f}' for t in times)} ms; load {os.getloadavg()[0]:.2f}")
    assert min(times) < BOUND, (times, statistics.median(times))
