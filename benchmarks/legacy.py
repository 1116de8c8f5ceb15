"""The 2016 Airflow Scheduler Failover Controller beside this one, in the same lab (by hand, as root).

    .venv/bin/python benchmarks/legacy.py --legacy-checkout PATH [--legacy-python PYTHON]
        [--controllers 2016,ours] [--settings same,defaults] [--faults kill,crash,partition,controller_kill,graceful]
        [--trials 3] [--default-trials N] [--node-control self|ssh] [--out FILE.jsonl]
    .venv/bin/python benchmarks/legacy.py --summarize FILE.jsonl      (the table again, no lab)

PATH is a checkout of teamclairvoyant/airflow-scheduler-failover-controller at v1.0.9 (never part
of this project: ``git clone`` it and ``git checkout v1.0.9``, or unpack its tag). It runs as it
is, by PYTHON (default: .venv-airflow2's), which needs apache-airflow (the 2016 code imports
Airflow's configuration and email backend; Airflow 2 runs it unchanged), kazoo and six.

Three lab hosts (tests/lab/harness.py: own network/PID/UTS/mount namespaces with sshd) around
MariaDB on 198.18.0.2, the stand-in scheduler (tests/support/fake_scheduler.py) and the lab's
50 ms observer; a fresh lab per trial; the scheduler and the active controller on h1 at the
fault. Faults (on h1):

  kill             SIGKILL of the scheduler
  crash            every process of h1 killed at once (its PID 1)
  partition        h1's link down until a scheduler runs elsewhere, 10 s more, then up again
  controller_kill  SIGKILL of the active controller (the scheduler stays)
  graceful         SIGTERM of the active controller (the 2016 one has no handler: it dies)

Settings: ``same`` runs both at poll_frequency 1 s (this one with lease_ttl 10 s); ``defaults``
runs each at its own defaults (the 2016 poll_frequency 60 s; this one's registry defaults).
Everything else of this controller is at its defaults (node_control self unless --node-control).
The 2016 controller uses its own stop command and SSH (``ssh -o StrictHostKeyChecking=no``).
Trials alternate controller and fault, so that the machine's load falls on both alike.
Prints, per fault and measure, median / max over the trials (seconds; see legacy_trials.py for
the measures) and saves every trial to --out as it ends (--summarize prints the table again).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.legacy_trials import FAULTS, Trial, load, record, run_trial, table  # noqa: E402
from scheduler_failover_controller.config import KEYS  # noqa: E402

if TYPE_CHECKING:
    from benchmarks.legacy_cluster import Cluster
    from tests.conftest import MariaDB
    from tests.lab.network import Network

LEGACY_DEFAULT_POLL = 60  # the 2016 controller's DEFAULT_POLL_FREQUENCY
SAME_POLL, SAME_LEASE = 1, 10
# Files a v1.x checkout of the 2016 controller has; their absence means the path is something else.
LEGACY_FILES = (
    "scheduler_failover_controller/failover/failover_controller.py",
    "scheduler_failover_controller/metadata/sql_metadata_service.py",
    "scheduler_failover_controller/command_runner/command_runner.py",
    "scheduler_failover_controller/bin/scheduler_failover_controller",
)
NEEDED_MODULES = ("airflow", "kazoo", "six", "sqlalchemy", "requests")


def checkout_problem(path: str | None) -> str | None:
    """Why ``path`` is not a usable checkout of the 2016 controller (None: it is)."""
    if not path:
        return (
            "no 2016 controller to run: pass --legacy-checkout PATH (or set SFC_LEGACY_CHECKOUT), a checkout "
            "of teamclairvoyant/airflow-scheduler-failover-controller at v1.0.9"
        )
    where = Path(path)
    if not where.is_dir():
        return f"--legacy-checkout {path}: no such directory"
    for name in LEGACY_FILES:
        if not (where / name).is_file():
            return f"--legacy-checkout {path}: not a checkout of the 2016 controller (no {name})"
    if "SCHEDULER_RESTART_SLEEP_TIME" not in (where / LEGACY_FILES[0]).read_text(errors="replace"):
        return f"--legacy-checkout {path}: {LEGACY_FILES[0]} is not the 2016 controller's (v1.0.9 expected)"
    return None


def python_problem(python: Path) -> str | None:
    """Why ``python`` cannot run the 2016 controller (None: it can)."""
    if not os.access(python, os.X_OK):
        return f"--legacy-python {python}: no such interpreter (a Python with apache-airflow, kazoo and six)"
    probe = (
        "import importlib, sys\n"
        "for m in sys.argv[1:]:\n"
        "    try: importlib.import_module(m)\n"
        "    except Exception: print(m); break\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "AIRFLOW"))}
    try:
        with tempfile.TemporaryDirectory(prefix="sfc-legacy-probe-") as home:
            env["AIRFLOW_HOME"] = home  # importing Airflow writes a default config into its home
            done = subprocess.run(
                [str(python), "-c", probe, *NEEDED_MODULES],
                capture_output=True,
                text=True,
                timeout=180,
                env=env,
                stdin=subprocess.DEVNULL,
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"--legacy-python {python}: could not run it ({exc.__class__.__name__})"
    missing = done.stdout.strip()
    if done.returncode != 0 or missing:
        what = missing or "its modules"
        return f"--legacy-python {python}: cannot import {what} (needs apache-airflow, kazoo and six)"
    return None


def default_python() -> Path:
    venv = os.environ.get("SFC_AIRFLOW2_VENV") or str(ROOT / ".venv-airflow2")
    return Path(venv) / "bin" / "python"


def ours_settings(which: str, node_control: str) -> dict[str, str]:
    """This controller's config for ``same`` or ``defaults`` (the lab's own timing replaced)."""
    settings = {key: KEYS[key].default or "" for key in ("poll_frequency", "lease_ttl", "scheduler_start_timeout")}
    if which == "same":
        settings.update(poll_frequency=str(SAME_POLL), lease_ttl=str(SAME_LEASE))
    settings["node_control"] = node_control
    return settings


def columns(controllers: list[str], settings: list[str]) -> list[tuple[str, str, str]]:
    ours_default = ours_settings("defaults", "self")
    titles = {
        ("2016", "same"): f"2016, poll {SAME_POLL}",
        ("ours", "same"): f"this, poll {SAME_POLL} lease {SAME_LEASE}",
        ("2016", "defaults"): f"2016, defaults (poll {LEGACY_DEFAULT_POLL})",
        ("ours", "defaults"): (
            f"this, defaults (poll {ours_default['poll_frequency']} lease {ours_default['lease_ttl']})"
        ),
    }
    return [(c, s, titles[(c, s)]) for s in settings for c in controllers]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legacy-checkout", default=os.environ.get("SFC_LEGACY_CHECKOUT", ""), metavar="PATH")
    parser.add_argument("--legacy-python", type=Path, default=None, metavar="PYTHON")
    parser.add_argument("--controllers", default="2016,ours")
    parser.add_argument("--settings", default="same,defaults")
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--trials", type=int, default=3, help="trials per fault at the same settings")
    parser.add_argument("--default-trials", type=int, default=None, help="trials per fault at the defaults")
    parser.add_argument("--node-control", choices=("self", "ssh"), default=KEYS["node_control"].default)
    parser.add_argument("--out", type=Path, default=None, help="append every trial here (JSON lines)")
    parser.add_argument("--summarize", type=Path, default=None, metavar="FILE", help="print the table of saved trials")
    return parser.parse_args(argv)


def split(text: str, known: list[str], what: str) -> list[str]:
    picked = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in picked if x not in known]
    if bad or not picked:
        sys.exit(f"{what}: unknown {bad[0]!r} (choose from {', '.join(known)})" if bad else f"{what}: none given")
    return picked


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    controllers = split(args.controllers, ["2016", "ours"], "--controllers")
    settings = split(args.settings, ["same", "defaults"], "--settings")
    faults = split(args.faults, list(FAULTS), "--faults")
    if args.summarize is not None:
        if not args.summarize.is_file():
            sys.exit(f"--summarize {args.summarize}: no such file")
        print(table(load(args.summarize), columns(controllers, settings)))
        return
    python = args.legacy_python or default_python()
    if "2016" in controllers:
        problem = checkout_problem(args.legacy_checkout) or python_problem(python)
        if problem:
            sys.exit(problem)
    if args.trials < 1 or (args.default_trials is not None and args.default_trials < 1):
        sys.exit("--trials and --default-trials must be at least 1")
    if os.geteuid() != 0:
        sys.exit("the lab needs root (network, PID and UTS namespaces)")
    trials = run(args, controllers, settings, faults, python)
    print_header(args, python)
    print(table(trials, columns(controllers, settings)))


def run(
    args: argparse.Namespace, controllers: list[str], settings: list[str], faults: list[str], python: Path
) -> list[Trial]:
    # The lab only now: the checks above answer at once, without it.
    from tests.lab.sites import network_with_mariadb

    checkout = Path(args.legacy_checkout).resolve() if "2016" in controllers else Path()
    done: list[Trial] = []
    with network_with_mariadb() as (net, db):
        for which in settings:
            count = args.trials if which == "same" or args.default_trials is None else args.default_trials
            for i in range(count):
                for fault in faults:
                    for controller in controllers:
                        cluster = build(controller, which, args, net, db, checkout, python)
                        trial: Trial | None = None
                        try:
                            trial = run_trial(cluster, controller, which, fault)
                        except Exception as exc:  # noqa: BLE001 - a failed boot: keep its logs, go on
                            trial = Trial(controller, which, fault, None, 0.0, 0.0, None, note=f"failed: {exc}"[:300])
                        finally:
                            with contextlib.suppress(Exception):
                                cluster.close(keep=trial is not None and bool(trial.note))
                        if trial.note:
                            print(f"  kept {cluster.lab.dir}", file=sys.stderr)
                        done.append(trial)
                        record(trial, args.out)
                        print(
                            f"{which} {controller} {fault} trial {i + 1}/{count}: recovery {trial.recovery} "
                            f"two {trial.two:.2f} none {trial.outage:.2f} takeover {trial.takeover} {trial.note}",
                            file=sys.stderr,
                            flush=True,
                        )
    return done


def build(
    controller: str, which: str, args: argparse.Namespace, net: Network, db: MariaDB, checkout: Path, python: Path
) -> Cluster:
    """A fresh lab for one trial; its set-up tried up to three times (the lab's own reader of a
    server that a long trial left busy can miss its 2 s deadline: no trial has begun then)."""
    from benchmarks.legacy_cluster import Legacy, Ours
    from scheduler_failover_controller.exceptions import MetastoreError
    from tests.lab.sites import MariaDBSite

    for attempt in range(3):
        site = MariaDBSite(db, net)
        try:
            if controller == "2016":
                poll = SAME_POLL if which == "same" else LEGACY_DEFAULT_POLL
                return Legacy(net, db, site, checkout, python, poll)
            return Ours(net, site, ours_settings(which, args.node_control))
        except MetastoreError as exc:
            if attempt == 2:
                raise
            print(f"  lab set-up failed ({exc}); again", file=sys.stderr, flush=True)
    raise AssertionError("unreachable")


def print_header(args: argparse.Namespace, python: Path) -> None:
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    cores = os.cpu_count()
    print(f"machine: {platform.node()} {platform.machine()}, {cores} cores, Python {platform.python_version()}")
    print(f"this controller: {commit or 'unknown commit'}, node_control {args.node_control}")
    print(f"2016 controller: {args.legacy_checkout} run by {python}")
    print("lab: 3 hosts in namespaces, MariaDB on 198.18.0.2, stand-in scheduler, 50 ms observer")
    print("cells: median / max (seconds)")
    print()


if __name__ == "__main__":
    main()
