"""Where the config comes from (README, Configuration): the file an explicit path,
SCHEDULER_FAILOVER_CONTROLLER_CONFIG or airflow.cfg names, environment overrides, and files that
cannot be read.

Files in tmp_path, loaded with an explicit ``env`` dict and hostname (tests/unit/config_support.py; the
``home``, ``env`` and ``make`` fixtures are in tests/unit/conftest.py): the real environment is never read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from scheduler_failover_controller.config import CONFIG_ENV, SQL_SERVICE, airflow_home
from tests.unit.config_support import ENV, HOST, expect_error, load, render

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


def test_a_default_section_does_not_leak_into_ours(env: dict[str, str], make: Callable[..., Path]) -> None:
    assert load(make(extra="[DEFAULT]\nsomething = 1\n"), env).current_host == HOST
