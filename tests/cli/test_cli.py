"""The command line (README, Command line) through click's CliRunner, with a sqlite metastore under tmp_path.

The environment is cleared of SCHEDULER_FAILOVER_CONTROLLER_CONFIG and AIRFLOW__* and AIRFLOW_HOME
points at a tmp dir. Network use is limited to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import Result

from scheduler_failover_controller import __version__
from scheduler_failover_controller.cli import main
from scheduler_failover_controller.config import CONFIG_ENV, load_config
from scheduler_failover_controller.metastore.base import ControllerInfo, Observation
from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.metastore.sql import SQLMetastore
from tests.support.clirunner import cli_runner
from tests.support.ports import free_port

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


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return make_cli(tmp_path)


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


# --- bad configuration: exit 2, one line, no traceback -----------------------------------------

BAD_CONFIGS: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
    ("unknown-key", {"frobnicate": "1"}, ("frobnicate",)),
    ("bad-number", {"poll_frequency": "ten"}, ("poll_frequency",)),
    ("negative-number", {"lease_ttl": "-40"}, ("lease_ttl",)),
    ("zero-number", {"poll_frequency": "0"}, ("poll_frequency",)),
    ("empty-node-list", {"scheduler_nodes_in_cluster": ""}, ("scheduler_nodes_in_cluster",)),
    ("node-twice", {"scheduler_nodes_in_cluster": "node-a,node-b,node-a"}, ("scheduler_nodes_in_cluster",)),
    ("node-metachar", {"scheduler_nodes_in_cluster": "node-a,b;reboot"}, ("scheduler_nodes_in_cluster",)),
    ("node-parenthesis", {"scheduler_nodes_in_cluster": "node-a,node(1)"}, ("scheduler_nodes_in_cluster",)),
    ("current-not-listed", {"scheduler_nodes_in_cluster": "node-b"}, ("current_host",)),
    ("lease-too-short", {"poll_frequency": "10", "lease_ttl": "12", "metastore_timeout": "5"}, ("lease_ttl",)),
    ("stop-timeout-too-long", {"scheduler_stop_timeout": "4"}, ("scheduler_stop_timeout",)),
    ("ssh-timeout-too-long", {"ssh_timeout": "4"}, ("ssh_timeout",)),
    ("bad-logging-level", {"logging_level": "chatty"}, ("logging_level",)),
    ("bad-ssh-policy", {"ssh_host_key_policy": "accept"}, ("ssh_host_key_policy",)),
    ("sql-conn-not-a-url", {"metadata_service_sql_conn": "localhost"}, ("metadata_service_sql_conn",)),
    (
        "sql-conn-bad-port",
        {"metadata_service_sql_conn": "mysql+pymysql://u:pw@h:port/x"},
        ("metadata_service_sql_conn",),
    ),
    ("unbalanced-process-match", {"scheduler_process_match": "airflow 'scheduler"}, ("scheduler_process_match",)),
]


@pytest.mark.parametrize(("keys", "needles"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_exits_2_with_one_line(keys: dict[str, str], needles: tuple[str, ...], cli: Cli) -> None:
    cli.write_keys(keys)
    assert_one_error_line(cli("get_current_host"), 2, str(cli.config), *needles)


@pytest.mark.parametrize(
    "command",
    [
        ["get_current_host"],
        ["test_connection"],
        ["is_scheduler_running", "--json"],
        ["metadata"],
        ["status", "--json"],
        ["history"],
        ["pause"],
        ["resume"],
        ["clear_metadata", "--yes"],
        ["send_test_email"],
    ],
)
def test_every_command_reports_bad_config_as_one_line(command: list[str], cli: Cli) -> None:
    cli.write(poll_frequency="soon")
    assert_one_error_line(cli(*command), 2, str(cli.config), "poll_frequency")


def test_console_entry_point_prints_one_line_on_stderr(cli: Cli) -> None:
    """The real entry point (not CliRunner): exit 2, one 'Error:' line on stderr, nothing on stdout."""
    cli.write(scheduler_nodes_in_cluster="node-a,node-a")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__") and k != CONFIG_ENV}
    env["AIRFLOW_HOME"] = str(cli.home)
    proc = subprocess.run(
        [sys.executable, "-c", ENTRY_POINT, "--config", str(cli.config), "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error:"), proc.stderr
    assert str(cli.config) in err[0] and "scheduler_nodes_in_cluster" in err[0]


def test_unknown_env_key_exits_2(cli: Cli) -> None:
    result = cli("get_current_host", **{ENV + "FROBNICATE": "1"})
    assert_one_error_line(result, 2, ENV + "FROBNICATE")


def test_bad_env_value_exits_2(cli: Cli) -> None:
    result = cli("status", **{ENV + "LEASE_TTL": "-1"})
    assert_one_error_line(result, 2, ENV + "LEASE_TTL", "lease_ttl")


def test_bad_smtp_value_exits_2(cli: Cli) -> None:
    cli.write(extra="[smtp]\nsmtp_port = many\n")
    assert_one_error_line(cli("send_test_email"), 2, str(cli.config), "smtp_port")


def test_missing_config_file_exits_2(cli: Cli) -> None:
    missing = cli.tmp_path / "missing.cfg"
    assert_one_error_line(cli("get_current_host", config=missing), 2, str(missing), "does not exist")


def test_missing_config_file_from_env_var_exits_2(cli: Cli) -> None:
    missing = cli.tmp_path / "missing.cfg"
    result = cli("get_current_host", config=None, **{CONFIG_ENV: str(missing)})
    assert_one_error_line(result, 2, str(missing), "does not exist")


def test_directory_as_config_exits_2_with_one_line(cli: Cli) -> None:
    folder = cli.tmp_path / "folder"
    folder.mkdir()
    assert_one_error_line(cli("get_current_host", config=folder), 2, str(folder))


def test_invalid_utf8_config_exits_2(cli: Cli) -> None:
    cli.config.write_bytes(b"[scheduler_failover]\nscheduler_nodes_in_cluster = n\xe9ud\n")
    assert_one_error_line(cli("get_current_host"), 2, str(cli.config), "not a valid INI file")


@pytest.mark.parametrize(
    "text",
    ["scheduler_nodes_in_cluster = node-a\n", "[scheduler_failover]\nlease_ttl = 1\nlease_ttl = 2\n", "[x\n"],
    ids=["no-section", "duplicate-key", "broken-header"],
)
def test_invalid_ini_exits_2(text: str, cli: Cli) -> None:
    cli.config.write_text(text, encoding="utf-8")
    assert_one_error_line(cli("get_current_host"), 2, str(cli.config), "not a valid INI file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_config_exits_2(cli: Cli) -> None:
    cli.config.chmod(0)
    try:
        assert_one_error_line(cli("get_current_host"), 2, str(cli.config), "cannot read")
    finally:
        cli.config.chmod(0o644)


def test_bad_default_airflow_cfg_exits_2(cli: Cli) -> None:
    airflow_cfg = cli.home / "airflow.cfg"
    airflow_cfg.write_text("[scheduler_failover]\nscheduler_nodes_in_cluster = a,a\n", encoding="utf-8")
    result = cli("get_current_host", config=None)
    assert_one_error_line(result, 2, str(airflow_cfg), "scheduler_nodes_in_cluster")


@pytest.mark.parametrize(
    ("url", "needle"),
    [("oracle://u:Pw-S3cret@db/x", "oracle"), ("mysql+nosuchdriver://u:Pw-S3cret@db/x", "driver")],
    ids=["unsupported-database", "missing-driver"],
)
def test_unusable_sql_conn_exits_2_naming_key_and_file(url: str, needle: str, cli: Cli) -> None:
    cli.write(metadata_service_sql_conn=url)
    line = assert_one_error_line(cli("status"), 2, "metadata_service_sql_conn", str(cli.config), needle)
    assert "Pw-S3cret" not in line
    # test_connection reports the nodes first, then stops at the metastore with the same one line
    result = cli("test_connection")
    assert_no_traceback(result)
    assert result.exit_code == 2, result.output
    errors = [out for out in lines(result) if out.startswith("Error:")]
    assert errors == [line]
    assert "Pw-S3cret" not in result.output


# --- simple commands ---------------------------------------------------------------------------


def test_version(cli: Cli) -> None:
    result = cli("version", config=None)
    assert result.exit_code == 0
    assert result.output.strip() == __version__


def test_get_current_host(cli: Cli) -> None:
    result = cli("get_current_host")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == HOST


def test_get_current_host_from_env_config_path(cli: Cli) -> None:
    other = cli.write(
        path=cli.tmp_path / "other.cfg",
        scheduler_nodes_in_cluster="x1,x2",
        current_host="x2",
        metadata_service_sql_conn=CLOSED_DB,
    )
    result = cli("get-current-host", config=None, **{CONFIG_ENV: str(other)})
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "x2"


@pytest.mark.parametrize(
    ("alias", "extra", "code"),
    [
        ("test-connection", [], 0),
        ("get-current-host", [], 0),
        ("is-scheduler-running", ["--json"], 1),
        ("clear-metadata", ["--yes"], 0),
        ("send-test-email", [], 1),
    ],
)
def test_hyphenated_aliases(alias: str, extra: list[str], code: int, cli: Cli) -> None:
    result = cli(alias, *extra)
    assert_no_traceback(result)
    assert result.exit_code == code, result.output
    assert "No such command" not in result.output


def test_unknown_command_is_a_usage_error(cli: Cli) -> None:
    result = cli("frobnicate")
    assert result.exit_code == 2
    assert "No such command" in result.output


# --- init --------------------------------------------------------------------------------------


def test_init_writes_a_config_that_loads(cli: Cli) -> None:
    target = cli.tmp_path / "etc" / "sfc.cfg"
    result = cli("init", config=target)
    assert result.exit_code == 0, result.output
    assert str(target) in result.output
    config = load_config(str(target), env={"AIRFLOW_HOME": str(cli.home)})
    assert config.nodes == (socket.gethostname(),)
    assert config.current_host == socket.gethostname()
    assert config.lease_ttl == 40.0
    shown = cli("get_current_host", config=target)
    assert shown.exit_code == 0, shown.output
    assert shown.output.strip() == socket.gethostname()


def test_init_refuses_to_overwrite_without_force(cli: Cli) -> None:
    cli.config.write_text("# mine\n", encoding="utf-8")
    refused = cli("init")
    assert_one_error_line(refused, 1, str(cli.config), "--force")
    assert cli.config.read_text(encoding="utf-8") == "# mine\n"

    forced = cli("init", "--force")
    assert forced.exit_code == 0, forced.output
    assert "[scheduler_failover]" in cli.config.read_text(encoding="utf-8")
    assert load_config(str(cli.config), env={"AIRFLOW_HOME": str(cli.home)}).nodes == (socket.gethostname(),)


def test_init_uses_env_config_path(cli: Cli) -> None:
    target = cli.tmp_path / "from-env.cfg"
    result = cli("init", config=None, **{CONFIG_ENV: str(target)})
    assert result.exit_code == 0, result.output
    assert target.exists()
    assert not (cli.home / "airflow.cfg").exists()


def test_init_appends_section_to_airflow_cfg_once(cli: Cli) -> None:
    airflow_cfg = cli.home / "airflow.cfg"
    original = "[core]\ndags_folder = /opt/dags\nexecutor = LocalExecutor\n\n[smtp]\nsmtp_host = mail\n"
    airflow_cfg.write_text(original, encoding="utf-8")

    result = cli("init", config=None)

    assert result.exit_code == 0, result.output
    assert "added [scheduler_failover]" in result.output
    text = airflow_cfg.read_text(encoding="utf-8")
    assert text.startswith(original.rstrip("\n"))
    assert text.count("[scheduler_failover]") == 1
    config = load_config(None, env={"AIRFLOW_HOME": str(cli.home)})
    assert config.source == str(airflow_cfg)
    assert config.smtp.host == "mail"
    loaded = cli("get_current_host", config=None)
    assert loaded.exit_code == 0, loaded.output

    again = cli("init", config=None)
    assert_one_error_line(again, 1, str(airflow_cfg), "already has")
    assert airflow_cfg.read_text(encoding="utf-8") == text


def test_init_keeps_a_symlinked_airflow_cfg_a_link_with_its_owner_and_mode(cli: Cli) -> None:
    """An airflow.cfg kept elsewhere (a config repository) and linked in stays linked."""
    repo = cli.tmp_path / "repo"
    repo.mkdir()
    real = repo / "airflow.cfg"
    real.write_text("[core]\nexecutor = LocalExecutor\n", encoding="utf-8")
    real.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(real, 0, 65534)  # group nogroup: kept too
    before = real.stat()
    link = cli.home / "airflow.cfg"
    link.symlink_to(real)
    result = cli("init", config=None)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and Path(os.readlink(link)) == real
    after = real.stat()
    assert "[scheduler_failover]" in real.read_text(encoding="utf-8")
    assert (after.st_mode & 0o7777, after.st_uid, after.st_gid) == (0o640, before.st_uid, before.st_gid)
    assert sorted(p.name for p in repo.iterdir()) == ["airflow.cfg"]  # no temporary file left


def test_init_creates_a_new_config_private(cli: Cli) -> None:
    path = cli.tmp_path / "new" / "sfc.cfg"
    result = cli("init", config=path)
    assert result.exit_code == 0, result.output
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("problem", ["mode", "owner", "parent"])
def test_start_refuses_a_state_dir_others_can_write(cli: Cli, problem: str) -> None:
    """Its files decide which processes get SIGKILL: nobody else may write them."""
    parent = cli.tmp_path / "shared"
    parent.mkdir()
    state = parent / "state"
    state.mkdir(mode=0o700)
    if problem == "mode":
        state.chmod(0o777)
        needle = "writable by other users"
    elif problem == "owner":
        if os.geteuid() != 0:
            pytest.skip("needs root to give the directory to another user")
        os.chown(state, 65534, 65534)
        needle = "belongs to"
    else:
        parent.chmod(0o777)  # anyone could rename state away and put their own in its place
        needle = "writable by everyone without the sticky bit"
    cli.write(state_dir=str(state), metadata_service_sql_conn=f"sqlite:///{cli.tmp_path / 'm.db'}")
    result = cli("start")
    assert_one_error_line(result, 2, "state_dir", needle)


def test_files_the_controller_creates_are_private(cli: Cli) -> None:
    from scheduler_failover_controller.config import load_config as load
    from scheduler_failover_controller.nodes.local import LocalNodeRunner

    script = cli.tmp_path / "quick_scheduler.py"
    script.write_text("import time\ntime.sleep(30)\n")
    cli.write(
        scheduler_process_match=script.name,
        airflow_scheduler_start_command=f"exec {sys.executable} {script}",
        scheduler_start_timeout="10",
    )
    config = load(str(cli.config), env={"AIRFLOW_HOME": str(cli.home)})
    runner = LocalNodeRunner(HOST, config)
    try:
        runner.start(time.monotonic() + 20)
        state = cli.tmp_path / "state"
        for path in [state / "scheduler.log", state / "locks" / f"{HOST}.lock", state / "locks" / f"{HOST}.session"]:
            assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))
    finally:
        runner.stop()


def test_init_creates_missing_airflow_cfg(cli: Cli) -> None:
    result = cli("init", config=None)
    assert result.exit_code == 0, result.output
    airflow_cfg = cli.home / "airflow.cfg"
    assert airflow_cfg.exists()
    assert load_config(None, env={"AIRFLOW_HOME": str(cli.home)}).source == str(airflow_cfg)


def test_init_with_undecodable_airflow_cfg_is_one_line(cli: Cli) -> None:
    airflow_cfg = cli.home / "airflow.cfg"
    airflow_cfg.write_bytes(b"[core]\ndags_folder = /opt/d\xe9gs\n")
    result = cli("init", config=None)
    assert_one_error_line(result, 2, str(airflow_cfg))
    assert airflow_cfg.read_bytes() == b"[core]\ndags_folder = /opt/d\xe9gs\n"


# --- metastore commands ------------------------------------------------------------------------


def test_metadata_text_and_json(cli: Cli) -> None:
    text = cli("metadata")
    assert text.exit_code == 0, text.output
    assert "metastore: sql sqlite:///" in text.output
    assert "paused: False" in text.output

    result = cli("metadata", "--json")
    assert result.exit_code == 0, result.output
    data = as_json(result)
    assert isinstance(data, dict)
    assert {"metastore", "lease", "placement", "paused", "controllers", "observations", "events"} <= data.keys()
    assert data["lease"]["holder"] is None
    assert data["lease"]["epoch"] == 0
    assert data["placement"]["node"] is None
    assert data["controllers"] == [] and data["observations"] == [] and data["events"] == []


def test_status_json_on_empty_cluster_exits_2(cli: Cli) -> None:
    result = cli("status", "--json")
    assert result.exit_code == 2, result.output
    data = as_json(result)
    assert isinstance(data, dict)
    assert data["active_controller"] is None
    assert data["epoch"] == 0
    assert data["scheduler_node"] is None
    assert data["paused"] is False
    assert data["controllers"] == []
    assert data["nodes"] == [{"host": HOST, "scheduler": "unknown", "pids": [], "observed_age_s": None, "foreign": []}]


def test_status_text_on_empty_cluster_exits_2(cli: Cli) -> None:
    result = cli("status")
    assert result.exit_code == 2, result.output
    assert "health: no scheduler" in result.output
    assert "(none registered)" in result.output


def test_status_json_of_a_healthy_cluster_exits_0(cli: Cli, mariadb_url: str) -> None:
    cli.write(
        scheduler_nodes_in_cluster="node-a,node-b",
        poll_frequency="1",
        lease_ttl="30",
        metadata_service_sql_conn=mariadb_url,
    )
    store = cli.store(mariadb_url)
    try:
        lease = store.acquire_or_renew("holder-a", HOST, 30)
        assert lease is not None
        store.heartbeat(ControllerInfo(HOST, "holder-a", 4242, "9.9", "active", 0.0, 0.0))
        store.heartbeat(ControllerInfo("node-b", "holder-b", 4343, "9.9", "standby", 0.0, 0.0, paused=True))
        assert store.set_placement(HOST, "holder-a", lease.epoch, 0, 30) is not None
        observed = [Observation(HOST, "running", (1234,), ""), Observation("node-b", "stopped", (), "")]
        assert store.record_observations("holder-a", lease.epoch, observed)
    finally:
        store.close()

    result = cli("status", "--json")

    assert result.exit_code == 0, result.output
    data = as_json(result)
    assert isinstance(data, dict)
    assert data["active_controller"] == HOST
    assert data["epoch"] == lease.epoch == 1
    assert data["scheduler_node"] == HOST
    assert data["paused"] is False
    roles = {c["host"]: c["role"] for c in data["controllers"]}
    assert roles == {HOST: "active", "node-b": "standby"}
    assert {c["host"]: c["paused"] for c in data["controllers"]} == {HOST: False, "node-b": True}
    for controller in data["controllers"]:
        assert 0 <= controller["heartbeat_age_s"] < 30
    nodes = {n["host"]: n for n in data["nodes"]}
    assert nodes[HOST]["scheduler"] == "running"
    assert nodes["node-b"]["scheduler"] == "stopped"
    assert all(0 <= n["observed_age_s"] < 30 for n in data["nodes"])

    text = cli("status")
    assert text.exit_code == 0
    assert "health: healthy" in text.output
    assert "node-b: standby (paused), heartbeat" in text.output


def test_pause_and_resume_show_in_status_and_history(cli: Cli) -> None:
    paused = cli("pause")
    assert paused.exit_code == 0, paused.output
    status = cli("status", "--json")
    assert status.exit_code == 2  # still no scheduler
    data = as_json(status)
    assert isinstance(data, dict) and data["paused"] is True

    resumed = cli("resume")
    assert resumed.exit_code == 0, resumed.output
    data = as_json(cli("status", "--json"))
    assert isinstance(data, dict) and data["paused"] is False

    history = cli("history", "--json")
    assert history.exit_code == 0, history.output
    events = as_json(history)
    assert isinstance(events, list)
    assert [e["kind"] for e in events] == ["pause", "resume"]
    assert all(e["host"] == HOST for e in events)
    assert {"at", "host", "kind", "epoch", "message"} <= events[0].keys()
    assert "[pause]" in cli("history").output


def test_history_empty(cli: Cli) -> None:
    assert as_json(cli("history", "--json")) == []
    text = cli("history")
    assert text.exit_code == 0
    assert text.stdout.strip() == "no events"


def test_read_commands_create_no_metastore(cli: Cli, tmp_path: Path) -> None:
    """status, metadata and history on a config no controller has run with write nothing."""
    before = sorted(p for p in tmp_path.rglob("*"))
    for args in (["status"], ["status", "--json"], ["metadata"], ["history"]):
        result = cli(*args)
        assert "does not exist yet" in result.stderr, result.output
        assert "Traceback" not in result.output
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_history_limit(cli: Cli) -> None:
    for _ in range(3):
        assert cli("pause").exit_code == 0
    events = as_json(cli("history", "--json", "--limit", "2"))
    assert isinstance(events, list) and len(events) == 2
    assert cli("history", "--limit", "0").exit_code == 2


def test_clear_metadata_refuses_without_yes_when_not_a_tty(cli: Cli) -> None:
    assert cli("pause").exit_code == 0
    result = cli("clear_metadata", stdin="y\n")
    assert_one_error_line(result, 1, "--yes")
    data = as_json(cli("status", "--json"))
    assert isinstance(data, dict) and data["paused"] is True  # nothing was wiped


def test_clear_metadata_with_yes_wipes_but_keeps_epoch(cli: Cli) -> None:
    store = cli.store()
    try:
        assert store.acquire_or_renew("holder-a", HOST, 30) is not None
        store.add_event(HOST, EventKind.ELECTED, "won")
    finally:
        store.close()
    assert cli("pause").exit_code == 0

    result = cli("clear_metadata", "--yes")

    assert result.exit_code == 0, result.output
    assert "metastore cleared" in result.output
    data = as_json(cli("metadata", "--json"))
    assert isinstance(data, dict)
    assert data["paused"] is False
    assert data["events"] == []
    assert data["lease"]["holder"] is None
    assert data["lease"]["epoch"] == 1  # fencing tokens never go back


# --- probes and connections --------------------------------------------------------------------


def test_is_scheduler_running_json_when_stopped(cli: Cli) -> None:
    result = cli("is_scheduler_running", "--json")
    assert result.exit_code == 1, result.output
    expected = {"node": HOST, "state": "stopped", "pids": [], "detail": "", "leashed": False, "foreign": []}
    assert as_json(result) == [expected]
    text = cli("is_scheduler_running")
    assert text.exit_code == 1
    assert text.output.strip() == f"{HOST}: stopped"


@pytest.fixture
def fake_scheduler(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    word = f"sfc_cli_fake_scheduler_{uuid.uuid4().hex[:12]}"
    script = tmp_path / word  # a program of that name, run by the interpreter as a script is
    script.write_text("import time\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script)])
    try:
        yield word, proc
    finally:
        proc.kill()
        proc.wait()


def test_is_scheduler_running_json_when_running(cli: Cli, fake_scheduler: tuple[str, subprocess.Popen[bytes]]) -> None:
    word, proc = fake_scheduler
    cli.write(scheduler_process_match=word)
    result = cli("is_scheduler_running", "--json")
    assert result.exit_code == 0, result.output
    expected = {"node": HOST, "state": "running", "pids": [proc.pid], "detail": "", "leashed": False, "foreign": []}
    assert as_json(result) == [expected]


# A remote node that cannot be reached: a loopback address (no name lookup, so no DNS query ever
# leaves this machine) on a port where nothing listens.
REMOTE = "127.0.0.9"


def unreachable_remote(cli: Cli, **keys: str) -> None:
    from tests.support.ports import free_port

    nodes = {"scheduler_nodes_in_cluster": f"node-a,{REMOTE}", "ssh_port": str(free_port()), "ssh_timeout": "1"}
    cli.write_keys({**nodes, **keys})


def test_is_scheduler_running_remote_node_is_unknown(cli: Cli) -> None:
    unreachable_remote(cli, metadata_service_sql_conn=CLOSED_DB, metastore_timeout="1")
    result = cli("is_scheduler_running", "--json")
    assert result.exit_code == 1
    probes = as_json(result)
    assert isinstance(probes, list)
    states = {p["node"]: p["state"] for p in probes}
    assert states == {HOST: "stopped", REMOTE: "unknown"}


def test_test_connection_single_local_node_with_sqlite(cli: Cli) -> None:
    result = cli("test_connection")
    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert f"node {HOST} (local): ok" in result.output
    assert "metastore sql sqlite:///" in result.output and ": ok" in result.output


def test_test_connection_fails_for_unreachable_node(cli: Cli, mariadb_url: str) -> None:
    unreachable_remote(cli, metadata_service_sql_conn=mariadb_url)
    result = cli("test_connection")
    assert_no_traceback(result)
    assert result.exit_code == 1, result.output
    assert f"node {REMOTE} (remote): FAILED" in result.output
    assert ": ok (epoch" in result.output  # the metastore itself was reachable


def test_test_connection_closed_mysql_port_fails_without_leaking_password(cli: Cli) -> None:
    cli.write(metadata_service_sql_conn="mysql+pymysql://u:Pw-S3cret-42@127.0.0.1:1/x", metastore_timeout="1")
    result = cli("test_connection")
    assert_no_traceback(result)
    assert result.exit_code == 1, result.output
    assert "metastore sql mysql+pymysql://u:***@127.0.0.1:1/x: FAILED" in result.output
    assert "Pw-S3cret-42" not in result.output


def test_store_command_with_closed_mysql_port_is_one_line(cli: Cli) -> None:
    cli.write(metadata_service_sql_conn="mysql+pymysql://u:Pw-S3cret-42@127.0.0.1:1/x", metastore_timeout="1")
    for command in (["status", "--json"], ["metadata"], ["pause"]):
        line = assert_one_error_line(cli(*command), 1, "127.0.0.1:1")
        assert "Pw-S3cret-42" not in line


# --- send_test_email ---------------------------------------------------------------------------


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: EHLO, MAIL, RCPT, DATA, QUIT (no STARTTLS, no AUTH)."""

    server: _SmtpServer

    def reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        self.reply("220 127.0.0.1 test SMTP ready")
        sender, in_data = "", False
        recipients: list[str] = []
        data: list[bytes] = []
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            if in_data:
                if raw.rstrip(b"\r\n") == b".":
                    in_data = False
                    self.server.messages.append((sender, recipients, b"".join(data).decode("utf-8", "replace")))
                    self.reply("250 OK queued")
                else:
                    data.append(raw[1:] if raw.startswith(b"..") else raw)
                continue
            line = raw.decode("ascii", "replace").strip()
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250-127.0.0.1")
                self.reply("250 8BITMIME")
            elif verb == "HELO" or verb in ("NOOP", "RSET"):
                self.reply("250 OK")
            elif verb == "MAIL":
                sender, recipients, data = line.split(":", 1)[1].strip(), [], []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(line.split(":", 1)[1].strip())
                self.reply("250 OK")
            elif verb == "DATA":
                in_data = True
                self.reply("354 end with <CRLF>.<CRLF>")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SmtpHandler)
        self.messages: list[tuple[str, list[str], str]] = []


@pytest.fixture
def smtp_server() -> Iterator[_SmtpServer]:
    server = _SmtpServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_send_test_email_without_recipients_exits_1(cli: Cli) -> None:
    result = cli("send_test_email")
    assert_one_error_line(result, 1, "alert_to_email", str(cli.config))


def test_send_test_email_is_delivered(cli: Cli, smtp_server: _SmtpServer) -> None:
    port = smtp_server.server_address[1]
    cli.write(
        extra=f"[smtp]\nsmtp_host = 127.0.0.1\nsmtp_port = {port}\nsmtp_starttls = False\n"
        "smtp_mail_from = sfc@example.com\nsmtp_timeout = 5\n",
        alert_to_email="ops@example.com, oncall@example.com",
        alert_email_subject="SFC Alert",
    )

    result = cli("send_test_email")

    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert "ops@example.com" in result.output
    assert len(smtp_server.messages) == 1
    sender, recipients, body = smtp_server.messages[0]
    assert sender == "<sfc@example.com>"
    assert recipients == ["<ops@example.com>", "<oncall@example.com>"]
    assert f"Subject: SFC Alert: test alert from {HOST}" in body
    assert "This is a test alert" in body


def test_send_test_email_to_a_closed_port_exits_1(cli: Cli) -> None:
    port = free_port()
    cli.write(
        extra=f"[smtp]\nsmtp_host = 127.0.0.1\nsmtp_port = {port}\nsmtp_starttls = False\n"
        "smtp_password = Smtp-S3cret\nsmtp_timeout = 2\n",
        alert_to_email="ops@example.com",
    )
    line = assert_one_error_line(cli("send_test_email"), 1, f"127.0.0.1:{port}")
    assert "Smtp-S3cret" not in line


def test_smtp_from_env_is_used(cli: Cli, smtp_server: _SmtpServer) -> None:
    cli.write(alert_to_email="ops@example.com")
    env: dict[str, str | None] = {
        "AIRFLOW__SMTP__SMTP_HOST": "127.0.0.1",
        "AIRFLOW__SMTP__SMTP_PORT": str(smtp_server.server_address[1]),
        "AIRFLOW__SMTP__SMTP_STARTTLS": "False",
    }
    result = cli("send_test_email", **env)
    assert result.exit_code == 0, result.output
    assert len(smtp_server.messages) == 1


# --- the same commands on ZooKeeper ------------------------------------------------------------


def test_store_commands_work_on_zookeeper_as_on_sql(cli: Cli, zk_hosts: str) -> None:
    cli.write(metadata_service_type="zookeeper", metadata_service_zookeeper_nodes=zk_hosts)
    result = cli("status", "--json")
    assert result.exit_code == 2, result.output  # nothing runs yet
    data = as_json(result)
    assert isinstance(data, dict) and data["active_controller"] is None and data["paused"] is False
    assert cli("pause").exit_code == 0
    assert as_json(cli("status", "--json"))["paused"] is True  # type: ignore[index]
    assert cli("resume").exit_code == 0
    history = as_json(cli("history", "--json"))
    assert isinstance(history, list) and [e["kind"] for e in history] == ["pause", "resume"]
    meta = cli("metadata", "--json")
    assert meta.exit_code == 0, meta.output
    dumped = as_json(meta)
    assert isinstance(dumped, dict) and dumped["metastore"].startswith("zookeeper ")
    assert cli("clear_metadata", "--yes").exit_code == 0
    assert as_json(cli("history", "--json")) == []
    connection = cli("test_connection")
    assert connection.exit_code == 0, connection.output
    assert "metastore zookeeper" in connection.output and ": ok (epoch" in connection.output


def test_unreachable_zookeeper_is_one_line_and_exit_1(cli: Cli) -> None:
    from tests.support.ports import free_port

    cli.write(metadata_service_type="zookeeper", metadata_service_zookeeper_nodes=f"127.0.0.1:{free_port()}")
    result = cli("status")
    assert_no_traceback(result)
    assert result.exit_code == 1
    assert "cannot connect" in result.output
