"""The CI lanes (scripts/lanes.sh) together run every test directory, and the split keeps them short.

The lanes are read from a dry run of the real script: each pytest run it would start, per lane.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ["lab", "py3.13-process", "py3.9-process", "process", "main", "py3.13", "py3.9", "process-servers", "e2e"]


Lanes = dict[str, list[tuple[str, list[str]]]]


@pytest.fixture(scope="module")
def lanes(tmp_path_factory: pytest.TempPathFactory) -> Lanes:
    """Lane name -> its pytest runs as (virtualenv, arguments), from a dry run of the default lanes."""
    tmp_path = tmp_path_factory.mktemp("lanes")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFC_LANE")}
    # The time bound also ends the lanes (cleanly) should the dry run ever run them for real.
    env.update(SFC_LANES_DRY_RUN="1", SFC_LANE_LOGS=str(tmp_path), SFC_LANE_TIMEOUT="20")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "lanes.sh")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lanes: Lanes = {}
    for name in DEFAULT:
        runs = []
        for line in (tmp_path / f"{name}.log").read_text().splitlines():
            if line.startswith("dry run: "):
                venv, *args = shlex.split(line[len("dry run: ") :])
                runs.append((venv, args))
        lanes[name] = runs
    return lanes


def _directories(args: list[str]) -> set[str]:
    """The test directories a pytest run on these arguments covers (paths less --ignore)."""
    paths = [a for a in args if a.startswith("tests")]
    ignored = {a.split("=", 1)[1] for a in args if a.startswith("--ignore=")}
    covered: set[str] = set()
    for path in paths:
        if path == "tests":
            covered |= {f"tests/{d.name}" for d in (ROOT / "tests").iterdir() if any(d.glob("test_*.py"))}
        else:
            covered.add("/".join(path.split("/")[:2]))
    return covered - ignored


def _keyword(args: list[str]) -> str:
    return args[args.index("-k") + 1] if "-k" in args else ""


def test_the_lanes_on_3_11_run_every_test_directory_once_and_the_process_tier_apart(lanes: Lanes) -> None:
    assert all(lanes[name] for name in DEFAULT), lanes
    seen: list[str] = []
    for name, runs in lanes.items():
        for venv, args in runs:
            if venv == ".venv":
                assert args[args.index("-m") + 1] == "not manual", (name, args)  # the CI tier, all of it
                if name not in ("process", "process-servers"):
                    assert not _keyword(args), (name, args)
                    seen += sorted(_directories(args))
    # The real-process tier, the longest part of 3.11, is two lanes apart from main: the one
    # selects exactly what the other leaves out.
    (process,), (servers,) = lanes["process"], lanes["process-servers"]
    assert _directories(process[1]) == _directories(servers[1]) == {"tests/process"}
    assert _keyword(process[1]) == f"not ({_keyword(servers[1])})" and _keyword(servers[1]), (process, servers)
    seen.append("tests/process")
    every = sorted(f"tests/{d.name}" for d in (ROOT / "tests").iterdir() if any(d.glob("test_*.py")))
    assert sorted(seen) == every, "each test directory once on 3.11"


def test_the_oldest_and_newest_python_run_unit_cli_contract_and_the_process_tier(lanes: Lanes) -> None:
    for name in ("py3.9", "py3.13"):
        runs = lanes[name] + lanes[f"{name}-process"]
        covered = set().union(*(_directories(a) for v, a in runs if v == f".venv-{name}"))
        assert covered == {"tests/unit", "tests/cli", "tests/contract", "tests/process"}, (name, runs)
        # The real-process tier, the longer half, is a lane of its own, so that lanes pack evenly.
        assert {d for v, a in lanes[f"{name}-process"] for d in _directories(a)} == {"tests/process"}
