"""The leash with real processes: a scheduler slow to appear, a tree that escapes a killed leash by
``setsid``, a scheduler the leash may not signal, and what the scheduler's environment holds.

Each test runs ``python -m scheduler_failover_controller.leash`` as the runners do (or a real
controller), with stand-in schedulers whose arguments carry the test's token; everything it
started is killed by pid at its end, also when it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from scheduler_failover_controller.leash.cgroup import PREFIX, Cgroup, parent_dir, pid_namespace
from scheduler_failover_controller.leash.records import read_leash_records
from scheduler_failover_controller.matching import find_schedulers
from scheduler_failover_controller.probe import probe_local
from tests.process.harness import Cluster
from tests.process.test_leash import FAKE, PY, Lab, gone
from tests.support.waiting import holds_for, wait_until

pytestmark = pytest.mark.process


# --- a scheduler that takes its time to appear ---------------------------------------------------


def test_a_scheduler_that_execs_after_3s_comes_up_leashed(lab: Lab) -> None:
    """``setsid nohup sh -c 'sleep 3; exec ...' &``: the start command is gone at once, the scheduler
    shows 3 s later (a pyenv shim, ``su -``, ``conda run`` take as long), below the leash."""
    inner = f"sleep 3; exec {PY} {FAKE} --cluster {lab.token} --node n1"
    command = f"setsid nohup sh -c '{inner}' >/dev/null 2>&1 &"
    spec = lab.spec(command, deadline_in=9.0, linger=7.0)
    leash = lab.leash(spec)
    wait_until(lambda: lab.schedulers(), 8, f"the slow scheduler to show\n{lab.log()}")
    [root] = lab.schedulers()
    assert leash.pid in {p.pid for p in root.parents()}
    assert probe_local("n1", lab.match, lab.state).leashed
    wait_until(lambda: "runs on below the leash" in lab.log(), 2, "the leash to see it")
    procs = [root, *root.children(recursive=True)]
    done = wait_until(lambda: gone(procs), 8, "the scheduler to go at the deadline", interval=0.02)
    assert done <= spec.deadline, lab.log()
    assert leash.wait(5) == 0


def test_when_nothing_matching_appears_one_line_names_the_match_and_what_ran(lab: Lab) -> None:
    command = f"setsid nohup {lab.sleeper('not-a-scheduler')} >/dev/null 2>&1 &"
    leash = lab.leash(lab.spec(command, deadline_in=30.0, linger=2.5))
    wait_until(lambda: lab.marked(), 5, "what the start command started")
    procs = lab.marked()
    assert leash.wait(10) == 0
    assert gone(procs)
    lines = [line for line in lab.log().splitlines() if "scheduler_process_match" in line]
    assert len(lines) == 1, lab.log()
    assert repr(lab.match) in lines[0] and "within 2.5s" in lines[0], lines[0]
    assert "sleeper.py" in lines[0] and "not-a-scheduler" in lines[0], lines[0]  # what did start
    assert "watching" not in lab.log()  # not taken for a hand-off


def test_each_change_of_the_leashs_state_is_one_line_in_its_log(lab: Lab) -> None:
    """The start command exits leaving a process that never becomes a scheduler: started, the exit
    with something still below the leash, the end when nothing matching showed; one line each."""
    command = f"setsid nohup {lab.sleeper('on-its-way')} >/dev/null 2>&1 &"
    leash = lab.leash(lab.spec(command, deadline_in=30.0, linger=2.0))
    wait_until(lambda: "left below it" in lab.log(), 5, f"the line of the start command's exit\n{lab.log()}")
    assert leash.wait(10) == 0
    lines = [line.split(": ", 1)[1] for line in lab.log().splitlines() if "sfc-leash[" in line]
    changes = [
        next(i for i, line in enumerate(lines) if line.startswith(start))
        for start in ("started the scheduler", "the start command exited (status 0)", "no process matching")
    ]
    assert changes == sorted(changes), lines
    assert sum("the start command exited" in line for line in lines) == 1, lines


@pytest.mark.parametrize("exit_status", [0, 3])
def test_a_start_command_that_leaves_nothing_names_the_match_when_it_never_ran(lab: Lab, exit_status: int) -> None:
    """``su - airflow -c 'airflow schedulr'`` (3), or a hand-off to a unit that never starts one (0)."""
    # The leash names what ran below it from its scans, one every 0.5 s: the stand-in lives for
    # two of them, so a loaded machine still lets one land, and ends within the start timeout.
    command = f"{lab.sleeper('too-short')} & sleep 1.2; kill $!; exit {exit_status}"
    leash = lab.leash(lab.spec(command, deadline_in=30.0, linger=2.0))
    assert leash.wait(10) == 0
    lines = [line for line in lab.log().splitlines() if "scheduler_process_match" in line]
    assert len(lines) == 1 and repr(lab.match) in lines[0], lab.log()
    if exit_status:
        assert "exited (status 3)" in lines[0] and "too-short" in lines[0], lines[0]
    else:
        assert "watching the node's schedulers" in lab.log() and "no scheduler seen for 2s" in lines[0]


# --- a killed leash whose tree called setsid since its last look ---------------------------------

BURST = """
import os, sys, time
trigger = sys.argv[-1]
while not os.path.exists(trigger):
    time.sleep(0.005)
for _ in range(4):  # a burst of escapes: new sessions, double-forked, like Airflow's task runner
    if os.fork() == 0:
        os.setsid()
        if os.fork():
            os._exit(0)
        time.sleep(100000)
time.sleep(100000)
"""


def _end_cgroups(leashes: list[int]) -> None:
    """Remove what a test's leashes left: the controller's cleanup (its session, SIGKILLed at once)
    may end a leash and its watcher together; on a host, the next leash sweeps it."""
    for pid in leashes:
        wait_until(lambda: not psutil.pid_exists(pid), 5, "the leash to go")  # noqa: B023
        for path in _cgroups_of(pid):
            Cgroup(path).end()


def _cgroups_of(pid: int, parent: Path | str | None = None) -> list[Path]:
    parent = parent_dir() if parent is None else parent
    if isinstance(parent, str):
        return []
    return list(parent.glob(f"{PREFIX}{pid_namespace()}-{pid}-*"))


@contextlib.contextmanager
def private_cgroup(lab: Lab, parent: Path) -> Iterator[Path]:
    """A cgroup of the test's own for its leashes: a sweep ends every dead leash's cgroup beside
    its own, so without one, any other leash on the host (another test, another lane) may be the
    one that sweeps this test's leftover."""
    path = parent / f"sfc-test-{lab.token}"
    path.mkdir()
    lab.cgroup = path
    try:
        yield path
    finally:
        lab.close()
        for child in path.glob(f"{PREFIX}*"):
            Cgroup(child).end()
        wait_until(lambda: not Cgroup(path).pids(), 5, "the test's leashes and watchers to go")
        path.rmdir()


def test_a_sigkilled_leash_leaves_nothing_that_called_setsid_since_its_last_look(lab: Lab) -> None:
    parent = parent_dir()
    if isinstance(parent, str) or not os.access(parent, os.W_OK):
        pytest.skip(f"no writable cgroup v2 here ({parent})")
    script = lab.tmp / "burst" / "fake_scheduler.py"  # the program the match names
    script.parent.mkdir()
    script.write_text(BURST)
    for attempt in range(5):
        trigger = lab.tmp / f"go-{attempt}"
        leash = lab.leash(lab.spec(f"exec {PY} {script} --cluster {lab.token} --node n1 {trigger}", deadline_in=60))
        wait_until(lambda: lab.schedulers() and read_leash_records(lab.state, "n1"), 10, "the scheduler")
        time.sleep(0.6)  # the leash has looked and told its watcher (it looks every 0.5 s) ...
        trigger.touch()  # ... then the burst, and the kill before its next look
        wait_until(lambda: len(lab.marked()) >= 5, 5, "the burst of setsid children", interval=0.002)
        leash.kill()
        procs, pid = lab.marked(), leash.pid
        wait_until(lambda: gone(procs), 5, f"attempt {attempt}: the whole tree to go with its leash", interval=0.02)  # noqa: B023
        wait_until(lambda: not _cgroups_of(pid), 5, "the tree's cgroup to be removed")  # noqa: B023
        leash.wait()
    assert lab.log().count("containment: cgroup") == 5


def test_a_tree_whose_leash_and_watcher_were_killed_together_is_ended_by_the_next_leash(lab: Lab) -> None:
    """A controller's cleanup SIGKILLs a leash's whole session, watcher included: what had left the
    session (``setsid``) lives on in the tree's cgroup until the node's next leash sweeps it."""
    parent = parent_dir()
    if isinstance(parent, str) or not os.access(parent, os.W_OK):
        pytest.skip(f"no writable cgroup v2 here ({parent})")
    command = f"setsid {lab.sleeper('escaped')} &\n{lab.scheduler}"
    with private_cgroup(lab, parent) as own:
        first = lab.leash(lab.spec(command, deadline_in=60))
        wait_until(lambda: len(lab.marked()) >= 3 and lab.watcher_of(first), 10, "the tree and the watcher")
        assert _cgroups_of(first.pid, own), lab.log()
        escaped = [p for p in lab.marked() if "escaped" in p.cmdline()]
        assert escaped
        pair = (first.pid, lab.watcher_of(first))
        for signum in (signal.SIGSTOP, signal.SIGKILL):  # both at once, as a session kill does
            for pid in pair:
                os.kill(pid, signum)
        first.wait()
        wait_until(lambda: not lab.schedulers(), 5, "the scheduler to die with its parent (PDEATHSIG)")
        assert all(p.is_running() for p in escaped)  # what left the session is left
        lab.leash(lab.spec("true", deadline_in=60, linger=1.0))
        wait_until(lambda: gone(escaped), 5, "the next leash to end the leftover tree")
        wait_until(lambda: not _cgroups_of(first.pid, own), 5, "the leftover cgroup to be removed")
        assert "ended the leftover cgroup" in lab.log()
        wait_until(lambda: "watching the node's schedulers" in lab.log(), 5, "the second leash to be up (and watched)")


def test_without_cgroup_kill_every_member_is_killed_one_by_one(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels before 5.14 have no ``cgroup.kill``: the members, forks included, are SIGKILLed."""
    from scheduler_failover_controller.leash import cgroup as leash_cgroup

    parent = parent_dir()
    if isinstance(parent, str) or not os.access(parent, os.W_OK):
        pytest.skip(f"no writable cgroup v2 here ({parent})")
    real_write = leash_cgroup._write

    def no_kill_file(path: Path, text: str) -> None:
        if path.name == "cgroup.kill":
            raise OSError(2, "No such file or directory")
        real_write(path, text)

    monkeypatch.setattr(leash_cgroup, "_write", no_kill_file)
    made = Cgroup.create(os.getpid(), 0)
    assert isinstance(made, Cgroup), made
    try:
        go = lab.tmp / "go"
        wait_go = f"while [ ! -e {go} ]; do sleep 0.01; done"
        proc = lab.spawn(["sh", "-c", f"{wait_go}; {lab.sleeper('member')} & {lab.sleeper('member')} & wait"])
        made.add(proc.pid)  # before it forks
        go.touch()
        wait_until(lambda: len(lab.marked()) >= 3, 20, "the members")  # three Pythons starting on a loaded host
        members = lab.marked()
        made.kill(wait=0)  # one round, as the watcher's first look does
        wait_until(lambda: gone(members), 2, "every member to die")
        assert made.kill() and not made.pids()
    finally:
        made.end()


# --- a scheduler the leash may not signal --------------------------------------------------------


def test_a_watching_leash_that_may_not_signal_says_so_and_is_not_leashed(lab: Lab) -> None:
    """A scheduler of another user (``nobody``) that the start command handed off: the leash (root
    without CAP_KILL, so it may not signal another user's process) says so loudly, registers so
    that no probe counts the scheduler leashed, and says at the deadline that it runs on."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv")
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else PY  # one nobody may run
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]
    unit = lab.spawn([*as_nobody, python, str(FAKE), "--cluster", lab.token, "--node", "n1"])
    wait_until(lambda: lab.schedulers(), 10, "nobody's scheduler")
    spec = lab.spec("true", deadline_in=6.0, stop_timeout=1.0, user="nobody")
    lab.state.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **spec.environment()}
    with (lab.tmp / "leash.log").open("ab") as log:
        leash = subprocess.Popen(
            ["setpriv", "--bounding-set=-kill", "--", sys.executable, "-m", "scheduler_failover_controller.leash"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    lab.procs.append(leash)
    wait_until(lambda: "WARNING: not permitted to signal" in lab.log(), 8, f"the warning\n{lab.log()}")
    [line] = [x for x in lab.log().splitlines() if "WARNING: not permitted" in x]
    assert f"pid {unit.pid} (nobody)" in line, line
    assert [r.mode for r in read_leash_records(lab.state, "n1")] == ["denied"]
    assert not probe_local("n1", lab.match, lab.state).leashed
    assert leash.wait(spec.deadline + 3 - time.monotonic()) == 0
    assert "ERROR: pid" in lab.log() and "left running past the deadline" in lab.log(), lab.log()
    assert unit.poll() is None  # it could not be stopped, and that was said


# --- the scheduler's environment -----------------------------------------------------------------

HOOK = "http://127.0.0.1:9/hooks/Hook-Planted-4412"
ZK_AUTH = "sfcuser:Zk-Planted-8126"


class _PlantedCluster(Cluster):
    """A cluster whose controllers have secrets and Airflow settings in their environment."""

    def env(self, node: str) -> dict[str, str]:
        env = super().env(node)
        env.update(
            {
                "AIRFLOW__SCHEDULER_FAILOVER__ALERT_WEBHOOK_URL": HOOK,
                "AIRFLOW__SCHEDULER_FAILOVER__METADATA_SERVICE_ZOOKEEPER_AUTH": ZK_AUTH,
                "SCHEDULER_FAILOVER_CONTROLLER_CONFIG": str(self.config),
                "SFC_PLANTED_INSTRUCTION": "Sfc-Planted-5531",
                "AIRFLOW__CORE__PLANTED_X": "keep-core-x",
                "AIRFLOW_CONN_PLANTED_Y": "keep-conn-y",
                "AIRFLOW__SMTP__SMTP_PASSWORD": "keep-smtp-password",  # Airflow reads it too
            }
        )
        return env


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw.split(b"\0") if item)


def test_the_controllers_secrets_reach_neither_the_leash_nor_the_scheduler(tmp_path: Path) -> None:
    cluster = _PlantedCluster(tmp_path / "c", f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    seen: list[int] = []
    try:
        cluster.start("n1")
        wait_until(lambda: find_one(cluster), 30, f"the scheduler\n{cluster.log('n1')}")
        scheduler = find_one(cluster)
        assert scheduler is not None
        leashes = [p for p in scheduler.parents() if p.name() == "sfc-leash"]
        assert leashes, "the scheduler runs below its leash"
        seen.extend(p.pid for p in leashes)
        for proc, who in ((scheduler, "scheduler"), (leashes[0], "leash")):
            env = _environ(proc.pid)
            text = "\0".join(f"{k}={v}" for k, v in env.items())
            for secret in ("Hook-Planted-4412", "Zk-Planted-8126", "Sfc-Planted-5531", str(cluster.config)):
                assert secret not in text, f"{secret} in the {who}'s environment"
            assert not [k for k in env if k.startswith("AIRFLOW__SCHEDULER_FAILOVER")], who
            assert env.get("AIRFLOW__CORE__PLANTED_X") == "keep-core-x", who
            assert env.get("AIRFLOW_CONN_PLANTED_Y") == "keep-conn-y", who
            assert env.get("AIRFLOW__SMTP__SMTP_PASSWORD") == "keep-smtp-password", who
    finally:
        cluster.close()
        _end_cgroups(seen)


def find_one(cluster: Cluster) -> psutil.Process | None:
    found = find_schedulers(cluster.observer.match)
    return found[0] if len(found) == 1 else None


def test_a_controller_brings_up_a_scheduler_that_execs_after_3s(tmp_path: Path) -> None:
    """The same slow start through a real controller: its start wait and its leash both wait."""
    cluster = Cluster(tmp_path / "c", f"sqlite:///{tmp_path / 'metastore.db'}", 1)
    slow = f"sleep 3; exec {PY} {FAKE} --cluster {cluster.token} --node {{node}}"
    text = cluster.config.read_text().replace("scheduler_start_timeout = 5\n", "scheduler_start_timeout = 10\n")
    lines = [
        f"airflow_scheduler_start_command = setsid nohup sh -c '{slow}' >/dev/null 2>&1 &"
        if line.startswith("airflow_scheduler_start_command")
        else line
        for line in text.splitlines()
    ]
    cluster.config.write_text("\n".join(lines) + "\n")
    seen: list[int] = []
    try:
        cluster.start("n1")
        wait_until(lambda: find_one(cluster), 25, f"the slow scheduler\n{cluster.log('n1')}")
        scheduler = find_one(cluster)
        assert scheduler is not None
        leashes = [p.pid for p in scheduler.parents() if p.name() == "sfc-leash"]
        assert leashes, "it runs below its leash"
        seen.extend(leashes)
        holds_for(lambda: find_one(cluster) == scheduler, 2.0, "the same scheduler up")
        assert "not up within" not in cluster.log("n1")
    finally:
        cluster.close()
        _end_cgroups(seen)
