"""The SSH runner's shell scripts without sshd: they parse, values in them are always quoted (a node
name or path with spaces, quotes or ``$()`` reaches no shell as code), and what they print with a
marker is read back."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler_failover_controller.leash.records import LeashRecord, leash_dir, leash_record_prefix
from scheduler_failover_controller.nodes.ssh import scripts
from scheduler_failover_controller.nodes.ssh.ps_table import ProcessEntry
from scheduler_failover_controller.nodes.ssh.scripts import Marker, marked
from scheduler_failover_controller.probe_result import ProbeResult, SchedulerState

ROOT = Path(__file__).resolve().parents[2]

#: Would run ``touch CANARY`` (in the test's directory) if it ever reached a shell unquoted.
NASTY = [
    "plain",
    "with space",
    "it's",
    'say "hi"',
    "$(touch CANARY)",
    "`touch CANARY`",
    "x; touch CANARY",
    "a\nb",
    "-n",
]
#: A pid no process has (above the kernel's largest pid_max).
NO_PID = 4194305


@pytest.fixture(params=NASTY, ids=lambda name: repr(name))
def node(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def here(tmp_path: Path) -> Iterator[Path]:
    """The working directory of the shells run; no CANARY may appear in it."""
    yield tmp_path
    assert not (tmp_path / "CANARY").exists(), "a value reached the shell unquoted"


def state_dir(here: Path) -> Path:
    return here / "state $(touch CANARY) 'dir'"


def sh(script: str, cwd: Path, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as the runner does: on the standard input of ``/bin/sh -s``."""
    return subprocess.run(
        ["/bin/sh", "-s"], input=script, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def parses(script: str) -> None:
    result = subprocess.run(["/bin/sh", "-n"], input=script, capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 0, (result.stderr, script)


def all_scripts(node: str, here: Path) -> dict[str, str]:
    state = state_dir(here)
    lock_dir = state / "locks"
    remote = [f"sfc_no_such_command {node}", "--flag"]
    entry = ProcessEntry(NO_PID, 1, (node,), args=f"airflow scheduler {node}")
    return {
        "listing": scripts.listing_script(state, node),
        "settle": scripts.settle_script(lock_dir, [scripts.token_dir(lock_dir, node, "t1")]),
        "launch": scripts.launch_script(
            "true", node=node, token="t1", state_dir=state, lock_dir=lock_dir, session_path=state / f"{node}.session"
        ),
        "end_session": scripts.end_session_script(state / f"{node}.session"),
        "kill": scripts.kill_script([entry], 0.1),
        "kill_local": "\n".join(
            scripts.kill_local_lines(remote, scripts.project_command(remote, ["kill_local", "--node", node], {}))
        ),
        "serve": scripts.serve_script(remote, ["probe", "--node", node, "--serve"], {"SFC_X": node}),
        "check": scripts.check_script(remote),
        "stop_command": scripts.stop_command_script("true"),
        "lock": scripts.lock_command(lock_dir / f"{node}.lock", 0.5, 2),
    }


def test_every_script_parses(node: str, here: Path) -> None:
    for name, script in all_scripts(node, here).items():
        try:
            parses(script)
        except AssertionError:
            pytest.fail(f"{name} does not parse with sh -n")


def test_values_reach_the_shell_quoted(node: str, here: Path) -> None:
    """Each script runs; the nasty values become file names and words, never code."""
    state = state_dir(here)
    lock_dir = state / "locks"
    made = all_scripts(node, here)
    token = scripts.token_dir(lock_dir, node, "t1")
    # settle creates the token directory under its exact (nasty) name
    settled = sh(made["settle"], here).stdout
    assert token.is_dir()
    if "\n" not in node:  # (marked output is read by lines)
        assert marked(settled, Marker.CANCELLED) == [str(token)]
    # so the launch finds its token taken and runs nothing
    launched = sh(made["launch"], here)
    assert launched.returncode == 1 and marked(launched.stdout, Marker.CANCELLED) == [""]
    assert not (state / f"{node}.session").exists()
    # with a fresh token it runs, and its detached shell records its session where it should
    fresh = made["launch"].replace("start-t1", "start-t2")
    launched = sh(fresh, here)
    assert marked(launched.stdout, Marker.LAUNCHED) == ["0"], launched
    session = state / f"{node}.session"
    for _ in range(100):
        if session.exists() and session.read_text().strip():
            break
        time.sleep(0.05)
    assert session.read_text().split()[0].isdigit()
    session.write_text(f"{NO_PID} {int(time.time())}\n")
    assert sh(made["end_session"], here).returncode == 0
    assert not session.exists()
    for name in ("listing", "kill", "kill_local", "serve", "check", "stop_command"):
        sh(made[name], here)
    served = sh(made["serve"], here)
    assert served.returncode == 127  # the command is not there: said so, nothing else ran


def test_the_words_of_a_command_stay_words(node: str, here: Path) -> None:
    (here / "argv.py").write_text("import sys\nprint(repr(sys.argv[1:]))\n")
    command = scripts.project_command([sys.executable, "argv.py"], ["probe", "--node", node], {"SFC_X": node})
    out = sh(command + "\n", here).stdout
    assert out.strip() == repr(["probe", "--node", node])
    env_echo = scripts.project_command([sys.executable, "-c", "import os; print(repr(os.environ['SFC_X']))"], [], {})
    assert sh(f"SFC_X={scripts.q(node)}; export SFC_X\n{env_echo}\n", here).stdout.strip() == repr(node)


@pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock (util-linux)")
def test_the_lock_command_says_it_holds_the_lock(node: str, here: Path) -> None:
    lock = state_dir(here) / "locks" / f"{node}.lock"
    result = subprocess.run(
        shlex.split(scripts.lock_command(lock, 0.5, 2)),  # as sshd's shell runs the command line
        input="",
        cwd=here,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert marked(result.stdout, Marker.LOCKED) == [""]
    assert lock.exists()
    # the command line is one quoted argument of /bin/sh -c
    assert shlex.split(scripts.lock_command(lock, 0.5, 2))[:2] == ["/bin/sh", "-c"]


def test_the_listing_is_read_back(node: str, here: Path) -> None:
    state = state_dir(here)
    records = leash_dir(state)
    records.mkdir(parents=True)
    mine = LeashRecord(os.getpid(), 1234.5, "tree", token="t1")
    (records / f"{leash_record_prefix(node)}1").write_text(mine.to_json())
    (records / f"{leash_record_prefix('other')}1").write_text(LeashRecord(1, 1.0, "tree").to_json())
    sibling = subprocess.Popen(["sleep", "30"])
    try:
        out = sh(scripts.listing_script(state, node), here).stdout
    finally:
        sibling.kill()
        sibling.wait()
    leashes, now = scripts.parse_listing_head(out)
    assert leashes == [mine]
    assert now is not None and abs(now - time.time()) < 5
    table = scripts.parse_listing(out)
    assert table is not None
    pids = {e.pid for e in table}
    assert sibling.pid in pids
    # the listing's own shell (it became ps) and its ancestors, this test among them, are left out
    assert os.getpid() not in pids
    # (by pid: the machine may run other listings, e.g. this test on another Python at once)
    own = int(out.partition(Marker.PS.text)[2].split()[0])
    assert own not in pids
    assert not any(e.args.startswith("ps -A -ww") and e.ppid == os.getpid() for e in table)


def test_an_unreadable_listing_is_none() -> None:
    assert scripts.parse_listing("") is None
    assert scripts.parse_listing(f"{Marker.PS.text} notapid\n  1 0 S 00:01 init\n") is None
    assert scripts.parse_listing_head("garbage\n") == ([], None)


@pytest.mark.parametrize("marker", list(Marker))
def test_markers_round_trip(marker: Marker, tmp_path: Path) -> None:
    out = sh(f"echo noise\n{marker.echo('$((6 * 7)) and more')}\n{marker.echo()}\n", tmp_path).stdout
    assert marked(out, marker) == ["42 and more", ""]
    assert all(marked(out, other) == [] for other in Marker if other is not marker)


def test_every_marker_is_printed_by_some_script(tmp_path: Path) -> None:
    """No marker constant is left that nothing prints."""
    text = "\n".join(all_scripts("n", tmp_path).values())
    assert [m for m in Marker if m.text not in text] == []


def test_settling_twice_tells_cancelled_from_ran(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    dirs = [scripts.token_dir(lock_dir, "n", t) for t in ("a", "b")]
    first = sh(scripts.settle_script(lock_dir, dirs), tmp_path).stdout
    assert marked(first, Marker.CANCELLED) == [str(d) for d in dirs] and not marked(first, Marker.RAN)
    again = sh(scripts.settle_script(lock_dir, dirs), tmp_path).stdout
    assert marked(again, Marker.RAN) == [str(d) for d in dirs] and not marked(again, Marker.CANCELLED)


def test_a_start_command_with_the_delimiter_line_is_refused(tmp_path: Path) -> None:
    from scheduler_failover_controller.exceptions import CommandFailed

    with pytest.raises(CommandFailed, match="SFC_LAUNCH_t1"):
        scripts.launch_script(
            "echo\nSFC_LAUNCH_t1\necho",
            node="n",
            token="t1",
            state_dir=tmp_path,
            lock_dir=tmp_path,
            session_path=tmp_path / "s",
        )


def test_probe_json_is_read_back() -> None:
    line = 'login banner {"state": "running", "pids": [5, 7], "detail": "", "leashed": true} trailing'
    assert scripts.parse_probe_json("n", line) == ProbeResult("n", SchedulerState.RUNNING, (5, 7), "", leashed=True)
    assert scripts.parse_probe_json("n", '{"state": "bogus"}') is None
    assert scripts.parse_probe_json("n", "no json") is None


def test_a_single_host_controller_does_not_import_paramiko() -> None:
    code = (
        "import sys\n"
        "from tests.unit.fakes import make_config\n"
        "from scheduler_failover_controller.nodes import LocalNodeRunner, make_runners\n"
        "runners = make_runners(make_config('n1', nodes=['n1']))\n"
        "assert isinstance(runners['n1'], LocalNodeRunner)\n"
        "assert 'paramiko' not in sys.modules, 'paramiko was imported'\n"
        "from scheduler_failover_controller.nodes import SSHNodeRunner\n"
        "assert 'paramiko' in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
