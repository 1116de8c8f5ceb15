"""Releases of this project for the upgrade lab: a commit installed in a virtualenv of its own,
or the working tree (the virtualenv running the tests, which has it installed editable).

A release's virtualenv is built once from ``git archive COMMIT`` with the tests' own Python (the
same interpreter, so the same version as the new release) and ``pip install DIR`` (not editable:
nothing of it reads this checkout), and kept under ``$SFC_UPGRADE_CACHE`` (default
``/var/cache/sfc-upgrade-lab``), one directory per commit and Python version, so that a re-run
costs nothing. A build is marked complete last, so a killed build
leaves nothing that passes for a release (the next run builds it again).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.lab.tools import ROOT, VENV_BIN

CACHE_ENV = "SFC_UPGRADE_CACHE"
DEFAULT_CACHE = "/var/cache/sfc-upgrade-lab"
NEW = "new"  # the working tree's name as a release

# The starting points the upgrade lab runs from (README, "Rolling upgrades"): the commit and
# the node_control its cluster runs with.
STARTING_POINTS = {
    "ac729e4": "ssh",  # the last release before one actor per node: ssh mode only
    "bba5d34": "self",  # the release before day-2 operations: self mode, its default
}

# Listing a release's keys and commands: run by the release's own Python, reading nothing else.
_DESCRIBE = (
    "import json, click\n"
    "from scheduler_failover_controller.config import KEYS\n"
    "from scheduler_failover_controller.cli import main\n"
    "ctx = click.Context(main)\n"
    "names = [n for n in main.list_commands(ctx) if not main.get_command(ctx, n).hidden]\n"
    "print(json.dumps({'keys': sorted(KEYS), 'commands': names}))\n"
)


@dataclass(frozen=True)
class Release:
    """One installed release: its name (a commit, or ``new``), its virtualenv, its config keys
    and its CLI commands (as its ``--help`` lists them, hidden ones left out)."""

    name: str
    venv: Path
    keys: frozenset[str]
    commands: tuple[str, ...]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def _describe(name: str, venv: Path) -> Release:
    # -I: neither PYTHONPATH nor the current directory may put another release's code first.
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", _DESCRIBE],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        cwd="/",
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"release {name} in {venv}: cannot list its keys and commands: {done.stderr.strip()}")
    found = json.loads(done.stdout)
    return Release(name, venv, frozenset(found["keys"]), tuple(found["commands"]))


def working_tree() -> Release:
    """The new release: this checkout, installed editable in the tests' virtualenv."""
    return _describe(NEW, VENV_BIN.parent)


def installed(commit: str) -> Release:
    """The release at ``commit`` in its cached virtualenv, built first if it is not there yet."""
    if not re.fullmatch(r"[0-9a-f]{7,40}", commit):
        raise ValueError(f"not a commit: {commit!r}")
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = base / f"{commit}-py{sys.version_info[0]}.{sys.version_info[1]}"
    with (base / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once build it once
        if not (target / "complete").exists():
            _build(commit, target)
    return _describe(commit, target / "venv")


def _build(commit: str, target: Path) -> None:
    """``git archive COMMIT`` unpacked in ``target/source``, and ``target/venv`` with it installed.

    Built in place (a virtualenv's scripts name its path), and marked ``complete`` last."""
    shutil.rmtree(target, ignore_errors=True)
    source, venv = target / "source", target / "venv"
    source.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, timeout=120, check=True)
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, timeout=120, check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], timeout=300, check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(source)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if pip.returncode != 0:
        raise RuntimeError(f"pip install of {commit} failed: {pip.stderr.strip()[-2000:]}")
    (target / "complete").write_text(f"{commit}\n")
