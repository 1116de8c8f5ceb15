"""The metastore's SQL connection and its fallbacks, Airflow's [smtp] section, and the secrets in
both kept out of what the config shows (README, Configuration).

Files in tmp_path, loaded with an explicit ``env`` dict and hostname (tests/unit/config_support.py; the
``home``, ``env`` and ``make`` fixtures are in tests/unit/conftest.py): the real environment is never read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from scheduler_failover_controller.config import SmtpConfig
from scheduler_failover_controller.redaction import redact_url
from tests.unit.config_support import ENV, HOST, expect_error, load

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
