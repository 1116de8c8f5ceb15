"""Size limits the project keeps: no class over 300 lines, no function over 60, no module over 500.

Measured with ``ast`` as ``end_lineno - lineno + 1`` (decorators not counted), over the package; the
module limit also over the Python files of tests/, benchmarks/ and scripts/, but for the few listed
in LEFT_FOR_LATER.
"""

from __future__ import annotations

import ast
from pathlib import Path

import scheduler_failover_controller

PACKAGE = Path(scheduler_failover_controller.__file__).parent
ROOT = Path(__file__).resolve().parents[2]  # the checkout (the package may be installed elsewhere)
OTHER_TREES = ("tests", "benchmarks", "scripts")  # Python beside the package, held to the module limit
MAX_CLASS = 300
MAX_FUNCTION = 60
MAX_MODULE = 500
#: modules of OTHER_TREES still over MAX_MODULE, each with how it is to be split
LEFT_FOR_LATER = {
    "tests/unit/fakes.py": "the shared fakes: to split by what each stands for (clock, store, runner, cluster)",
    "tests/unit/test_controller.py": "the controller's unit tests: to split by the controller step each covers",
    "tests/cli/test_cli.py": "the CLI tests: to split by command group, the Cli helper and SMTP server shared",
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _other_modules() -> list[Path]:
    return sorted(path for tree in OTHER_TREES for path in (ROOT / tree).rglob("*.py"))


def _too_long(paths: list[Path], base: Path = ROOT) -> dict[str, int]:
    """Each module of ``paths`` over MAX_MODULE lines, by its path from ``base``, with its length."""
    lengths = {str(path.relative_to(base)): len(path.read_text(encoding="utf-8").splitlines()) for path in paths}
    return {name: n for name, n in lengths.items() if n > MAX_MODULE}


def _span(node: ast.AST) -> int:
    end = getattr(node, "end_lineno", None)
    start = getattr(node, "lineno", 0)
    return (end or start) - start + 1


def oversized(source: str, where: str) -> list[str]:
    """Each class over MAX_CLASS and function over MAX_FUNCTION lines in ``source``, as 'where:line name (n)'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            limit = MAX_CLASS
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            limit = MAX_FUNCTION
        else:
            continue
        lines = _span(node)
        if lines > limit:
            found.append(f"{where}:{node.lineno} {node.name} ({lines} lines, at most {limit})")
    return found


def test_the_package_is_found() -> None:
    assert len(_modules()) > 50


def test_no_class_or_function_is_too_long() -> None:
    found = []
    for path in _modules():
        found += oversized(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    assert found == []


def test_no_module_is_too_long() -> None:
    long = [
        f"{path.relative_to(PACKAGE.parent)} ({n} lines)"
        for path in _modules()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE
    ]
    assert long == []


def test_no_test_benchmark_or_script_module_is_too_long() -> None:
    paths = _other_modules()
    assert {str(p.relative_to(ROOT)).split("/")[0] for p in paths} == set(OTHER_TREES)
    long = {name: n for name, n in _too_long(paths).items() if name not in LEFT_FOR_LATER}
    assert long == {}, f"modules over {MAX_MODULE} lines (split them by concern): {long}"


def test_each_module_left_for_later_is_still_too_long() -> None:
    """An entry whose module was split (or removed) is dropped from LEFT_FOR_LATER, not kept."""
    long = _too_long([ROOT / name for name in LEFT_FOR_LATER if (ROOT / name).exists()])
    assert sorted(long) == sorted(LEFT_FOR_LATER)


def test_the_module_check_sees_a_long_module(tmp_path: Path) -> None:
    (tmp_path / "short.py").write_text("x = 1\n" * MAX_MODULE)
    (tmp_path / "long.py").write_text("x = 1\n" * (MAX_MODULE + 1))
    paths = sorted(tmp_path.glob("*.py"))
    assert _too_long(paths, tmp_path) == {"long.py": MAX_MODULE + 1}


def test_the_check_sees_a_long_class_and_function() -> None:
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION))
    source = f"class Big:\n    def long(self) -> None:\n{body}\n"
    assert oversized(source, "m.py") == ["m.py:2 long (61 lines, at most 60)"]
    methods = "\n".join(f"    def f{i}(self) -> None:\n        pass\n" for i in range(MAX_CLASS // 3 + 1))
    assert oversized(f"class Big:\n{methods}", "m.py") == ["m.py:1 Big (303 lines, at most 300)"]
