"""The HTTP API's keys and log_summary_interval: http_port with metrics_port as its old name,
http_host, the http_token secret."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from scheduler_failover_controller.redaction import MASK, config_secrets

from .config_support import ENV, expect_error, load

TOKEN = "0123456789abcdef-token"


def test_http_defaults(env: dict[str, str], make: Callable[..., Path]) -> None:
    config = load(make(), env)
    assert (config.http_port, config.http_host, config.http_token) == (0, "127.0.0.1", "")
    assert config.log_summary_interval == 600.0


def test_metrics_port_is_the_old_name_of_http_port(env: dict[str, str], make: Callable[..., Path]) -> None:
    assert load(make(metrics_port="9109"), env).http_port == 9109
    env[ENV + "METRICS_PORT"] = "9110"
    assert load(make(), env).http_port == 9110
    assert load(make(http_port="9111", metrics_port="9109"), env).http_port == 9111  # the new name wins


def test_http_host_must_be_an_address(env: dict[str, str], make: Callable[..., Path]) -> None:
    assert load(make(http_host="0.0.0.0"), env).http_host == "0.0.0.0"
    assert load(make(http_host="::1"), env).http_host == "::1"
    expect_error(make(http_host="my host"), env, "sfc.cfg", "http_host", "not an IP address")


def test_http_token_is_a_secret(env: dict[str, str], make: Callable[..., Path], tmp_path: Path) -> None:
    config = load(make(http_token=TOKEN), env)
    assert config.http_token == TOKEN
    assert TOKEN not in repr(config) and config.redacted()["http_token"] == MASK
    assert TOKEN in config_secrets(config)  # masked in every log line
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    secret.chmod(0o600)
    assert load(make(http_token_file=str(secret)), env).http_token == TOKEN
    message = expect_error(make(http_token="short"), env, "http_token", "at least 16 characters")
    assert "short" not in message


def test_log_summary_interval(env: dict[str, str], make: Callable[..., Path]) -> None:
    assert load(make(log_summary_interval="0"), env).log_summary_interval == 0.0
    assert load(make(log_summary_interval="30"), env).log_summary_interval == 30.0
    expect_error(make(log_summary_interval="soon"), env, "log_summary_interval")
