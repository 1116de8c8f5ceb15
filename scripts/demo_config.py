"""Sets the keys that scripts/run.sh's single-host Airflow needs in ``$AIRFLOW_HOME/airflow.cfg``.

Run by scripts/run.sh (with the Airflow virtualenv's Python) after Airflow wrote its default
``airflow.cfg`` and ``sfc init`` appended the documented ``[scheduler_failover]`` section. Each key
is set in place (the first uncommented ``key = ...`` line of its section, or added under the
commented default), so the file keeps its comments and every other key the user set. Only the
keys below are owned by the demo; they are set on every run.

Usage: demo_config.py AIRFLOW_CFG REPO VENV API_PORT HEALTH_PORT
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path


def demo_keys(home: Path, repo: Path, venv: Path, api_port: int, health_port: int) -> dict[str, dict[str, str]]:
    """section -> key -> value. Airflow's sections are read with interpolation: '%' is escaped there."""
    airflow = shlex.quote(str(venv / "bin" / "airflow"))
    pid_file = shlex.quote(str(home / "airflow-scheduler.pid"))

    def esc(value: str) -> str:
        return value.replace("%", "%%")

    return {
        "core": {
            "dags_folder": esc(str(repo / "examples" / "dags")),
            "load_examples": "False",
            "dags_are_paused_at_creation": "False",
            # Airflow 3 runs the LocalExecutor on SQLite (one task at a time is enough here).
            "executor": "LocalExecutor",
            "parallelism": "4",
            # The UI and the public API on loopback only, without a login (a demo).
            "simple_auth_manager_all_admins": "True",
        },
        # The api-server also serves the Execution API that LocalExecutor tasks report to: its
        # URL is derived from base_url.
        "api": {
            "host": "127.0.0.1",
            "port": str(api_port),
            "base_url": f"http://127.0.0.1:{api_port}",
            "workers": "1",
        },
        "scheduler": {
            "enable_health_check": "True",
            "scheduler_health_check_server_host": "127.0.0.1",
            "scheduler_health_check_server_port": str(health_port),
        },
        # Read raw by the controller (no interpolation): no escaping.
        "scheduler_failover": {
            "poll_frequency": "5",
            # The --pid argument (a path in this Airflow home; Airflow 3 writes the file only with
            # -D) makes the match this home's scheduler only: another `airflow scheduler` on this
            # machine is neither adopted nor killed as a stray.
            "scheduler_process_match": f"airflow scheduler --pid {pid_file}",
            "airflow_scheduler_start_command": f"exec {airflow} scheduler --pid {pid_file}",
            "scheduler_start_timeout": "120",
            "scheduler_health_url": f"http://127.0.0.1:{health_port}/health",
        },
    }


_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")


def set_keys(text: str, keys: dict[str, dict[str, str]]) -> str:
    """``text`` with every key set; comments, order and all other keys kept."""
    lines = text.splitlines()
    for section, values in keys.items():
        for key, value in values.items():
            lines = _set_key(lines, section, key, value)
    return "\n".join(lines) + "\n"


def _set_key(lines: list[str], section: str, key: str, value: str) -> list[str]:
    start = next((i for i, line in enumerate(lines) if (m := _SECTION.match(line)) and m.group(1) == section), None)
    if start is None:
        return [*lines, "", f"[{section}]", f"{key} = {value}"]
    end = next((i for i in range(start + 1, len(lines)) if _SECTION.match(lines[i])), len(lines))
    own = re.compile(rf"^{re.escape(key)}\s*[=:]", re.IGNORECASE)
    commented = re.compile(rf"^[#;]\s*{re.escape(key)}\s*[=:]", re.IGNORECASE)
    for i in range(start + 1, end):
        if own.match(lines[i]):
            stop = i + 1  # an indented continuation belongs to the value it replaces
            while stop < end and lines[stop][:1] in (" ", "\t") and lines[stop].strip():
                stop += 1
            return [*lines[:i], f"{key} = {value}", *lines[stop:]]
    at = next((i + 1 for i in range(start + 1, end) if commented.match(lines[i])), start + 1)
    return [*lines[:at], f"{key} = {value}", *lines[at:]]


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print("usage: demo_config.py AIRFLOW_CFG REPO VENV API_PORT HEALTH_PORT", file=sys.stderr)
        return 2
    cfg, repo, venv = (Path(a).absolute() for a in argv[:3])
    ports = []
    for name, raw in (("API port", argv[3]), ("health check port", argv[4])):
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            print(f"demo_config.py: the {name} must be a number from 1 to 65535, not {raw!r}", file=sys.stderr)
            return 2
        ports.append(int(raw))
    try:
        text = cfg.read_text(encoding="utf-8")
        cfg.write_text(set_keys(text, demo_keys(cfg.parent, repo, venv, *ports)), encoding="utf-8")
    except OSError as exc:
        print(f"demo_config.py: {cfg}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
