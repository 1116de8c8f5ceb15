"""Config loading and validation (README, Configuration), with tmp files and an explicit ``env`` dict.

The real environment is never read: every call passes ``env=`` and ``hostname=``.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from scheduler_failover_controller.config import (
    CONFIG_ENV,
    SQL_SERVICE,
    ZOOKEEPER_SERVICE,
    Config,
    SmtpConfig,
    airflow_home,
    default_config_text,
    load_config,
)
from scheduler_failover_controller.exceptions import ConfigError
from scheduler_failover_controller.redaction import redact_url

HOST = "node-a"
SECTION = "scheduler_failover"
ENV = "AIRFLOW__SCHEDULER_FAILOVER__"


def _hostname() -> str:
    return HOST


def render(keys: Mapping[str, str | None], extra: str = "") -> str:
    """A config file text: the [scheduler_failover] keys (None leaves a key out), then ``extra``."""
    lines = [f"[{SECTION}]"]
    lines += [f"{key} = {value}" for key, value in keys.items() if value is not None]
    return "\n".join(lines) + "\n" + (f"\n{extra.strip()}\n" if extra else "")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "airflow_home"
    path.mkdir()
    return path


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return {"AIRFLOW_HOME": str(home)}


@pytest.fixture
def make(tmp_path: Path) -> Callable[..., Path]:
    """Write a config file with a valid base (one node, ``node-a``) plus the given keys."""

    def write(extra: str = "", name: str = "sfc.cfg", **keys: str | None) -> Path:
        base: dict[str, str | None] = {
            "scheduler_nodes_in_cluster": HOST,
            "current_host": HOST,
            "state_dir": str(tmp_path / "state"),
        }
        base.update(keys)
        path = tmp_path / name
        path.write_text(render(base, extra), encoding="utf-8")
        return path

    return write


def load(path: Path | str | None, env: Mapping[str, str], hostname: Callable[[], str] = _hostname) -> Config:
    return load_config(None if path is None else str(path), env=env, hostname=hostname)


def expect_error(path: Path | str | None, env: Mapping[str, str], *needles: str) -> str:
    """Loading fails with ONE line that contains every needle (key, file or env var)."""
    with pytest.raises(ConfigError) as info:
        load(path, env)
    message = str(info.value)
    assert message, "empty error message"
    assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


# --- where the file comes from ----------------------------------------------------------------


def test_explicit_path_wins_over_env_var_and_airflow_cfg(
    tmp_path: Path, home: Path, env: dict[str, str], make: Callable[..., Path]
) -> None:
    explicit = make(name="explicit.cfg", scheduler_nodes_in_cluster="from-explicit", current_host="from-explicit")
    by_env = make(name="env.cfg", scheduler_nodes_in_cluster="from-env", current_host="from-env")
    (home / "airflow.cfg").write_text(render({"current_host": "from-airflow"}), encoding="utf-8")
    env[CONFIG_ENV] = str(by_env)

    config = load(explicit, env)

    assert config.source == str(explicit)
    assert config.current_host == "from-explicit"
    assert config.nodes == ("from-explicit",)


def test_env_var_path_used_without_explicit_path(home: Path, env: dict[str, str], make: Callable[..., Path]) -> None:
    by_env = make(name="env.cfg", scheduler_nodes_in_cluster="from-env", current_host="from-env")
    (home / "airflow.cfg").write_text(render({"current_host": "from-airflow"}), encoding="utf-8")
    env[CONFIG_ENV] = str(by_env)

    config = load(None, env)

    assert config.source == str(by_env)
    assert config.current_host == "from-env"


def test_empty_env_var_path_falls_back_to_airflow_cfg(home: Path, env: dict[str, str]) -> None:
    (home / "airflow.cfg").write_text(
        render({"scheduler_nodes_in_cluster": "from-airflow", "current_host": "from-airflow"}), encoding="utf-8"
    )
    env[CONFIG_ENV] = ""

    config = load(None, env)

    assert config.source == str(home / "airflow.cfg")
    assert config.current_host == "from-airflow"


def test_airflow_cfg_in_airflow_home_is_the_default(home: Path, env: dict[str, str]) -> None:
    (home / "airflow.cfg").write_text(
        "[core]\ndags_folder = /somewhere/dags\nexecutor = LocalExecutor\nsql_alchemy_conn = mysql+pymysql://sfc:pw@db.example:3306/airflow\n\n"
        + render({"scheduler_nodes_in_cluster": "node-a, node-b", "poll_frequency": "7"}),
        encoding="utf-8",
    )

    config = load(None, env)

    assert config.source == str(home / "airflow.cfg")
    assert config.nodes == ("node-a", "node-b")
    assert config.current_host == HOST  # from hostname()
    assert config.poll_frequency == 7.0


def test_missing_airflow_cfg_is_not_an_error_and_gives_defaults(home: Path, env: dict[str, str]) -> None:
    config = load(None, env)

    assert config.source == str(home / "airflow.cfg")
    assert config.current_host == HOST
    assert config.nodes == (HOST,)
    assert config.local_nodes == (HOST,)
    assert config.state_dir == home / "scheduler_failover"
    assert config.metadata_service_sql_conn == f"sqlite:///{home / 'scheduler_failover' / 'metastore.db'}"
    assert config.metadata_service_type == SQL_SERVICE
    assert config.scheduler_process_match == "airflow scheduler"


def test_airflow_cfg_without_our_section_gives_defaults(home: Path, env: dict[str, str]) -> None:
    (home / "airflow.cfg").write_text("[core]\nexecutor = LocalExecutor\n", encoding="utf-8")

    config = load(None, env)

    assert config.nodes == (HOST,)
    assert config.poll_frequency == 10.0


def test_airflow_home_defaults_to_tilde_airflow() -> None:
    assert airflow_home({}) == Path("~/airflow").expanduser()
    assert airflow_home({"AIRFLOW_HOME": "/opt/af"}) == Path("/opt/af")


def test_missing_explicit_file_is_an_error(tmp_path: Path, env: dict[str, str]) -> None:
    missing = tmp_path / "nope.cfg"
    expect_error(missing, env, str(missing), "does not exist")


def test_missing_file_named_by_env_var_is_an_error(tmp_path: Path, env: dict[str, str]) -> None:
    missing = tmp_path / "nope.cfg"
    env[CONFIG_ENV] = str(missing)
    expect_error(None, env, str(missing), "does not exist")


# --- environment overrides ---------------------------------------------------------------------


def test_env_overrides_file_values(env: dict[str, str], make: Callable[..., Path]) -> None:
    path = make(poll_frequency="5", lease_ttl="30")
    env[ENV + "POLL_FREQUENCY"] = "3"
    env[ENV + "METRICS_PORT"] = "9109"

    config = load(path, env)

    assert config.poll_frequency == 3.0  # env beats the file
    assert config.lease_ttl == 30.0  # the file beats the default
    assert config.metrics_port == 9109  # env sets a key the file does not have


def test_env_can_set_node_list_and_current_host(env: dict[str, str], make: Callable[..., Path]) -> None:
    path = make()
    env[ENV + "SCHEDULER_NODES_IN_CLUSTER"] = "n1,n2,n3"
    env[ENV + "CURRENT_HOST"] = "n2"
    env[ENV + "METADATA_SERVICE_SQL_CONN"] = "mysql+pymysql://sfc:pw@db.example:3306/airflow"

    config = load(path, env)

    assert config.nodes == ("n1", "n2", "n3")
    assert config.current_host == "n2"
    assert config.local_nodes == ("n2",)


def test_unrelated_airflow_env_vars_are_ignored(env: dict[str, str], make: Callable[..., Path]) -> None:
    env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
    env["AIRFLOW__SCHEDULER__NUM_RUNS"] = "-1"
    assert load(make(), env).current_host == HOST


def test_unknown_env_key_is_an_error(env: dict[str, str], make: Callable[..., Path]) -> None:
    env[ENV + "FROBNICATE"] = "1"
    expect_error(make(), env, ENV + "FROBNICATE", "frobnicate", "unknown key")


def test_bad_env_value_names_the_env_var(env: dict[str, str], make: Callable[..., Path]) -> None:
    env[ENV + "LEASE_TTL"] = "soon"
    expect_error(make(), env, ENV + "LEASE_TTL", "lease_ttl", "'soon'")


def test_env_current_host_not_listed_names_the_env_var(env: dict[str, str], make: Callable[..., Path]) -> None:
    env[ENV + "CURRENT_HOST"] = "node-z"
    expect_error(make(), env, ENV + "CURRENT_HOST", "current_host", "node-z")


# --- the 2016 keys keep their meaning ----------------------------------------------------------

ORIGINAL_2016_CONFIG = """\
[core]
sql_alchemy_conn = mysql://airflow:airflow@db.example:3306/airflow

[scheduler_failover]
scheduler_nodes_in_cluster = node-a,node-b
metadata_service_type = SQLMetadataService
metadata_service_zookeeper_nodes = zk1:2181,zk2:2181
poll_frequency = 10
airflow_scheduler_start_command = export AIRFLOW_HOME=~/airflow;;nohup airflow scheduler >> ~/af/scheduler.logs &
airflow_scheduler_stop_command = for pid in `ps -ef | grep "airflow scheduler" | awk '{print $2}'`;do kill $pid;done
logging_level = INFO
logging_dir = ~/airflow/logs/scheduler_failover/
logging_file_name = scheduler_failover_controller.log
logs_rotate_when = midnight
logs_rotate_backup_count = 7
retry_count_before_alerting = 5
alert_to_email = airflow@airflow.com, ops@example.com
alert_email_subject = "Airflow Alert - Scheduler Failover Controller Failed to Startup Scheduler"
"""


def test_original_2016_config_loads_with_the_same_meaning(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "airflow.cfg"
    path.write_text(ORIGINAL_2016_CONFIG, encoding="utf-8")

    config = load(path, env)

    assert config.nodes == ("node-a", "node-b")
    assert config.current_host == HOST
    assert config.metadata_service_type == SQL_SERVICE
    assert config.metadata_service_zookeeper_nodes == "zk1:2181,zk2:2181"
    assert config.poll_frequency == 10.0
    assert config.airflow_scheduler_start_command == (
        "export AIRFLOW_HOME=~/airflow;nohup airflow scheduler >> ~/af/scheduler.logs &"
    )
    assert config.airflow_scheduler_stop_command.startswith("for pid in `ps -ef")
    assert config.logging_level == "INFO"
    assert config.logging_dir == "~/airflow/logs/scheduler_failover/"
    assert config.logging_file_name == "scheduler_failover_controller.log"
    assert config.logs_rotate_when == "midnight"
    assert config.logs_rotate_backup_count == 7
    assert config.retry_count_before_alerting == 5
    assert config.alert_to_email == ("airflow@airflow.com", "ops@example.com")
    assert config.alert_email_subject == "Airflow Alert - Scheduler Failover Controller Failed to Startup Scheduler"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("SQLMetadataService", SQL_SERVICE),
        ("sqlmetadataservice", SQL_SERVICE),
        ("sql", SQL_SERVICE),
        ("SQL", SQL_SERVICE),
        ("ZookeeperMetadataService", ZOOKEEPER_SERVICE),
        ("zookeeper", ZOOKEEPER_SERVICE),
    ],
)
def test_metadata_service_type_aliases(raw: str, expected: str, env: dict[str, str], make: Callable[..., Path]) -> None:
    assert load(make(metadata_service_type=raw), env).metadata_service_type == expected


def test_metadata_service_type_defaults_to_sql(env: dict[str, str], make: Callable[..., Path]) -> None:
    assert load(make(), env).metadata_service_type == SQL_SERVICE


def test_poll_frequency_accepts_fractions(env: dict[str, str], make: Callable[..., Path]) -> None:
    config = load(make(poll_frequency="2.5", lease_ttl="12"), env)
    assert config.poll_frequency == 2.5
    assert config.lease_ttl == 12.0


def test_double_semicolons_separate_commands(env: dict[str, str], make: Callable[..., Path]) -> None:
    config = load(
        make(
            airflow_scheduler_start_command="cd /opt/af;; airflow scheduler -D",
            airflow_scheduler_stop_command="pkill -f 'airflow scheduler';;sleep 1",
            fence_command="ipmitool power off;;true",
        ),
        env,
    )
    assert config.airflow_scheduler_start_command == "cd /opt/af; airflow scheduler -D"
    assert config.airflow_scheduler_stop_command == "pkill -f 'airflow scheduler';sleep 1"
    assert config.fence_command == "ipmitool power off;true"


def test_retry_count_before_alerting(env: dict[str, str], make: Callable[..., Path]) -> None:
    assert load(make(), env).retry_count_before_alerting == 5
    assert load(make(retry_count_before_alerting="0"), env).retry_count_before_alerting == 0
    assert load(make(retry_count_before_alerting=" 12 "), env).retry_count_before_alerting == 12


@pytest.mark.parametrize("level", ["debug", "Info", "WARNING", "error", "CRITICAL"])
def test_logging_level_is_case_insensitive(level: str, env: dict[str, str], make: Callable[..., Path]) -> None:
    assert load(make(logging_level=level), env).logging_level == level.upper()


@pytest.mark.parametrize(("raw", "expected"), [("midnight", "midnight"), ("H", "h"), ("d", "d"), ("W0", "w0")])
def test_logs_rotate_when(raw: str, expected: str, env: dict[str, str], make: Callable[..., Path]) -> None:
    assert load(make(logs_rotate_when=raw), env).logs_rotate_when == expected


def test_logging_defaults(env: dict[str, str], make: Callable[..., Path]) -> None:
    config = load(make(), env)
    assert config.logging_level == "INFO"
    assert config.logging_dir == ""
    assert config.logging_file_name == "scheduler_failover_controller.log"
    assert config.logs_rotate_when == "midnight"
    assert config.logs_rotate_backup_count == 7


def test_local_nodes_always_include_current_host(env: dict[str, str], make: Callable[..., Path]) -> None:
    shared = "mysql+pymysql://sfc:pw@db.example:3306/airflow"
    config = load(
        make(
            scheduler_nodes_in_cluster="node-a, node-b, node-c",
            local_nodes="node-b",
            metadata_service_sql_conn=shared,
            scheduler_process_match="fake_scheduler --node {node}",  # several local nodes: told apart
        ),
        env,
    )
    assert config.local_nodes == ("node-a", "node-b")
    empty = load(
        make(scheduler_nodes_in_cluster="node-a, node-b", local_nodes="", metadata_service_sql_conn=shared), env
    )
    assert empty.local_nodes == (HOST,)


def test_ssh_host_key_policy(env: dict[str, str], make: Callable[..., Path]) -> None:
    assert load(make(), env).ssh_host_key_policy == "reject"
    assert load(make(ssh_host_key_policy="warn"), env).ssh_host_key_policy == "warn"
    assert load(make(ssh_host_key_policy="AUTO_ADD"), env).ssh_host_key_policy == "auto_add"


def test_default_config_text_loads(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "init.cfg"
    path.write_text(default_config_text(HOST), encoding="utf-8")

    config = load(path, env)

    assert config.nodes == (HOST,)
    assert config.lease_ttl == 40.0
    assert config.ssh_host_key_policy == "reject"
    assert "{node}" in path.read_text(encoding="utf-8")  # the placeholder is documented literally


# --- SQL connection fallbacks ------------------------------------------------------------------


def test_explicit_sql_conn_wins(env: dict[str, str], make: Callable[..., Path]) -> None:
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "mysql+pymysql://af:x@envdb/airflow"
    path = make(
        extra="[database]\nsql_alchemy_conn = postgresql://af:x@filedb/airflow",
        metadata_service_sql_conn="mysql+pymysql://sfc:pw@mine/sfc",
    )
    assert load(path, env).metadata_service_sql_conn == "mysql+pymysql://sfc:pw@mine/sfc"


def test_sql_conn_falls_back_to_airflow_database_section(env: dict[str, str], make: Callable[..., Path]) -> None:
    path = make(
        extra=(
            "[core]\nsql_alchemy_conn = mysql+pymysql://af:x@core-db/airflow\n\n"
            "[database]\nsql_alchemy_conn = mysql+pymysql://af:x@database-db/airflow"
        )
    )
    assert load(path, env).metadata_service_sql_conn == "mysql+pymysql://af:x@database-db/airflow"


def test_sql_conn_falls_back_to_airflow_core_section(env: dict[str, str], make: Callable[..., Path]) -> None:
    path = make(extra="[core]\nsql_alchemy_conn = mysql+pymysql://af:x@core-db/airflow")
    assert load(path, env).metadata_service_sql_conn == "mysql+pymysql://af:x@core-db/airflow"


def test_sql_conn_airflow_env_beats_airflow_file(env: dict[str, str], make: Callable[..., Path]) -> None:
    path = make(extra="[database]\nsql_alchemy_conn = mysql+pymysql://af:x@file-db/airflow")
    env["AIRFLOW__CORE__SQL_ALCHEMY_CONN"] = "mysql+pymysql://af:x@core-env/airflow"
    assert load(path, env).metadata_service_sql_conn == "mysql+pymysql://af:x@core-env/airflow"
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "mysql+pymysql://af:x@database-env/airflow"
    assert load(path, env).metadata_service_sql_conn == "mysql+pymysql://af:x@database-env/airflow"


def test_our_env_key_beats_airflow_conn(env: dict[str, str], make: Callable[..., Path]) -> None:
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "mysql+pymysql://af:x@af-db/airflow"
    env[ENV + "METADATA_SERVICE_SQL_CONN"] = "sqlite:////tmp/x.db"
    assert load(make(), env).metadata_service_sql_conn == "sqlite:////tmp/x.db"


def test_sql_conn_falls_back_to_sqlite_in_state_dir(
    tmp_path: Path, env: dict[str, str], make: Callable[..., Path]
) -> None:
    config = load(make(state_dir=str(tmp_path / "st")), env)
    assert config.state_dir == tmp_path / "st"
    assert config.metadata_service_sql_conn == f"sqlite:///{tmp_path / 'st' / 'metastore.db'}"


def test_state_dir_defaults_under_airflow_home(home: Path, env: dict[str, str], make: Callable[..., Path]) -> None:
    config = load(make(state_dir=None), env)
    assert config.state_dir == home / "scheduler_failover"
    assert config.metadata_service_sql_conn == f"sqlite:///{home / 'scheduler_failover' / 'metastore.db'}"


# --- [smtp] ------------------------------------------------------------------------------------


def test_smtp_defaults_without_section(env: dict[str, str], make: Callable[..., Path]) -> None:
    assert load(make(), env).smtp == SmtpConfig()


def test_smtp_section_is_read_like_airflow(env: dict[str, str], make: Callable[..., Path]) -> None:
    path = make(
        extra="""
[smtp]
smtp_host = mail.example.com
smtp_starttls = False
smtp_ssl = True
smtp_user = alerts
smtp_password = hunter2
smtp_port = 465
smtp_mail_from = af@example.com
smtp_timeout = 12
smtp_retry_limit = 5
"""
    )
    smtp = load(path, env).smtp
    assert smtp == SmtpConfig(
        host="mail.example.com",
        port=465,
        starttls=False,
        ssl=True,
        user="alerts",
        password="hunter2",
        mail_from="af@example.com",
        timeout=12.0,
    )


def test_smtp_env_overrides_section(env: dict[str, str], make: Callable[..., Path]) -> None:
    path = make(extra="[smtp]\nsmtp_host = file-host\nsmtp_port = 25\n")
    env["AIRFLOW__SMTP__SMTP_HOST"] = "env-host"
    env["AIRFLOW__SMTP__SMTP_PORT"] = "2525"
    env["AIRFLOW__SMTP__SMTP_STARTTLS"] = "off"
    env["AIRFLOW__SMTP__SMTP_PASSWORD"] = "from-env"
    smtp = load(path, env).smtp
    assert (smtp.host, smtp.port, smtp.starttls, smtp.password) == ("env-host", 2525, False, "from-env")


def test_bad_smtp_value_in_file(env: dict[str, str], make: Callable[..., Path]) -> None:
    path = make(extra="[smtp]\nsmtp_port = twenty-five\n")
    expect_error(path, env, str(path), "[smtp]", "smtp_port", "'twenty-five'")


def test_bad_smtp_value_in_env(env: dict[str, str], make: Callable[..., Path]) -> None:
    env["AIRFLOW__SMTP__SMTP_STARTTLS"] = "maybe"
    expect_error(make(), env, "AIRFLOW__SMTP__SMTP_STARTTLS", "smtp_starttls", "true or false")


# --- timing rules ------------------------------------------------------------------------------


def test_timing_defaults(env: dict[str, str], make: Callable[..., Path]) -> None:
    config = load(make(), env)
    assert (config.poll_frequency, config.lease_ttl) == (10.0, 40.0)
    assert config.metastore_timeout == 5.0
    assert config.scheduler_stop_timeout == 7.5  # (40 - 10) / 4
    assert config.ssh_timeout == 7.5
    assert config.move_backoff == 30.0
    assert config.scheduler_start_timeout == 60.0
    assert config.renew_interval == 10.0
    assert config.renew_interval + 2 * config.metastore_timeout <= config.lease_ttl


def test_derived_timeouts_follow_a_short_lease(env: dict[str, str], make: Callable[..., Path]) -> None:
    config = load(make(poll_frequency="1", lease_ttl="4"), env)
    assert config.renew_interval == 1.0
    assert config.metastore_timeout == 0.75  # (4 - 1) / 4
    assert config.scheduler_stop_timeout == 0.75
    assert config.ssh_timeout == 0.75
    assert config.move_backoff == 5.0
    assert config.renew_interval + 2 * config.metastore_timeout <= config.lease_ttl


def test_the_2016_poll_of_60s_runs_with_the_default_lease(env: dict[str, str], make: Callable[..., Path]) -> None:
    # Renewals have their own clock: a poll longer than the lease is only a slow probe.
    config = load(make(poll_frequency="60"), env)
    assert (config.poll_frequency, config.lease_ttl, config.renew_interval) == (60.0, 40.0, 10.0)
    assert config.metastore_timeout == 5.0
    assert config.scheduler_stop_timeout == 7.5


def test_lease_rule_boundary_is_allowed(env: dict[str, str], make: Callable[..., Path]) -> None:
    config = load(make(poll_frequency="10", lease_ttl="20", metastore_timeout="5"), env)
    assert config.metastore_timeout == 5.0
    # the derived stop timeout shrinks to fit: renewal 5 + 2 x 5 + stop + margin 2 <= 20
    assert config.scheduler_stop_timeout == 3.0


def test_lease_shorter_than_renewal_plus_two_timeouts_is_rejected(
    env: dict[str, str], make: Callable[..., Path]
) -> None:
    path = make(poll_frequency="10", lease_ttl="15", metastore_timeout="6")
    expect_error(path, env, str(path), "lease_ttl", "renewal interval + 2 x metastore_timeout (3.75 + 2 x 6)")


def test_lease_rule_from_env_names_the_env_var(env: dict[str, str], make: Callable[..., Path]) -> None:
    env[ENV + "LEASE_TTL"] = "12"
    expect_error(make(poll_frequency="10", metastore_timeout="5"), env, ENV + "LEASE_TTL", "lease_ttl")


@pytest.mark.parametrize("key", ["scheduler_stop_timeout", "ssh_timeout"])
def test_command_timeouts_must_fit_in_the_lease(key: str, env: dict[str, str], make: Callable[..., Path]) -> None:
    ok = load(make(poll_frequency="10", lease_ttl="80", **{key: "29.5"}), env)
    assert getattr(ok, key) == 29.5
    path = make(poll_frequency="10", lease_ttl="40", **{key: "30"})
    expect_error(path, env, str(path), key, "must be < lease_ttl - renewal interval (30s)")


def test_a_renewal_must_land_before_the_leash_stops_the_scheduler(
    env: dict[str, str], make: Callable[..., Path]
) -> None:
    # renewal 10 + 2 x 5 + stop + margin 4 <= 40: a stop timeout of 16 fits, 16.5 does not
    assert (
        load(make(poll_frequency="10", lease_ttl="40", scheduler_stop_timeout="16"), env).scheduler_stop_timeout == 16
    )
    path = make(poll_frequency="10", lease_ttl="40", scheduler_stop_timeout="16.5")
    expect_error(path, env, str(path), "scheduler_stop_timeout", "before the leash starts stopping the scheduler")


# --- secrets -----------------------------------------------------------------------------------


def test_redacted_hides_sql_and_smtp_passwords(env: dict[str, str], make: Callable[..., Path]) -> None:
    path = make(
        extra="[smtp]\nsmtp_user = alerts\nsmtp_password = hunter2-smtp\n",
        metadata_service_sql_conn="mysql+pymysql://sfc:Sql-S3cret@db.example.com:3306/airflow",
    )
    config = load(path, env)

    shown = config.redacted()
    text = json.dumps(shown)  # plain values only

    assert "Sql-S3cret" not in text and "hunter2-smtp" not in text
    assert shown["metadata_service_sql_conn"] == "mysql+pymysql://sfc:***@db.example.com:3306/airflow"
    assert shown["smtp"]["password"] == "***"
    assert shown["smtp"]["user"] == "alerts"
    assert shown["nodes"] == [HOST]
    assert shown["state_dir"] == str(config.state_dir)
    assert "Sql-S3cret" not in repr(config) and "hunter2-smtp" not in repr(config)


def test_redacted_keeps_empty_password_empty(env: dict[str, str], make: Callable[..., Path]) -> None:
    shown = load(make(), env).redacted()
    assert shown["smtp"]["password"] == ""
    assert shown["metadata_service_sql_conn"].startswith("sqlite:///")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql+pymysql://u:pw@h:3306/db", "mysql+pymysql://u:***@h:3306/db"),
        ("mysql://u:p@ss:w@rd@h/db", "mysql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:////var/lib/sfc/metastore.db", "sqlite:////var/lib/sfc/metastore.db"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# --- the {node} placeholder ---------------------------------------------------------------------


def test_node_placeholder_is_shell_quoted_in_commands(env: dict[str, str], make: Callable[..., Path]) -> None:
    config = load(
        make(
            airflow_scheduler_start_command="/opt/start.sh --node {node}",
            airflow_scheduler_stop_command="/opt/stop.sh {node} && echo {node}",
            scheduler_process_match="fake_scheduler --node {node}",
        ),
        env,
    )

    assert config.start_command("node-a") == "/opt/start.sh --node node-a"
    assert config.stop_command("node-a") == "/opt/stop.sh node-a && echo node-a"
    hostile = "x; rm -rf / $(reboot) `id`"
    assert shlex.split(config.start_command(hostile)) == ["/opt/start.sh", "--node", hostile]
    assert config.stop_command(hostile) == f"/opt/stop.sh {shlex.quote(hostile)} && echo {shlex.quote(hostile)}"
    assert config.process_match("node-b") == "fake_scheduler --node node-b"


def test_commands_without_placeholder_are_unchanged(env: dict[str, str], make: Callable[..., Path]) -> None:
    config = load(make(airflow_scheduler_start_command="airflow scheduler -D"), env)
    assert config.start_command("node-a") == "airflow scheduler -D"
    assert config.stop_command("node-a") == ""


# --- every bad input: one line naming the key and the file ------------------------------------

BAD_VALUES: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
    ("unknown-key", {"frobnicate": "1"}, ("frobnicate", "unknown key")),
    ("bad-number", {"poll_frequency": "ten"}, ("poll_frequency", "'ten'")),
    ("negative-poll", {"poll_frequency": "-1"}, ("poll_frequency", "positive")),
    ("zero-poll", {"poll_frequency": "0"}, ("poll_frequency", "positive")),
    ("zero-lease", {"lease_ttl": "0"}, ("lease_ttl", "positive")),
    ("nan-poll", {"poll_frequency": "nan"}, ("poll_frequency",)),
    ("infinite-lease", {"lease_ttl": "inf"}, ("lease_ttl",)),
    ("zero-metastore-timeout", {"metastore_timeout": "0"}, ("metastore_timeout",)),
    ("negative-start-timeout", {"scheduler_start_timeout": "-5"}, ("scheduler_start_timeout",)),
    ("negative-stop-timeout", {"scheduler_stop_timeout": "-1"}, ("scheduler_stop_timeout",)),
    ("negative-move-backoff", {"move_backoff": "-1"}, ("move_backoff",)),
    ("negative-restarts", {"max_restart_attempts": "-1"}, ("max_restart_attempts",)),
    ("fractional-retry-count", {"retry_count_before_alerting": "2.5"}, ("retry_count_before_alerting",)),
    ("negative-retry-count", {"retry_count_before_alerting": "-1"}, ("retry_count_before_alerting",)),
    ("negative-backup-count", {"logs_rotate_backup_count": "-3"}, ("logs_rotate_backup_count",)),
    ("ssh-port-out-of-range", {"ssh_port": "70000"}, ("ssh_port",)),
    ("negative-metrics-port", {"metrics_port": "-1"}, ("metrics_port",)),
    ("empty-node-list", {"scheduler_nodes_in_cluster": ""}, ("scheduler_nodes_in_cluster", "empty")),
    ("commas-only-node-list", {"scheduler_nodes_in_cluster": " , ,"}, ("scheduler_nodes_in_cluster", "empty")),
    ("node-twice", {"scheduler_nodes_in_cluster": "node-a, node-b, node-a"}, ("scheduler_nodes_in_cluster", "twice")),
    ("node-twice-in-other-case", {"scheduler_nodes_in_cluster": "node-a, node-b, NODE-B"}, ("NODE-B", "ignore case")),
    ("node-semicolon", {"scheduler_nodes_in_cluster": "node-a, node-b;reboot"}, ("scheduler_nodes_in_cluster",)),
    ("node-dollar", {"scheduler_nodes_in_cluster": "node-a, $(reboot)"}, ("scheduler_nodes_in_cluster",)),
    ("node-backtick", {"scheduler_nodes_in_cluster": "node-a, `reboot`"}, ("scheduler_nodes_in_cluster",)),
    ("node-space", {"scheduler_nodes_in_cluster": "node-a, node b"}, ("scheduler_nodes_in_cluster",)),
    ("node-pipe", {"scheduler_nodes_in_cluster": "node-a, a|b"}, ("scheduler_nodes_in_cluster",)),
    ("node-ampersand", {"scheduler_nodes_in_cluster": "node-a, a&b"}, ("scheduler_nodes_in_cluster",)),
    ("node-redirect", {"scheduler_nodes_in_cluster": "node-a, a>b"}, ("scheduler_nodes_in_cluster",)),
    ("node-quote", {"scheduler_nodes_in_cluster": "node-a, a'b"}, ("scheduler_nodes_in_cluster",)),
    ("node-backslash", {"scheduler_nodes_in_cluster": "node-a, a\\b"}, ("scheduler_nodes_in_cluster",)),
    ("node-parenthesis", {"scheduler_nodes_in_cluster": "node-a, node(1)"}, ("scheduler_nodes_in_cluster",)),
    ("node-glob", {"scheduler_nodes_in_cluster": "node-a, node*"}, ("scheduler_nodes_in_cluster",)),
    ("current-not-listed", {"scheduler_nodes_in_cluster": "node-b, node-c"}, ("current_host", "node-a")),
    ("local-node-not-listed", {"local_nodes": "node-z"}, ("local_nodes", "node-z")),
    ("lease-too-short", {"poll_frequency": "10", "lease_ttl": "15", "metastore_timeout": "6"}, ("lease_ttl",)),
    ("stop-timeout-too-long", {"scheduler_stop_timeout": "30"}, ("scheduler_stop_timeout",)),
    ("ssh-timeout-too-long", {"ssh_timeout": "45"}, ("ssh_timeout",)),
    ("bad-logging-level", {"logging_level": "VERBOSE"}, ("logging_level", "'VERBOSE'")),
    ("bad-rotate-when", {"logs_rotate_when": "W7"}, ("logs_rotate_when",)),
    ("bad-ssh-policy", {"ssh_host_key_policy": "yes"}, ("ssh_host_key_policy", "reject")),
    ("bad-service-type", {"metadata_service_type": "redis"}, ("metadata_service_type",)),
    ("sql-conn-not-a-url", {"metadata_service_sql_conn": "db.example.com:3306"}, ("metadata_service_sql_conn",)),
    (
        "sql-conn-bad-port",
        {"metadata_service_sql_conn": "mysql+pymysql://u:Pw-S3cret@db:notaport/x"},
        ("metadata_service_sql_conn",),
    ),
    ("empty-process-match", {"scheduler_process_match": ""}, ("scheduler_process_match",)),
    ("unbalanced-process-match", {"scheduler_process_match": 'airflow "scheduler'}, ("scheduler_process_match",)),
]


@pytest.mark.parametrize(("overrides", "needles"), [c[1:] for c in BAD_VALUES], ids=[c[0] for c in BAD_VALUES])
def test_bad_value_in_file_is_one_line_naming_key_and_file(
    overrides: dict[str, str], needles: tuple[str, ...], env: dict[str, str], make: Callable[..., Path]
) -> None:
    path = make(**overrides)
    message = expect_error(path, env, str(path), *needles)
    assert "Pw-S3cret" not in message


ENV_BAD_VALUES = [
    ("POLL_FREQUENCY", "-2", "poll_frequency"),
    ("RETRY_COUNT_BEFORE_ALERTING", "many", "retry_count_before_alerting"),
    ("SCHEDULER_NODES_IN_CLUSTER", "node-a,node-a", "scheduler_nodes_in_cluster"),
    ("SCHEDULER_NODES_IN_CLUSTER", " ", "scheduler_nodes_in_cluster"),
    ("LOGGING_LEVEL", "loud", "logging_level"),
    ("SSH_HOST_KEY_POLICY", "trust", "ssh_host_key_policy"),
    ("SCHEDULER_STOP_TIMEOUT", "100", "scheduler_stop_timeout"),
]


@pytest.mark.parametrize(("name", "value", "key"), ENV_BAD_VALUES)
def test_bad_value_in_env_is_one_line_naming_key_and_env_var(
    name: str, value: str, key: str, env: dict[str, str], make: Callable[..., Path]
) -> None:
    env[ENV + name] = value
    expect_error(make(), env, ENV + name, key)


def test_unknown_key_in_file_names_key_and_file(env: dict[str, str], make: Callable[..., Path]) -> None:
    path = make(scheduler_nodes="node-a")  # a typo of scheduler_nodes_in_cluster
    expect_error(path, env, str(path), "scheduler_nodes", "unknown key")


def test_current_host_from_hostname_not_listed(env: dict[str, str], make: Callable[..., Path]) -> None:
    path = make(scheduler_nodes_in_cluster="node-b", current_host=None)
    expect_error(path, env, str(path), "current_host", "'node-a'", "node-b")


# --- files that cannot be read -----------------------------------------------------------------


def test_directory_as_explicit_config(tmp_path: Path, env: dict[str, str]) -> None:
    folder = tmp_path / "a-directory"
    folder.mkdir()
    expect_error(folder, env, str(folder), "cannot read")


def test_directory_as_airflow_cfg(home: Path, env: dict[str, str]) -> None:
    (home / "airflow.cfg").mkdir()
    expect_error(None, env, str(home / "airflow.cfg"), "cannot read")


def test_invalid_utf8_file(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "latin1.cfg"
    path.write_bytes(b"[scheduler_failover]\nalert_email_subject = caf\xe9 \xff\n")
    expect_error(path, env, str(path), "not a valid INI file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path: Path, env: dict[str, str], make: Callable[..., Path]) -> None:
    path = make()
    path.chmod(0)
    try:
        expect_error(path, env, str(path), "cannot read")
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize(
    "text",
    [
        "scheduler_nodes_in_cluster = node-a\n",  # no section header
        "[scheduler_failover]\npoll_frequency = 1\npoll_frequency = 2\n",  # duplicate key
        "[scheduler_failover]\n[scheduler_failover]\n",  # duplicate section
        "[scheduler_failover]\njust some words\n",  # not key = value
        "[scheduler_failover\npoll_frequency = 1\n",  # broken header
    ],
    ids=["no-section", "duplicate-key", "duplicate-section", "no-equals", "broken-header"],
)
def test_invalid_ini(text: str, tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "broken.cfg"
    path.write_text(text, encoding="utf-8")
    expect_error(path, env, str(path), "not a valid INI file")


def test_invalid_ini_as_default_airflow_cfg(home: Path, env: dict[str, str]) -> None:
    (home / "airflow.cfg").write_text("[core]\nexecutor\n", encoding="utf-8")
    expect_error(None, env, str(home / "airflow.cfg"), "not a valid INI file")


def test_sqlite_metastore_with_nodes_on_other_hosts_is_refused(env: dict[str, str], make: Callable[..., Path]) -> None:
    """Each host would own a private SQLite file and elect itself: refuse it at load time."""
    expect_error(make(scheduler_nodes_in_cluster="node-a, node-b"), env, "metadata_service_sql_conn", "one host")
    both_local = load(
        make(scheduler_nodes_in_cluster="node-a, node-b", local_nodes="node-b", scheduler_process_match="s {node}"), env
    )
    assert both_local.metadata_service_sql_conn.startswith("sqlite")


def test_node_names_that_look_like_options_are_refused(env: dict[str, str], make: Callable[..., Path]) -> None:
    expect_error(make(scheduler_nodes_in_cluster="node-a, -oProxyCommand=x"), env, "scheduler_nodes_in_cluster")


def test_a_default_section_does_not_leak_into_ours(env: dict[str, str], make: Callable[..., Path]) -> None:
    assert load(make(extra="[DEFAULT]\nsomething = 1\n"), env).current_host == HOST


# --- ZooKeeper ---------------------------------------------------------------------------------


def test_zookeeper_keys_and_alias(env: dict[str, str], make: Callable[..., Path]) -> None:
    config = load(
        make(
            metadata_service_type="zookeeper",
            metadata_service_zookeeper_nodes="zk1:2181,zk2:2181,zk3:2181/airflow",
            metadata_service_zookeeper_root="/sfc/prod",
            metadata_service_zookeeper_auth="sfc:s3cret",
        ),
        env,
    )
    assert config.metadata_service_type == "ZookeeperMetadataService"
    assert config.metadata_service_zookeeper_nodes == "zk1:2181,zk2:2181,zk3:2181/airflow"
    assert config.metadata_service_zookeeper_root == "/sfc/prod"
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("metadata_service_zookeeper_nodes", "zk1", "is not host:port"),
        ("metadata_service_zookeeper_nodes", "zk1:notaport", "is not host:port"),
        ("metadata_service_zookeeper_nodes", "zk1:2181/chroot/", "chroot"),
        ("metadata_service_zookeeper_root", "relative", "absolute ZooKeeper path"),
        ("metadata_service_zookeeper_root", "/", "absolute ZooKeeper path"),
        ("metadata_service_zookeeper_auth", "nopassword", "user:password"),
        ("metadata_service_zookeeper_ca", "/no/such/ca.pem", "not a readable file"),
        ("metadata_service_zookeeper_certfile", "/no/such/cert.pem", "not a readable file"),
        ("metadata_service_zookeeper_use_ssl", "maybe", "true or false"),
    ],
)
def test_bad_zookeeper_values_name_the_key(
    env: dict[str, str], make: Callable[..., Path], key: str, value: str, needle: str
) -> None:
    expect_error(make(metadata_service_type="zookeeper", **{key: value}), env, key, needle)


def test_a_remote_stop_longer_than_the_lease_is_allowed(env: dict[str, str], make: Callable[..., Path]) -> None:
    # The lease is renewed by its own thread while a stop runs, and again right before a start.
    shared = "mysql+pymysql://sfc:pw@db.example:3306/airflow"
    keys = {"scheduler_nodes_in_cluster": "node-a, node-b", "metadata_service_sql_conn": shared}
    config = load(make(**keys, poll_frequency="10", lease_ttl="40", ssh_timeout="10", scheduler_stop_timeout="10"), env)
    assert config.scheduler_stop_timeout + 2 * config.ssh_timeout >= config.lease_ttl - config.poll_frequency


# --- the 2016 controller's section, and airflow.cfg read the way Airflow reads it ---------------

SECTION_2016 = """\
[core]
sql_alchemy_conn = mysql+pymysql://airflow:p%%40ss@db.example:3306/airflow

[scheduler_failover]
scheduler_nodes_in_cluster = localhost
metadata_service_type = SQLMetadataService
metadata_service_zookeeper_nodes = localhost:2181
poll_frequency = 60
airflow_scheduler_start_command = {start}
airflow_scheduler_stop_command = {stop}
logging_level = INFO
logging_dir =  /home/airflow/airflow/logs/scheduler_failover/
logging_file_name = scheduler_failover_controller.log
logs_rotate_when = midnight
logs_rotate_backup_count = 7
retry_count_before_alerting = 5
alert_to_email = airflow@airflow.com
alert_email_subject = Airflow Alert - Scheduler Failover Controller Failed to Startup Scheduler
""".format(  # the two long lines, verbatim
    start="export AIRFLOW_HOME=/home/airflow/airflow;;nohup airflow scheduler >> ~/airflow/logs/scheduler.logs &",
    stop="""for pid in `ps -ef | grep "airflow scheduler" | awk '{print $2}'` \\; do kill -9 $pid \\; done""",
)


def test_the_2016_section_loads_unchanged(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "airflow.cfg"
    path.write_text(SECTION_2016, encoding="utf-8")
    config = load(path, env, hostname=lambda: "vm")
    assert config.current_host == "localhost" and config.nodes == ("localhost",)  # "localhost" is this host
    assert config.poll_frequency == 60 and config.lease_ttl == 40 and config.renew_interval == 10
    assert config.airflow_scheduler_start_command == (
        "export AIRFLOW_HOME=/home/airflow/airflow;nohup airflow scheduler >> ~/airflow/logs/scheduler.logs &"
    )
    assert config.airflow_scheduler_stop_command == (
        """for pid in `ps -ef | grep "airflow scheduler" | awk '{print $2}'` ; do kill -9 $pid ; done"""
    )
    assert config.alert_to_email == ("airflow@airflow.com",)
    # [core] is Airflow's: read with its interpolation, so "%%" is "%" as Airflow sees it
    assert config.metadata_service_sql_conn == "mysql+pymysql://airflow:p%40ss@db.example:3306/airflow"


def test_localhost_does_not_replace_a_named_current_host(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "airflow.cfg"
    path.write_text(SECTION_2016.replace("= localhost\n", "= localhost, vm\n", 1), encoding="utf-8")
    assert load(path, env, hostname=lambda: "vm").current_host == "vm"


def test_our_section_is_read_raw_as_2016_read_it(make: Callable[..., Path], env: dict[str, str]) -> None:
    config = load(make(airflow_scheduler_start_command="date +%s >> /tmp/x; exec airflow scheduler"), env)
    assert config.airflow_scheduler_start_command == "date +%s >> /tmp/x; exec airflow scheduler"


def test_a_lone_percent_in_an_airflow_section_is_one_line(make: Callable[..., Path], env: dict[str, str]) -> None:
    path = make(extra="[smtp]\nsmtp_password = 100%sure\n")
    message = expect_error(path, env, str(path), "[smtp] smtp_password", "'%%'")
    assert "100" not in message  # the password is not shown
