"""Secret keys read from a command (``KEY_cmd``) or a file (``KEY_file``), as Airflow's ``_cmd``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scheduler_failover_controller.config import Config, load_config
from scheduler_failover_controller.config.indirect import run_secret_command, split_indirect
from scheduler_failover_controller.exceptions import ConfigError
from scheduler_failover_controller.redaction import config_secrets

ENV = "AIRFLOW__SCHEDULER_FAILOVER__"
HOOK = "https://hooks.example.com/services/Planted-Token-1"


def _load(tmp_path: Path, section: str, env: dict[str, str] | None = None, smtp: str = "") -> Config:
    cfg = tmp_path / "sfc.cfg"
    cfg.write_text(f"[scheduler_failover]\nstate_dir = {tmp_path / 'state'}\n{section}{smtp}")
    return load_config(str(cfg), {"AIRFLOW_HOME": str(tmp_path), **(env or {})}, hostname=lambda: "n1")


def _secret_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "secret"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_only_secret_keys_have_indirect_forms() -> None:
    assert split_indirect("alert_webhook_url_cmd") == ("alert_webhook_url", "_cmd")
    assert split_indirect("metadata_service_zookeeper_auth_file") == ("metadata_service_zookeeper_auth", "_file")
    assert split_indirect("metadata_service_sql_conn_secret") == ("metadata_service_sql_conn", "_secret")
    assert split_indirect("poll_frequency_cmd") is None


def test_a_command_gives_the_value_stripped_and_masked(tmp_path: Path) -> None:
    config = _load(tmp_path, f"alert_webhook_url_cmd = printf '  %s\\n' {HOOK}\n")
    assert config.alert_webhook_url == HOOK
    assert "Planted-Token-1" in config_secrets(config)


def test_a_file_gives_the_value_and_must_be_private(tmp_path: Path) -> None:
    path = _secret_file(tmp_path, "sfc:Zk-Pass-77\n")
    config = _load(tmp_path, f"metadata_service_zookeeper_auth_file = {path}\n")
    assert config.metadata_service_zookeeper_auth == "sfc:Zk-Pass-77"
    path.chmod(0o620)
    with pytest.raises(ConfigError, match=r"metadata_service_zookeeper_auth_file: .* writable by other users"):
        _load(tmp_path, f"metadata_service_zookeeper_auth_file = {path}\n")
    path.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        _load(tmp_path, f"metadata_service_zookeeper_auth_file = {link}\n")


def test_precedence_is_airflows_environment_first_then_plain_cmd_file(tmp_path: Path) -> None:
    path = _secret_file(tmp_path, "http://file.example.com/x")
    both = f"alert_webhook_url = http://plain.example.com/x\nalert_webhook_url_file = {path}\n"
    assert _load(tmp_path, both).alert_webhook_url == "http://plain.example.com/x"
    env = {ENV + "ALERT_WEBHOOK_URL_CMD": "echo http://env-cmd.example.com/x"}
    assert _load(tmp_path, both, env).alert_webhook_url == "http://env-cmd.example.com/x"
    env[ENV + "ALERT_WEBHOOK_URL"] = "http://env.example.com/x"
    assert _load(tmp_path, both, env).alert_webhook_url == "http://env.example.com/x"


def test_smtp_password_from_airflows_cmd_key_and_its_env_form(tmp_path: Path) -> None:
    smtp = "[smtp]\nsmtp_password = plain-pw\nsmtp_password_cmd = echo cmd-pw\n"
    assert _load(tmp_path, "", smtp=smtp).smtp.password == "plain-pw"
    smtp = "[smtp]\nsmtp_password_cmd = echo cmd-pw\nsmtp_password_secret = smtp/password\n"
    config = _load(tmp_path, "", smtp=smtp)
    assert config.smtp.password == "cmd-pw"
    assert "cmd-pw" in config_secrets(config)
    env = {"AIRFLOW__SMTP__SMTP_PASSWORD_CMD": "echo env-pw"}
    assert _load(tmp_path, "", env, smtp=smtp).smtp.password == "env-pw"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("alert_webhook_url_cmd = false", r"alert_webhook_url_cmd: false exited with 1$"),
        ("alert_webhook_url_cmd = /nonexistent/tool", r"alert_webhook_url_cmd: cannot run /nonexistent/tool: "),
        ("alert_webhook_url_cmd = true", r"alert_webhook_url_cmd: true printed nothing$"),
        ("alert_webhook_url_cmd = echo 'unbalanced", r"alert_webhook_url_cmd: cannot be split into words"),
        ("alert_webhook_url_file = relative/path", r"alert_webhook_url_file: 'relative/path' must be an absolute"),
        ("alert_webhook_url_file = /nonexistent/secret", r"alert_webhook_url_file: cannot read /nonexistent/secret"),
        ("metadata_service_sql_conn_secret = db/conn", r"metadata_service_sql_conn_secret: the controller reads no"),
        ("poll_frequency_cmd = echo 5", r"poll_frequency_cmd: unknown key"),
    ],
)
def test_a_failing_form_is_one_line_naming_the_key(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        _load(tmp_path, line + "\n")
    assert "\n" not in str(caught.value)


def test_a_command_that_hangs_is_cut_at_its_timeout() -> None:
    with pytest.raises(ConfigError, match=r"^k_cmd: .* did not finish within 0.5s$"):
        run_secret_command(f"{sys.executable} -c 'import time; time.sleep(30)'", "k_cmd", timeout=0.5)
    with pytest.raises(ConfigError, match=r"exited with 3: why not$"):
        run_secret_command(f"{sys.executable} -c 'import sys; sys.stderr.write(\"x\\nwhy not\\n\"); sys.exit(3)'", "k")
