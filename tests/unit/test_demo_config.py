"""scripts/demo_config.py: the demo's keys set in place in an airflow.cfg, everything else kept."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_config", ROOT / "scripts" / "demo_config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_keys_are_replaced_in_place_added_under_their_comment_or_section_and_sections_appended() -> None:
    text = (
        "[core]\n# The folder\ndags_folder = /old\n  continued\nload_examples = True\nother = kept\n"
        "[scheduler_failover]\n# poll_frequency = 10\nlease_ttl = 40\n"
    )
    out = _module().set_keys(
        text,
        {
            "core": {"dags_folder": "/new", "load_examples": "False", "executor": "LocalExecutor"},
            "scheduler_failover": {"poll_frequency": "5"},
            "api": {"port": "8080"},
        },
    )
    assert out == (
        "[core]\nexecutor = LocalExecutor\n# The folder\ndags_folder = /new\nload_examples = False\nother = kept\n"
        "[scheduler_failover]\n# poll_frequency = 10\npoll_frequency = 5\nlease_ttl = 40\n\n[api]\nport = 8080\n"
    )


def test_the_demo_keys_escape_percent_in_airflows_sections_only_and_rerunning_changes_nothing(tmp_path: Path) -> None:
    module = _module()
    keys = module.demo_keys(tmp_path / "home", Path("/repo 100%"), Path("/venv"), 8080, 8974)
    assert keys["core"]["dags_folder"] == "/repo 100%%/examples/dags"
    home = tmp_path / "home"
    match = keys["scheduler_failover"]["scheduler_process_match"]
    assert match == f"airflow scheduler --pid {home}/airflow-scheduler.pid"
    once = module.set_keys("[core]\n", keys)
    assert module.set_keys(once, keys) == once


def test_a_bad_port_is_refused_and_the_file_left_alone(tmp_path: Path) -> None:
    cfg = tmp_path / "airflow.cfg"
    cfg.write_text("[core]\n")
    assert _module().main([str(cfg), "/repo", "/venv", "80x", "8974"]) == 2
    assert cfg.read_text() == "[core]\n"
