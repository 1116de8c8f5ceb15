"""Python 3.9 to 3.13: every module imports, and no code uses what the oldest of them lacks.

The matrix lanes of scripts/test.sh run the tests on 3.9 and 3.13 too; the source scan below also
catches a newer construct on a path no test reaches, and on the 3.11 lane before the others.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import scheduler_failover_controller
from scheduler_failover_controller.strenum import StrEnum

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("scheduler_failover_controller", "tests", "benchmarks", "scripts", "examples")


def _modules() -> list[str]:
    package = scheduler_failover_controller
    found = pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    return [info.name for info in found if not info.name.endswith(".__main__")]  # __main__ runs the CLI


@pytest.mark.parametrize("module", _modules())
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_version_command_runs_in_a_fresh_interpreter() -> None:
    """The whole CLI imports and runs on this interpreter (the matrix lanes: 3.9 and 3.13)."""
    found = subprocess.run(
        [sys.executable, "-m", "scheduler_failover_controller", "version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == scheduler_failover_controller.__version__


class Colour(StrEnum):
    RED = "red"


def test_str_enum_is_its_value_everywhere() -> None:
    """``str()``, f-strings, ``format`` and JSON give the value on every Python (3.12 changed mixins' format)."""
    assert str(Colour.RED) == f"{Colour.RED}" == format(Colour.RED, "") == "red"
    assert f"{Colour.RED:>5}" == "  red"
    assert json.dumps({"c": Colour.RED}) == '{"c": "red"}'
    assert isinstance(Colour.RED, str) and Colour.RED.upper() == "RED" and Colour("red") is Colour.RED


# --- the source scan ----------------------------------------------------------------------------


def _python_files() -> Iterator[Path]:
    for top in SOURCES:
        yield from sorted((ROOT / top).rglob("*.py"))


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside annotations (never evaluated: every module imports ``annotations``)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        roots: list[ast.AST | None] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            roots.append(node.returns)
        elif isinstance(node, (ast.arg, ast.AnnAssign)):
            roots.append(node.annotation)
        for root in roots:
            if root is not None:
                inside.update(id(n) for n in ast.walk(root))
    return inside


def _newer_than_39(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) for each construct that Python 3.9 lacks."""
    annotations = _annotation_nodes(tree)
    subscripted: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            subscripted.update(id(n) for n in ast.walk(node.slice))
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if type(node).__name__ in ("Match", "TryStar"):
            yield line, f"`{type(node).__name__}` statement (3.10/3.11)"
        elif isinstance(node, ast.Attribute) and node.attr in ("StrEnum", "UTC", "Self"):
            yield line, f"`.{node.attr}` (3.11)"
        elif isinstance(node, ast.ImportFrom) and node.module in ("enum", "datetime", "typing"):
            for alias in node.names:
                if alias.name in ("StrEnum", "UTC", "Self"):
                    yield line, f"`from {node.module} import {alias.name}` (3.11)"
        elif isinstance(node, ast.Call):
            words = {k.arg for k in node.keywords}
            callee = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if callee == "zip" and "strict" in words:
                yield line, "`zip(strict=...)` (3.10)"
            if callee == "dataclass" and words & {"slots", "kw_only"}:
                yield line, "`dataclass(slots=/kw_only=)` (3.10)"
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and id(node) not in annotations:
            operands = (node.left, node.right)
            if id(node) in subscripted or any(isinstance(o, ast.Constant) and o.value is None for o in operands):
                yield line, "`X | Y` of types evaluated at run time (3.10)"


def test_no_code_needs_a_python_newer_than_3_9() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in _python_files()
        for line, what in _newer_than_39(ast.parse(path.read_text(), str(path)))
    ]
    assert found == []


@pytest.mark.parametrize(
    "source",
    [
        "import enum\nclass A(enum.StrEnum):\n    X = 'x'\n",
        "list(zip(a, b, strict=True))\n",
        "from typing import Callable\nCheck = Callable[[], tuple[str | None, bool]]\n",
        "Alias = int | None\n",
        "from datetime import UTC\n",
        "from dataclasses import dataclass\n@dataclass(slots=True)\nclass A:\n    x: int\n",
    ],
)
def test_the_scan_finds_each_kind(source: str) -> None:
    assert list(_newer_than_39(ast.parse(source)))


def test_the_scan_leaves_annotations_and_numbers_alone() -> None:
    source = "def f(x: int | None, y: list[str | None]) -> dict[str, int] | None:\n    z: int | None = 3 | 4\n"
    assert list(_newer_than_39(ast.parse(source))) == []
