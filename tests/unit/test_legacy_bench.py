"""benchmarks/legacy.py: it refuses a missing or wrong 2016 checkout in one line, and measures
recovery from the observer's history as its docstring says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.legacy_trials import HOLD, Trial, Window, recovery_from, table
from tests.support.observer import Seen

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "legacy.py"


def bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def one_line_refusal(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_refuses_without_a_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFC_LEGACY_CHECKOUT", raising=False)
    one_line_refusal(bench(env=dict(os.environ)), "--legacy-checkout PATH", "v1.0.9")


def test_refuses_a_missing_directory(tmp_path: Path) -> None:
    one_line_refusal(bench("--legacy-checkout", str(tmp_path / "nowhere")), "no such directory")


def test_refuses_a_directory_that_is_not_the_2016_controller(tmp_path: Path) -> None:
    (tmp_path / "scheduler_failover_controller").mkdir()  # this project's package name, not its layout
    one_line_refusal(bench("--legacy-checkout", str(tmp_path)), "not a checkout of the 2016 controller")


def test_refuses_a_python_without_airflow(tmp_path: Path) -> None:
    for name in (
        "scheduler_failover_controller/failover/failover_controller.py",
        "scheduler_failover_controller/metadata/sql_metadata_service.py",
        "scheduler_failover_controller/command_runner/command_runner.py",
        "scheduler_failover_controller/bin/scheduler_failover_controller",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("SCHEDULER_RESTART_SLEEP_TIME = 35\n")
    done = bench("--legacy-checkout", str(tmp_path), "--legacy-python", str(tmp_path / "no-python"))
    one_line_refusal(done, "--legacy-python", "no such interpreter")


def test_refuses_an_unknown_fault() -> None:
    one_line_refusal(bench("--faults", "kill,meteor", "--controllers", "ours"), "unknown 'meteor'")


OLD = Seen("h1", 100)
H1_NEW = Seen("h1", 101)
H2 = Seen("h2", 200)


def test_recovery_of_a_kill_is_the_first_new_process() -> None:
    history = [(0.0, (OLD,), ()), (10.5, (), ()), (11.0, (H1_NEW,), ())]
    assert recovery_from(history, 10.0, "kill", OLD) == pytest.approx(1.0)
    assert recovery_from(history[:2], 10.0, "kill", OLD) is None


def test_recovery_of_a_partition_needs_a_scheduler_on_another_host() -> None:
    history = [(0.0, (OLD,), ()), (12.0, (H2, OLD), ()), (20.0, (H2,), ())]
    assert recovery_from(history, 10.0, "partition", OLD) == pytest.approx(2.0)
    assert recovery_from([(0.0, (OLD,), ()), (11.0, (H1_NEW,), ())], 10.0, "crash", OLD) is None


def test_recovery_after_a_controller_fault_is_zero_while_the_scheduler_runs_on() -> None:
    assert recovery_from([(0.0, (OLD,), ())], 10.0, "controller_kill", OLD) == 0.0
    history = [(0.0, (OLD,), ()), (20.0, (), ()), (23.5, (H2,), ())]
    assert recovery_from(history, 10.0, "graceful", OLD) == pytest.approx(13.5)
    assert recovery_from(history[:2], 10.0, "graceful", OLD) is None


def test_table_shows_median_and_max_and_what_never_recovered() -> None:
    trials = [
        Trial("2016", "same", "kill", 2.0, 0.0, 2.0, None),
        Trial("2016", "same", "kill", 4.0, 1.5, 4.0, None, two_at_end=True),
        Trial("2016", "same", "kill", None, 0.0, 9.0, None, note="not over"),
        Trial("ours", "same", "kill", 1.0, 0.0, 1.0, None),
    ]
    text = table(trials, [("2016", "same", "2016"), ("ours", "same", "ours")])
    row = next(line for line in text.splitlines() if "recovery s" in line and "SIGKILL" in line)
    assert "3.0 / 4.0 (1 of 3 never)" in row and "1.0 / 1.0" in row
    two = next(line for line in text.splitlines() if "two schedulers s" in line)
    assert "still two at the end: 1 of 3" in two
    assert "trials per fault: 2016: 3, ours: 1" in text


class FakeObserver:
    def __init__(self) -> None:
        self.history: list[tuple[float, tuple[Seen, ...], tuple[Seen, ...]]] = [(0.0, (OLD,), ())]

    def see(self, t: float, *real: Seen) -> None:
        self.history.append((t, tuple(real), ()))

    def current(self) -> tuple[Seen, ...]:
        return self.history[-1][1]


class FakeLab:
    def __init__(self) -> None:
        self.observer = FakeObserver()
        self.healed: list[str] = []

    def heal(self, name: str) -> None:
        self.healed.append(name)


class FakeCluster:
    """What Window asks of a cluster: its lab, poll, settle, cap, who is active, where it placed."""

    poll = 1.0

    def __init__(self) -> None:
        self.lab = FakeLab()
        self.where: str | None = "h1"
        self.leader: str | None = "h1"

    def settle(self) -> float:
        return 6.0

    def cap(self) -> float:
        return 100.0

    def active(self) -> str | None:
        return self.leader

    def placed(self) -> str | None:
        return self.where


def window(cluster: FakeCluster, fault: str) -> Window:
    return Window(cluster, fault, OLD, 10.0)  # type: ignore[arg-type]


def test_a_partition_heals_a_hold_after_the_scheduler_runs_elsewhere_then_settles() -> None:
    cluster = FakeCluster()
    win = window(cluster, "partition")
    assert not win.look(11.0)
    cluster.lab.observer.see(12.0, H2, OLD)  # two: the cut-off one runs on
    cluster.where, cluster.leader = "h2", "h2"
    assert not win.look(12.0) and cluster.lab.healed == []
    assert not win.look(12.0 + HOLD) and cluster.lab.healed == ["h1"]
    cluster.lab.observer.see(23.0, H2)
    assert not win.look(23.0)
    assert not win.look(28.9)
    assert win.look(29.0) and win.note == "" and win.takeover == pytest.approx(2.0)


def test_a_trial_gives_up_at_the_cap_and_after_lingering() -> None:
    cluster = FakeCluster()
    win = window(cluster, "crash")
    assert not win.look(109.0)
    assert not win.look(110.0) and win.note.startswith("not over within 100")
    assert win.look(110.0 + win.linger)


def test_a_controller_fault_is_over_at_the_takeover_and_waits_for_the_placement() -> None:
    cluster = FakeCluster()
    win = window(cluster, "controller_kill")
    assert not win.look(15.0)
    cluster.leader, cluster.where = "h2", None  # the old placement expired with its controller
    assert not win.look(20.0) and win.takeover == pytest.approx(10.0)
    assert not win.look(27.0)
    cluster.lab.observer.see(28.0, H2)
    cluster.where = "h2"
    assert not win.look(28.0)
    assert win.look(34.0)
