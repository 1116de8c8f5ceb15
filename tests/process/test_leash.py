"""The leash with real processes: the deadline, renewals, whole trees, a killed leash or watcher,
the start styles (exec, setsid, daemonizing, handed to "systemd") and forged deadline files.

Each test runs ``python -m scheduler_failover_controller.leash`` as the runners do (its spec in the
environment), with stand-in schedulers whose arguments carry the test's token. Everything a test
started is killed by pid at its end (found by that token), also when it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from scheduler_failover_controller.leash.deadline import deadline_path, write_deadline
from scheduler_failover_controller.leash.records import read_leash_records
from scheduler_failover_controller.leash.spec import LOCAL_ARGV, Spec
from scheduler_failover_controller.matching import find_schedulers
from scheduler_failover_controller.nodes.local import launch_command, leash_spec
from scheduler_failover_controller.probe import probe_local
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "support" / "fake_scheduler.py"
PY = sys.executable
SLEEPER = """
import signal, sys, time
if "stubborn" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(100000)
"""
FAKE_SYSTEMD = """
import subprocess, sys
fifo, python, fake, token = sys.argv[1:5]
unit = None
while True:
    with open(fifo) as requests:
        for line in requests:
            if line.strip() == "start" and (unit is None or unit.poll() is not None):
                unit = subprocess.Popen([python, fake, "--cluster", token, "--node", "n1"], start_new_session=True)
            elif line.strip() == "stop" and unit is not None:
                unit.terminate()
                unit.wait()
"""
STAMP = "import sys, time; open(sys.argv[1], 'w').write(repr(time.monotonic()))"


@dataclass
class Lab:
    """A test's token, temp dir and the processes it started."""

    tmp: Path
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cgroup: Path | None = None  # a cgroup v2 directory the leashes start in (default: the test's own)

    @property
    def state(self) -> Path:
        return self.tmp / "state"

    @property
    def match(self) -> str:
        return f"fake_scheduler.py --cluster {self.token} --node n1"

    @property
    def scheduler(self) -> str:
        return f"exec {PY} {FAKE} --cluster {self.token} --node n1"

    def sleeper(self, role: str, *flags: str) -> str:
        script = self.tmp / "sleeper.py"
        script.write_text(SLEEPER)
        return " ".join([PY, str(script), self.token, role, *flags])

    def spec(self, command: str, deadline_in: float, **overrides: object) -> Spec:
        values: dict[str, object] = {
            "node": "n1",
            "state_dir": self.state,
            "command": command,
            "stop_command": "",
            "stop_timeout": 1.0,
            "ttl": 10.0,
            "deadline": time.monotonic() + deadline_in,
            "match": self.match,
            "linger": 3.0,
            "token": self.token,
        }
        values.update(overrides)
        return Spec(**values)  # type: ignore[arg-type]

    def leash(self, spec: Spec) -> subprocess.Popen[bytes]:
        """A leash started as the local runner starts one (its spec in the environment)."""
        self.state.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), **spec.environment()}
        log = (self.tmp / "leash.log").open("ab")
        procs_file = None if self.cgroup is None else str(self.cgroup / "cgroup.procs")

        def enter() -> None:  # in the child, before exec: "0" moves the writer
            if procs_file is not None:
                with open(procs_file, "w", encoding="ascii") as handle:
                    handle.write("0")

        proc = subprocess.Popen(
            list(LOCAL_ARGV),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=enter if procs_file is not None else None,
        )
        self.procs.append(proc)
        return proc

    def spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def marked(self) -> list[psutil.Process]:
        """Live processes whose arguments carry the token (schedulers, sleepers), and their children."""
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline", "status"]):
            with contextlib.suppress(psutil.Error):
                cmdline = proc.info["cmdline"] or []
                if proc.info["status"] != psutil.STATUS_ZOMBIE and any(self.token in a for a in cmdline):
                    found[proc.pid] = proc
                    for child in proc.children(recursive=True):
                        if child.status() != psutil.STATUS_ZOMBIE:
                            found.setdefault(child.pid, child)
        return list(found.values())

    def schedulers(self) -> list[psutil.Process]:
        return find_schedulers(self.match)

    def log(self) -> str:
        path = self.tmp / "leash.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def watcher_of(self, leash: subprocess.Popen[bytes]) -> int:
        [record] = [r for r in read_leash_records(self.state, "n1") if r.pid == leash.pid]
        return record.watcher

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for left in self.marked():
            with contextlib.suppress(psutil.Error):
                left.kill()


def gone(procs: list[psutil.Process]) -> bool:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                return False
    return True


def tree_command(lab: Lab) -> str:
    """A scheduler with children that escape a plain process tree: setsid, double forks, and one
    that ignores SIGTERM (only the SIGKILL at the deadline ends it)."""
    return "\n".join(
        [
            f"setsid {lab.sleeper('setsid', 'stubborn')} &",
            f"( ( {lab.sleeper('double-forked')} & ) & )",
            f"( setsid {lab.sleeper('double-forked-setsid')} & )",
            lab.scheduler,
        ]
    )


# --- the deadline -----------------------------------------------------------------------------------


def test_an_unrenewed_deadline_stops_the_whole_tree_by_the_deadline(lab: Lab) -> None:
    spec = lab.spec(tree_command(lab), deadline_in=5.0, stop_timeout=1.0)
    lab.leash(spec)
    wait_until(lambda: len(lab.marked()) >= 5, 10, "the scheduler, its child and three escapees")
    procs = lab.marked()
    assert probe_local("n1", lab.match, lab.state).leashed
    # Nothing is stopped before deadline - stop_timeout ...
    time.sleep(max(0.0, spec.deadline - spec.stop_timeout - 0.3 - time.monotonic()))
    assert all(p.is_running() for p in procs)
    # ... and nothing runs once the deadline is reached (the stubborn one gets SIGKILL then).
    done = wait_until(lambda: gone(procs), 5, "the whole tree to go", interval=0.02)
    assert done <= spec.deadline + 0.5, (done - spec.deadline, lab.log())
    assert "SIGTERM to" in lab.log() and "deadline reached: SIGKILL" in lab.log()
    assert lab.procs[0].wait(5) == 0  # the leash left ...
    assert not read_leash_records(lab.state, "n1")  # ... and unregistered first (CI checked before it exited)


def test_a_scheduler_that_obeys_sigterm_is_gone_before_the_deadline(lab: Lab) -> None:
    spec = lab.spec(lab.scheduler, deadline_in=4.0, stop_timeout=1.0)
    lab.leash(spec)
    wait_until(lambda: lab.schedulers(), 10, "the scheduler")
    procs = lab.marked()
    done = wait_until(lambda: gone(procs), 5, "the scheduler to go", interval=0.02)
    assert spec.deadline - spec.stop_timeout - 0.1 <= done <= spec.deadline, lab.log()


def test_renewals_keep_it_running_then_it_stops_at_the_last_deadline(lab: Lab) -> None:
    spec = lab.spec(lab.scheduler, deadline_in=3.0, stop_timeout=0.5)
    lab.leash(spec)
    wait_until(lambda: lab.schedulers(), 10, "the scheduler")
    [root] = lab.schedulers()
    last = spec.deadline
    until = time.monotonic() + 4.0
    while time.monotonic() < until:  # twice past the first deadline
        last = time.monotonic() + 2.0
        write_deadline(lab.state, "n1", last)
        time.sleep(0.3)
    assert root.is_running()
    assert time.monotonic() > spec.deadline + 1.0
    done = wait_until(lambda: gone([root]), 5, "the scheduler to go", interval=0.02)
    assert last - 0.5 - 0.1 <= done <= last, lab.log()
    info = deadline_path(lab.state, "n1").stat()
    assert oct(info.st_mode & 0o777) == "0o600"
    assert oct(deadline_path(lab.state, "n1").parent.stat().st_mode & 0o777) == "0o700"


def test_a_deadline_file_of_another_user_is_ignored(lab: Lab) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to nobody needs root")
    spec = lab.spec(lab.scheduler, deadline_in=4.0)
    path = deadline_path(lab.state, "n1")
    write_deadline(lab.state, "n1", time.monotonic() + 60)
    os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)
    lab.leash(spec)
    wait_until(lambda: lab.schedulers(), 10, "the scheduler")
    procs = lab.marked()
    done = wait_until(lambda: gone(procs), 6, "the scheduler to go at its own deadline", interval=0.02)
    assert done <= spec.deadline, lab.log()
    assert "ignored" in lab.log()


def test_a_far_deadline_is_clamped_to_lease_ttl(lab: Lab) -> None:
    spec = lab.spec(lab.scheduler, deadline_in=2.5, stop_timeout=0.5, ttl=4.0)
    lab.leash(spec)
    wait_until(lambda: lab.schedulers(), 10, "the scheduler")
    written = time.monotonic()
    write_deadline(lab.state, "n1", written + 3600)  # at most now + lease_ttl, once, when first read
    procs = lab.marked()
    done = wait_until(lambda: gone(procs), 8, "the scheduler to go", interval=0.02)
    assert written + 3.0 < done <= written + 4.0 + 0.3, lab.log()  # extended, but only to lease_ttl


def test_a_deadline_too_close_to_start_starts_nothing(lab: Lab) -> None:
    leash = lab.leash(lab.spec(lab.scheduler, deadline_in=0.5, stop_timeout=1.0))
    assert leash.wait(10) == 1
    assert not lab.schedulers()
    assert "not starting the scheduler" in lab.log()


# --- the tree ----------------------------------------------------------------------------------------


def test_when_the_scheduler_dies_the_leash_ends_its_leftovers_and_leaves(lab: Lab) -> None:
    command = f"{lab.sleeper('worker')} &\nexec {PY} {FAKE} --cluster {lab.token} --node n1 --no-child"
    leash = lab.leash(lab.spec(command, deadline_in=30))
    wait_until(lambda: lab.schedulers() and len(lab.marked()) == 2, 10, "the scheduler and its worker")
    [root] = lab.schedulers()
    worker = [p for p in lab.marked() if p.pid != root.pid]
    root.kill()
    wait_until(lambda: gone(worker), 5, "the worker to be ended")
    assert leash.wait(5) == 0
    assert not read_leash_records(lab.state, "n1")


def test_a_daemonizing_command_stays_leashed(lab: Lab) -> None:
    """``airflow scheduler -D``: the process forks, the parent exits; the daemon stays below the leash."""
    daemon = "import os, sys, time\nif os.fork():\n    sys.exit(0)\nos.setsid()\ntime.sleep(100000)\n"
    script = lab.tmp / "daemonize" / "fake_scheduler.py"  # the program the match names
    script.parent.mkdir()
    script.write_text(daemon)
    spec = lab.spec(f"{PY} {script} --cluster {lab.token} --node n1", deadline_in=6.0)
    leash = lab.leash(spec)
    wait_until(lambda: lab.schedulers(), 10, "the daemon")
    time.sleep(1.5)  # the start command exited long ago
    [daemon_proc] = lab.schedulers()
    assert daemon_proc.ppid() == leash.pid  # re-parented to the leash (a subreaper)
    assert probe_local("n1", lab.match, lab.state).leashed
    done = wait_until(lambda: gone([daemon_proc]), 5, "the daemon to go", interval=0.02)
    assert done <= spec.deadline
    assert "runs on below the leash" in lab.log()


@pytest.mark.parametrize("style", ["exec", "plain", "setsid", "setsid --fork", "nohup &"])
def test_every_start_style_runs_leashed_and_stops_at_the_deadline(lab: Lab, style: str) -> None:
    """The styles the README documents: ``exec airflow scheduler``, a custom command, ``setsid``
    (which forks when it leads its process group), a command that backgrounds the scheduler."""
    scheduler = f"{PY} {FAKE} --cluster {lab.token} --node n1"
    command = {
        "exec": f"exec {scheduler}",
        "plain": f"cd / && {scheduler}",
        "setsid": f"setsid {scheduler}",
        "setsid --fork": f"setsid --fork {scheduler}",
        "nohup &": f"nohup {scheduler} >/dev/null 2>&1 &",
    }[style]
    spec = lab.spec(command, deadline_in=5.0)
    leash = lab.leash(spec)
    wait_until(lambda: lab.schedulers(), 10, "the scheduler")
    time.sleep(1.5)  # past the leash's settling after a start command that returned at once
    [root] = lab.schedulers()
    assert leash.pid in {p.pid for p in root.parents()}
    assert probe_local("n1", lab.match, lab.state).leashed
    procs = [root, *root.children(recursive=True)]
    done = wait_until(lambda: gone(procs), 8, "the scheduler to go", interval=0.02)
    assert done <= spec.deadline, lab.log()
    assert leash.wait(5) == 0


def test_the_leash_is_never_a_scheduler_and_its_arguments_carry_nothing(lab: Lab) -> None:
    spec = lab.spec(lab.scheduler, deadline_in=30)
    leash = lab.leash(spec)
    wait_until(lambda: lab.schedulers(), 10, "the scheduler")
    argv = psutil.Process(leash.pid).cmdline()
    assert argv == list(LOCAL_ARGV)
    assert lab.token not in " ".join(argv) and "n1" not in argv
    [root] = lab.schedulers()
    assert "SFC_LEASH_COMMAND" not in root.environ()  # the scheduler does not inherit its spec
    # a match that the leash's own arguments would satisfy still finds no scheduler in it
    assert probe_local("n1", "-m scheduler_failover_controller.leash", lab.state).pids == ()


# --- a killed leash, a killed watcher -----------------------------------------------------------------


def test_sigkill_of_the_leash_takes_the_scheduler_and_its_children_with_it(lab: Lab) -> None:
    leash = lab.leash(lab.spec(tree_command(lab), deadline_in=60))
    wait_until(lambda: len(lab.marked()) >= 5, 10, "the tree")
    time.sleep(0.8)  # the watcher has been told the whole tree (the leash looks every 0.5s)
    procs = lab.marked()
    leash.kill()
    began = time.monotonic()
    done = wait_until(lambda: gone(procs), 5, "the tree to go with its leash", interval=0.02)
    assert done - began < 2.0
    # The watcher removes the registration once the tree is gone: just after, not before.
    wait_until(lambda: not read_leash_records(lab.state, "n1"), 5, "the watcher to remove the leash's registration")


def test_a_killed_watcher_is_replaced(lab: Lab) -> None:
    leash = lab.leash(lab.spec(tree_command(lab), deadline_in=60))
    wait_until(lambda: len(lab.marked()) >= 5 and lab.watcher_of(leash), 10, "the tree and the watcher")
    first = lab.watcher_of(leash)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: lab.watcher_of(leash) not in (0, first), 5, "a new watcher")
    second = lab.watcher_of(leash)
    # A new watcher names itself once it runs: a look right after its fork sees the leash's name.
    wait_until(lambda: psutil.Process(second).name() == "sfc-leash-w", 5, "the new watcher to name itself")
    assert lab.schedulers()  # the scheduler was not touched
    time.sleep(0.8)
    procs = lab.marked()
    leash.kill()  # the new watcher does its job
    wait_until(lambda: gone(procs), 5, "the tree to go with its leash")


def test_sigterm_to_the_leash_stops_the_scheduler_gracefully(lab: Lab) -> None:
    leash = lab.leash(lab.spec(lab.scheduler, deadline_in=60, stop_timeout=2.0))
    wait_until(lambda: lab.schedulers(), 10, "the scheduler")
    procs = lab.marked()
    leash.terminate()
    wait_until(lambda: gone(procs), 3, "the scheduler to go")
    assert leash.wait(5) == 0
    assert "SIGTERM to" in lab.log()


# --- handed to "systemd" ---------------------------------------------------------------------------


def fake_systemd(lab: Lab) -> Path:
    """A stand-in for systemd, outside the leash's tree: starts/stops a stand-in scheduler on request."""
    fifo = lab.tmp / "systemd.fifo"
    os.mkfifo(fifo)
    script = lab.tmp / "fake_systemd.py"
    script.write_text(FAKE_SYSTEMD)
    lab.spawn([PY, str(script), str(fifo), PY, str(FAKE), lab.token])
    return fifo


@pytest.mark.parametrize("stop_command_works", [True, False])
def test_a_scheduler_handed_to_systemd_is_stopped_at_the_deadline(lab: Lab, stop_command_works: bool) -> None:
    fifo = fake_systemd(lab)
    stamp = lab.tmp / "stop-command-ran"
    stop = f"{PY} -c {STAMP!r} {stamp}" + (f"; echo stop > {fifo}" if stop_command_works else "")
    spec = lab.spec(f"echo start > {fifo}", deadline_in=6.0, stop_timeout=1.5, stop_command=stop)
    leash = lab.leash(spec)
    wait_until(lambda: lab.schedulers(), 10, "the scheduler systemd started")
    [unit] = lab.schedulers()
    assert leash.pid not in {p.pid for p in unit.parents()}  # not below the leash
    wait_until(lambda: "watching the node's schedulers" in lab.log(), 5, "the hand-off")
    assert [r.mode for r in read_leash_records(lab.state, "n1")] == ["watch"]
    assert probe_local("n1", lab.match, lab.state).leashed
    procs = [unit, *unit.children(recursive=True)]
    done = wait_until(lambda: gone(procs), 8, "the handed-off scheduler to go", interval=0.02)
    ran = float(wait_until(lambda: stamp.exists() and stamp.read_text(), 2, "the stop command") and stamp.read_text())
    assert spec.deadline - spec.stop_timeout - 0.05 <= ran < spec.deadline - spec.stop_timeout + 0.5, lab.log()
    assert done <= spec.deadline + 0.3, lab.log()
    if stop_command_works:
        assert done < spec.deadline  # stopped by the stop command, before any SIGKILL
    assert leash.wait(5) == 0


def test_a_killed_watching_leash_runs_the_stop_command(lab: Lab) -> None:
    fifo = fake_systemd(lab)
    stamp = lab.tmp / "stop-command-ran"
    stop = f"{PY} -c {STAMP!r} {stamp}; echo stop > {fifo}"
    leash = lab.leash(lab.spec(f"echo start > {fifo}", deadline_in=60, stop_command=stop))
    wait_until(lambda: "watching the node's schedulers" in lab.log(), 10, "the hand-off")
    wait_until(lambda: lab.schedulers(), 10, "the scheduler systemd started")
    time.sleep(1.2)  # the watcher has been told (the leash looks every second when watching)
    [unit] = lab.schedulers()
    procs = [unit, *unit.children(recursive=True)]
    leash.kill()
    wait_until(lambda: gone(procs), 5, "the handed-off scheduler to go")
    assert stamp.exists()


def test_a_watching_leash_leaves_when_no_scheduler_is_left(lab: Lab) -> None:
    fifo = fake_systemd(lab)
    leash = lab.leash(lab.spec(f"echo start > {fifo}", deadline_in=60, linger=1.0))
    wait_until(lambda: lab.schedulers(), 10, "the scheduler systemd started")
    wait_until(lambda: "watching the node's schedulers" in lab.log(), 5, "the hand-off")
    with open(fifo, "w") as requests:
        requests.write("stop\n")
    assert leash.wait(10) == 0
    assert "no scheduler seen for 1s" in lab.log()


# --- through the local runner's launch ----------------------------------------------------------------


def test_the_launch_command_carries_nothing_on_a_command_line(lab: Lab, tmp_path: Path) -> None:
    from scheduler_failover_controller.config import load_config

    cfg = tmp_path / "sfc.cfg"
    cfg.write_text(
        "[scheduler_failover]\nscheduler_nodes_in_cluster = n1\ncurrent_host = n1\n"
        f"state_dir = {lab.state}\npoll_frequency = 1\nlease_ttl = 10\n"
        f"scheduler_process_match = {lab.match}\nairflow_scheduler_start_command = {lab.scheduler}\n"
    )
    config = load_config(str(cfg), env={})
    line = launch_command(config, "n1", LOCAL_ARGV)
    assert lab.token not in line and "n1" not in line.replace(str(lab.state), "")
    spec = leash_spec(config, "n1", 123.0, "tok")
    assert spec.command == lab.scheduler and spec.match == lab.match and spec.ttl == 10.0
    assert json.dumps(spec.environment())  # plain strings only
