"""Property: every config the loader accepts runs, everything else is one ConfigError line (issue 10).

Hypothesis writes config files (our section spelled right or wrong, keys indented, Airflow's own
sections, values from sane to hostile) and environments (AIRFLOW__SCHEDULER_FAILOVER__* overrides).
Each input must either load into a Config that survives a few controller cycles and renewals with
the fakes (no exception, no INTERNAL ERROR, never two schedulers, every wait and timeout usable by
the standard library), or be refused with a one-line ConfigError, which the CLI prints as one line
with exit code 2. Any other exception is a failure. Bounded: a few seconds in all.
"""

# ruff: noqa: RUF005 - the sample lists below read best as one row per kind of value
from __future__ import annotations

import logging
import os
import socket
import sqlite3
import tempfile
import threading
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler_failover_controller.cli import main
from scheduler_failover_controller.config import CONFIG_ENV, ENV_PREFIX, KEYS, SECTION, Config, load_config
from scheduler_failover_controller.controller.cycle import PLEASE_REPORT, Controller
from scheduler_failover_controller.exceptions import ConfigError
from scheduler_failover_controller.nodes.base import NodeRunner

from .fakes import FakeClock, FakeRunner, FakeStore, RecordingAlerter

HOST = "n1"
TMP = "@TMP@"  # replaced by the example's own temporary directory

NUMBERS = st.sampled_from(
    ["0", "-1", "1e-9", "0.05", "0.1", "0.5", "1", "2", "3", "5", "10", "40", "60", "3600", "86400", "86401"]
    + ["1e15", "1e300", "1e400", "inf", "-inf", "nan", "99999999999999999999", "1_0", " 7 ", "0x10", "", "soon"]
)
GARBAGE = st.lists(
    st.sampled_from(list("ab1 -_./:@%;#'\"\\{}~=\t\n\x00\x7fé*$") + ["{node}", "\n  ", "://"]), max_size=12
).map("".join)
NODE_LISTS = st.sampled_from(
    ["n1", "n1,n2", "n1, n2, n3", "localhost", "n1,n1", "n1,N1", "", ",", "-x", "n1;rm", "a" * 201, "n1,n2\n  n3"]
)
URLS = st.sampled_from(
    ["", "http://127.0.0.1:9/hook", "https://h/x?token=t", "hxxp://x", "http://a b/", "http:///p", "http://h:99999/"]
    + ["http://[::1", "http://{node}:8974/health", "https://é.example/", "ftp://h/", "http://h:x/"]
)
SQL_URLS = st.sampled_from(
    [f"sqlite:///{TMP}/m.db", "sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true"]
    + ["sqlite:///rel.db", f"sqlite:///{TMP}/file/x.db", f"sqlite:///{TMP}", "mysql+pymysql://u:p@db.invalid/x"]
    + ["postgresql://u@db.invalid:x/y", "nonsense", "mysql+mysqldb://u@h/x", "sqlite+pysqlite:///" + TMP + "/p.db"]
)
PATHS = st.sampled_from([f"{TMP}/state", f"{TMP}/file", f"{TMP}/file/sub", "relative/dir", "~nosuchuser_sfc/x", ""])


def _value(key: str) -> st.SearchStrategy[str]:
    """Values for ``key``: mostly ones of its kind, sometimes anything."""
    kind: st.SearchStrategy[str]
    if key in ("scheduler_nodes_in_cluster", "local_nodes"):
        kind = NODE_LISTS
    elif key == "current_host":  # never empty: the CLI would then use this machine's host name
        return st.sampled_from(["n1", "n2", "localhost", "zz", "n1 ", "-n1", "n1\n  n2"])
    elif key.endswith("_url"):
        kind = URLS
    elif key == "metadata_service_sql_conn":
        kind = SQL_URLS
    elif key in ("state_dir", "logging_dir"):
        kind = PATHS
    elif key == "logging_file_name":
        kind = st.sampled_from(["sfc.log", "", "a/b", "..", "file", "x" * 300])
    elif key == "scheduler_process_match":
        kind = st.sampled_from(["fake_scheduler --node {node}", "airflow scheduler", "'", "''", "", "a {node}"])
    elif key == "metadata_service_type":
        kind = st.sampled_from(["sql", "zookeeper", "SQLMetadataService", "other"])
    elif key.endswith("_command"):
        kind = st.sampled_from(["", "true", "echo a;; echo b", "echo 'x", "true\n  false"])
    else:
        kind = NUMBERS
    return st.one_of(kind, kind, kind, GARBAGE)


@st.composite
def inputs(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    """A config file's text and an environment (both with ``TMP`` placeholders)."""
    keys: dict[str, str] = {
        "scheduler_nodes_in_cluster": draw(st.sampled_from(["n1", "n1,n2", "n1,n2,n3"])),
        "current_host": HOST,
        "state_dir": f"{TMP}/state",
        "scheduler_process_match": "fake_scheduler --node {node}",
        "poll_frequency": "1",
        "lease_ttl": "5",
    }
    if keys["scheduler_nodes_in_cluster"] != "n1":
        keys["metadata_service_sql_conn"] = "mysql+pymysql://sfc@metastore.invalid/sfc"  # never connected
    changed = draw(st.lists(st.sampled_from(sorted(KEYS)), max_size=5, unique=True))
    for key in changed:
        keys[key] = draw(_value(key))
    in_env = draw(st.sets(st.sampled_from(sorted(keys)), max_size=3))
    env = {"AIRFLOW_HOME": TMP}
    for key in in_env:
        value = keys.pop(key)
        if "\x00" not in value:  # no environment can hold a NUL
            env[ENV_PREFIX + key.upper()] = value
    if draw(st.integers(0, 9)) == 0:
        env[ENV_PREFIX + "NO_SUCH_KEY"] = "1"
    header = draw(st.sampled_from([SECTION] * 8 + ["SCHEDULER_FAILOVER", "scheduler-failover", " scheduler_failover"]))
    separator = draw(st.sampled_from([" = ", "=", ": "]))
    lines = [f"[{header}]"] if draw(st.integers(0, 19)) else []
    lines += [f"{key}{separator}{value}" for key, value in keys.items()]
    if len(lines) > 2 and draw(st.integers(0, 5)) == 0:
        at = draw(st.integers(2, len(lines) - 1))
        lines[at] = "  " + lines[at]  # an indented line: joined to the previous key's value
    extra = draw(
        st.sampled_from(
            ["", "[core]\nsql_alchemy_conn = sqlite:////tmp/airflow.db", "[database]\nsql_alchemy_conn = %(x)s"]
            + ["[smtp]\nsmtp_port = 0", "[smtp]\nsmtp_timeout = 1e400\nsmtp_password = p%%w", "[smtp]\nsmtp_host = h"]
        )
    )
    return "\n".join(lines) + "\n" + extra + "\n", env


class _Internal(logging.Handler):
    """Records every INTERNAL ERROR the controller logs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if PLEASE_REPORT in record.getMessage():
            self.seen.append(record.getMessage())


def _runs(config: Config) -> None:
    """A few cycles and renewals of one controller with the fakes; every timeout usable."""
    for seconds in (
        config.poll_frequency,
        config.lease_ttl,
        config.metastore_timeout,
        config.renew_interval,
        config.scheduler_start_timeout,
        config.scheduler_stop_timeout,
        config.ssh_timeout,
        config.move_backoff * 8,
        config.smtp.timeout,
    ):
        assert 0 < seconds <= threading.TIMEOUT_MAX, seconds
        with socket.socket() as sock:
            sock.settimeout(seconds)  # OverflowError for a value no socket takes
    sqlite3.connect(":memory:", timeout=config.metastore_timeout).close()
    threading.Event().wait(min(config.renew_interval, 0.0))
    clock = FakeClock()
    store = FakeStore(clock=clock)
    actions: list[tuple[str, str]] = []
    runners: dict[str, NodeRunner] = {node: FakeRunner(node, actions=actions) for node in config.nodes}
    controller = Controller(
        config, store, runners, RecordingAlerter(config), monotonic=clock.monotonic, sleep=clock.sleep, pid=1
    )
    handler = _Internal()
    logger = logging.getLogger("scheduler_failover_controller")
    logger.addHandler(handler)
    try:
        store.setup()
        for _ in range(4):
            controller.run_cycle()
            clock.advance(config.renew_interval)
            controller.renew()
            clock.advance(config.poll_frequency)
            running = [n for n, r in runners.items() if isinstance(r, FakeRunner) and r.running]
            assert len(running) <= 1, running
        controller.shutdown()
    finally:
        logger.removeHandler(handler)
        controller._pool.shutdown(wait=True)
        controller._renewal_pool.shutdown(wait=True)
    assert not handler.seen, handler.seen


def _clean_env(env: dict[str, str]) -> dict[str, str | None]:
    """``env`` for CliRunner, with every inherited variable the loader reads removed."""
    inherited: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith(("AIRFLOW", CONFIG_ENV)) or name == CONFIG_ENV
    }
    return {**inherited, **env}


@settings(
    max_examples=int(os.environ.get("SFC_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("SFC_PROPERTY_RANDOM") != "1",  # CI: the same examples every run
)
@given(inputs())
def test_every_config_runs_or_is_one_config_error(case: tuple[str, dict[str, str]]) -> None:
    template, env_template = case
    with tempfile.TemporaryDirectory(prefix="sfc-prop-") as tmp:
        (Path(tmp) / "file").write_text("a file, not a directory\n")
        text = template.replace(TMP, tmp)
        env = {name: value.replace(TMP, tmp) for name, value in env_template.items()}
        path = Path(tmp) / "sfc.cfg"
        path.write_text(text, encoding="utf-8")
        try:
            config: Config | None = load_config(str(path), env=env, hostname=lambda: HOST)
        except ConfigError as exc:
            message = str(exc)
            assert message and "\n" not in message and "Traceback" not in message, message
            config = None
        result = CliRunner().invoke(main, ["--config", str(path), "get_current_host"], env=_clean_env(env))
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        out = [line for line in result.output.splitlines() if line.strip()]
        if config is None:
            assert result.exit_code == 2 and len(out) == 1 and out[0].startswith("Error: "), result.output
        else:
            assert result.exit_code == 0 and out == [config.current_host], result.output
            _runs(config)
