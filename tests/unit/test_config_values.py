"""What each key's value means (README, Configuration): the 2016 keys and sections, ZooKeeper's
keys, the {node} placeholder, and airflow.cfg read the way Airflow reads it.

Files in tmp_path, loaded with an explicit ``env`` dict and hostname (tests/unit/config_support.py; the
``home``, ``env`` and ``make`` fixtures are in tests/unit/conftest.py): the real environment is never read.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from scheduler_failover_controller.config import SQL_SERVICE, ZOOKEEPER_SERVICE, default_config_text
from tests.unit.config_support import HOST, SECTION_2016, expect_error, load

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
    assert config.lease_ttl == 8.0
    assert config.ssh_host_key_policy == "reject"
    assert "{node}" in path.read_text(encoding="utf-8")  # the placeholder is documented literally


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


def test_the_2016_section_loads_unchanged(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "airflow.cfg"
    path.write_text(SECTION_2016, encoding="utf-8")
    config = load(path, env, hostname=lambda: "vm")
    assert config.current_host == "localhost" and config.nodes == ("localhost",)  # "localhost" is this host
    assert config.poll_frequency == 60 and config.lease_ttl == 8 and config.renew_interval == 2
    assert config.metastore_timeout == 1.5 and config.scheduler_stop_timeout == 1.5
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
    path = make(extra="[smtp]\nsmtp_password = Qz7kw%sure\n")
    message = expect_error(path, env, str(path), "[smtp] smtp_password", "'%%'")
    assert "Qz7kw" not in message and "sure" not in message  # the password is not shown
