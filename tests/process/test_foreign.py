"""Another user's process that looks like the scheduler: never counted, adopted or signalled.

Real controllers (as root) with a stand-in scheduler; the other user is ``nobody``, whose
stand-in is a shell script with the stand-in's name (``sh .../fake_scheduler.py --cluster T
--node N``), so it matches the cluster's ``scheduler_process_match``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.process.harness import Cluster
from tests.support.foreign import AS_NOBODY, Lookalikes, can_run_as_nobody, lookalike_dir, user_of
from tests.support.waiting import holds_for, wait_for

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(not can_run_as_nobody(), reason="needs root and setpriv"),
]


@pytest.fixture
def script_dir() -> Iterator[Path]:
    with lookalike_dir() as path:
        yield path


@pytest.fixture
def decoys() -> Iterator[Callable[[Path, Cluster, str], subprocess.Popen[bytes]]]:
    """Starts ``nobody``'s look-alikes of a node's scheduler; each is ended by pid after the test."""
    made: list[Lookalikes] = []

    def start(directory: Path, cluster: Cluster, node: str) -> subprocess.Popen[bytes]:
        made.append(Lookalikes(directory))
        return made[-1].start(["--cluster", cluster.token, "--node", node])

    yield start
    for lookalikes in made:
        lookalikes.close()


def schedulers(cluster: Cluster, node: str, exclude: set[int]) -> list[int]:
    """The pids of ``node``'s stand-in scheduler roots, but for ``exclude`` (the decoys) and their
    children: a decoy's ``sh`` forks a ``sleep`` every second, which has its command line until it
    execs."""
    match = f"--cluster {cluster.token} --node {node}"
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "ppid"]):
        line = " ".join(proc.info["cmdline"] or [])
        if "fake_scheduler.py" in line and line.endswith(match) and proc.pid not in exclude:
            found.append(proc.pid)
    return [p for p in found if _parent(p) not in found and _parent(p) not in exclude]


def _parent(pid: int) -> int | None:
    try:
        return psutil.Process(pid).ppid()
    except psutil.Error:
        return None


def node_status(cluster: Cluster, node: str) -> dict[str, object]:
    for entry in cluster.status().get("nodes", []):
        if entry.get("host") == node:
            return dict(entry)
    return {}


def foreign_pids(cluster: Cluster, node: str) -> list[object]:
    foreign = node_status(cluster, node).get("foreign") or []
    assert isinstance(foreign, list)
    return [f.get("pid") for f in foreign if isinstance(f, dict) and f.get("user") == "nobody"]


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'metastore.db'}"


def test_on_the_schedulers_node_nobodys_copy_is_reported_not_killed_nor_adopted(
    make_cluster: Callable[..., Cluster],
    tmp_path: Path,
    script_dir: Path,
    decoys: Callable[[Path, Cluster, str], subprocess.Popen[bytes]],
) -> None:
    cluster = make_cluster(sqlite(tmp_path), 1)
    cluster.start("n1")
    # The scheduler as the controller reports it: a look while its start command still runs could
    # catch the shell that starts it, whose pid is not the scheduler's.
    wait_for(
        lambda: len(schedulers(cluster, "n1", set())) == 1 and node_status(cluster, "n1").get("scheduler") == "running",
        20,
        "the scheduler on n1",
    )
    (real,) = schedulers(cluster, "n1", set())
    decoy = decoys(script_dir, cluster, "n1")
    # Several polls: the real, leashed scheduler is neither killed nor doubted, nobody's runs on.
    try:
        holds_for(
            lambda: schedulers(cluster, "n1", {decoy.pid}) == [real] and decoy.poll() is None,
            6 * cluster.poll,
            "the real scheduler and nobody's process both left alone",
        )
    except AssertionError as exc:
        seen = schedulers(cluster, "n1", {decoy.pid})
        raise AssertionError(
            f"{exc}: scheduler roots {seen} (was {real}), decoy exit {decoy.poll()}; "
            f"n1's log:\n{cluster.log('n1')[-4000:]}"
        ) from None
    wait_for(lambda: foreign_pids(cluster, "n1") == [decoy.pid], 15, "status to report nobody's process")
    status = node_status(cluster, "n1")
    assert status["scheduler"] == "running" and status["pids"] == [real], status
    text = cluster.cli("status").stdout
    assert f"foreign: pid {decoy.pid} (nobody)" in text and "foreign scheduler process on n1" in text, text
    log = cluster.log("n1")
    assert log.count(f"pid {decoy.pid} (nobody)") >= 1
    assert log.count("looks like the scheduler but runs as another user") == 1, "logged once, not every cycle"
    assert "restarted it in place" not in log and "stray" not in log


def test_on_a_standby_node_nobodys_copy_is_not_killed_as_a_stray(
    make_cluster: Callable[..., Cluster],
    tmp_path: Path,
    script_dir: Path,
    decoys: Callable[[Path, Cluster, str], subprocess.Popen[bytes]],
) -> None:
    cluster = make_cluster(sqlite(tmp_path), 2)
    cluster.start("n1")
    wait_for(lambda: len(schedulers(cluster, "n1", set())) == 1, 20, "the scheduler on n1")
    cluster.start("n2")
    (real,) = schedulers(cluster, "n1", set())
    decoy = decoys(script_dir, cluster, "n2")
    holds_for(
        lambda: (
            decoy.poll() is None
            and schedulers(cluster, "n1", set()) == [real]
            and schedulers(cluster, "n2", {decoy.pid}) == []
        ),
        6 * cluster.poll,
        "nobody's process on n2 left alone, the scheduler kept on n1",
    )
    wait_for(lambda: foreign_pids(cluster, "n2") == [decoy.pid], 15, "status to report nobody's process on n2")
    after = cluster.status()
    assert after["scheduler_node"] == "n1" and (after["placement_expires_in_s"] or 0) > 0, after
    assert "stray" not in cluster.log("n1")


def test_a_start_command_that_switches_user_is_leashed_counted_and_stopped(
    make_cluster: Callable[..., Cluster],
    tmp_path: Path,
    script_dir: Path,
    decoys: Callable[[Path, Cluster, str], subprocess.Popen[bytes]],
) -> None:
    cluster = make_cluster(sqlite(tmp_path), 2)
    start = " ".join([*AS_NOBODY, "/bin/sh", str(script_dir / "fake_scheduler.py")])
    text = cluster.config.read_text()
    lines = [
        f"airflow_scheduler_start_command = exec {start} --cluster {cluster.token} --node {{node}}"
        if line.startswith("airflow_scheduler_start_command")
        else line
        for line in text.splitlines()
    ]
    cluster.config.write_text("\n".join(lines) + "\n")
    # nobody's own copy on n1, not under the leash: it must not count beside the leashed one
    decoy = decoys(script_dir, cluster, "n1")
    cluster.start("n1")
    wait_for(lambda: len(schedulers(cluster, "n1", {decoy.pid})) == 1, 20, "the leashed scheduler on n1")
    (leashed,) = schedulers(cluster, "n1", {decoy.pid})
    assert user_of(leashed) == "nobody"
    cluster.start("n2")
    wait_for(lambda: node_status(cluster, "n1").get("pids") == [leashed], 15, "status to count the leashed one")
    holds_for(
        lambda: schedulers(cluster, "n1", {decoy.pid}) == [leashed] and decoy.poll() is None,
        6 * cluster.poll,
        "the leashed scheduler kept (not doubled by nobody's copy)",
    )
    assert foreign_pids(cluster, "n1") == [decoy.pid]
    # Shut n1's controller down: it stops its (nobody's, leashed) scheduler, n2 takes over.
    cluster.signal("n1", signal.SIGTERM)
    wait_for(lambda: not psutil.pid_exists(leashed) or _zombie(leashed), 20, "the leashed scheduler to be stopped")
    wait_for(lambda: len(schedulers(cluster, "n2", set())) == 1, 30, "the scheduler to move to n2")
    assert decoy.poll() is None, "nobody's own copy was signalled"


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


@pytest.mark.parametrize("stray_node", ["n3", "n1"])
def test_a_stray_that_keeps_coming_back_does_not_cost_the_placed_node_its_scheduler(
    make_cluster: Callable[..., Cluster], tmp_path: Path, script_dir: Path, stray_node: str
) -> None:
    """The scheduler runs on n2, whose controller is gone: only the active (n1) renews n2's
    placement and leash. A loop (of the controllers' own user) brings a stray back on another
    node (n3, without a controller; n1, the active's own) as soon as it is killed; the active
    kills it every cycle, and must still look after n2."""
    cluster = make_cluster(sqlite(tmp_path), 3)
    cluster.start("n1")
    wait_for(lambda: len(schedulers(cluster, "n1", set())) == 1, 20, "the scheduler on n1")
    cluster.start("n2")
    wait_for(lambda: len(cluster.status().get("controllers", [])) == 2, 20, "n2's controller registered")
    moved = cluster.cli("switchover", "--to", "n2")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    wait_for(lambda: len(schedulers(cluster, "n2", set())) == 1, 20, "the scheduler on n2")
    (placed,) = schedulers(cluster, "n2", set())
    cluster.signal("n2", signal.SIGKILL)
    cluster.procs["n2"].wait(timeout=10)
    stray = f"/bin/sh {script_dir / 'fake_scheduler.py'} --cluster {cluster.token} --node {stray_node}"
    loop = subprocess.Popen(
        ["/bin/sh", "-c", f"i=0; while [ $i -lt 2000 ]; do {stray}; i=$((i+1)); done"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        killed = "killed stray scheduler(s) on n3" if stray_node == "n3" else "stopped a scheduler on n1"
        wait_for(lambda: killed in cluster.log("n1"), 15, "the stray to be killed")
        # Unrenewed, n2's deadline (at most lease_ttl ahead) would pass and its leash stop the
        # scheduler within one lease_ttl: two show it with a whole lease to spare.
        holds_for(
            lambda: schedulers(cluster, "n2", set()) == [placed],
            2 * cluster.ttl,
            "the scheduler on n2 kept (its placement and leash renewed)",
        )
        assert cluster.status()["scheduler_node"] == "n2"
    finally:
        os.killpg(loop.pid, signal.SIGKILL)
        loop.wait()


def test_an_unknown_scheduler_user_is_a_one_line_config_error(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = make_cluster(sqlite(tmp_path), 1)
    config = cluster.config.read_text()
    for value, code in (("no-such-user-x", 2), ("nobody", 0)):
        cluster.config.write_text(config + f"scheduler_user = {value}\n")
        done = cluster.cli("probe")
        text = (done.stdout + done.stderr).strip()
        assert done.returncode == code, text
        assert len(text.splitlines()) == 1 and "Traceback" not in text, text
        if code:
            assert "scheduler_user" in text and "no-such-user-x" in text, text
