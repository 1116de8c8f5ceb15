"""The command line's test helpers: ``Cli`` runs a command through click's CliRunner with a config and
a sqlite metastore under tmp_path, an environment cleared of SCHEDULER_FAILOVER_CONTROLLER_CONFIG and
AIRFLOW__*, and AIRFLOW_HOME at a tmp dir; the rest check what a command printed."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import Result

from scheduler_failover_controller.cli import main
from scheduler_failover_controller.config import CONFIG_ENV
from scheduler_failover_controller.metastore.sql import SQLMetastore
from tests.support.clirunner import cli_runner

HOST = "node-a"
ENV = "AIRFLOW__SCHEDULER_FAILOVER__"
ENTRY_POINT = "from scheduler_failover_controller.cli import run; run()"
NO_MATCH = f"no_such_scheduler_{uuid.uuid4().hex[:12]}"  # matches no process on this machine


def render(keys: Mapping[str, str | None], extra: str = "") -> str:
    lines = ["[scheduler_failover]"]
    lines += [f"{key} = {value}" for key, value in keys.items() if value is not None]
    return "\n".join(lines) + "\n" + (f"\n{extra.strip()}\n" if extra else "")


@dataclass
class Cli:
    """Runs the CLI with a clean environment and (by default) ``--config`` pointing at ``config``."""

    tmp_path: Path
    home: Path
    config: Path
    env: dict[str, str | None] = field(default_factory=dict)

    def write(self, extra: str = "", path: Path | None = None, **keys: str | None) -> Path:
        """(Re)write a config: one node ``node-a``, sqlite under tmp_path, a process match that matches nothing."""
        return self.write_keys(keys, extra, path)

    def write_keys(self, keys: Mapping[str, str | None], extra: str = "", path: Path | None = None) -> Path:
        base: dict[str, str | None] = {
            "scheduler_nodes_in_cluster": HOST,
            "current_host": HOST,
            "state_dir": str(self.tmp_path / "state"),
            "metadata_service_sql_conn": f"sqlite:///{self.tmp_path / 'state' / 'metastore.db'}",
            "scheduler_process_match": NO_MATCH,
            "poll_frequency": "1",
            "lease_ttl": "5",
        }
        base.update(keys)
        target = path or self.config
        target.write_text(render(base, extra), encoding="utf-8")
        return target

    def __call__(
        self, *args: str, config: Path | str | None = "default", stdin: str | None = None, **env: str | None
    ) -> Result:
        argv = list(args)
        if config == "default":
            argv = ["--config", str(self.config), *argv]
        elif config is not None:
            argv = ["--config", str(config), *argv]
        return cli_runner().invoke(main, argv, env={**self.env, **env}, input=stdin)

    def store(self, url: str | None = None) -> SQLMetastore:
        store = SQLMetastore(url or f"sqlite:///{self.tmp_path / 'state' / 'metastore.db'}", 2.0)
        store.setup()
        return store


CLOSED_DB = "mysql+pymysql://u:p@127.0.0.1:1/x"  # a shared-DB URL for multi-host configs that never connect


def make_cli(tmp_path: Path, **keys: str | None) -> Cli:
    """A Cli in ``tmp_path`` with an empty Airflow home, no AIRFLOW__ variables, and a config."""
    home = tmp_path / "airflow_home"
    home.mkdir()
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("AIRFLOW__")}
    env.update({CONFIG_ENV: None, "AIRFLOW_HOME": str(home)})
    runner = Cli(tmp_path=tmp_path, home=home, config=tmp_path / "sfc.cfg", env=env)
    runner.write_keys(keys)
    return runner


def lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def assert_one_error_line(result: Result, code: int, *needles: str) -> str:
    """The command failed with ``code`` and printed exactly one line: 'Error: ...' with the needles."""
    assert_no_traceback(result)
    assert result.exit_code == code, result.output
    out = lines(result)
    assert len(out) == 1, result.output
    assert out[0].startswith("Error:"), out[0]
    for needle in needles:
        assert needle in out[0], f"{needle!r} not in {out[0]!r}"
    return out[0]


def as_json(result: Result) -> object:
    return json.loads(result.stdout)
