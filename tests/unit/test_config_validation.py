"""Config values refused at load time (README, Configuration): the timing rules the lease needs,
and every bad value as one line naming the key and the file or env var.

Files in tmp_path, loaded with an explicit ``env`` dict and hostname (tests/unit/config_support.py; the
``home``, ``env`` and ``make`` fixtures are in tests/unit/conftest.py): the real environment is never read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.config_support import ENV, expect_error, load

# --- timing rules ------------------------------------------------------------------------------


def test_timing_defaults(env: dict[str, str], make: Callable[..., Path]) -> None:
    config = load(make(), env)
    assert (config.poll_frequency, config.lease_ttl) == (10.0, 8.0)
    assert config.renew_interval == 2.0  # 8 / 4
    assert config.metastore_timeout == 1.5  # (8 - 2) / 4
    assert config.scheduler_stop_timeout == 1.5
    assert config.ssh_timeout == 1.5
    assert config.safety_margin == 0.8
    assert config.move_backoff == 30.0
    assert config.scheduler_start_timeout == 60.0
    assert config.renew_interval + 2 * config.metastore_timeout <= config.lease_ttl
    rule = config.renew_interval + 2 * config.metastore_timeout + config.scheduler_stop_timeout + config.safety_margin
    assert rule <= config.lease_ttl


def test_default_lease_replaces_a_lost_host_within_15s(env: dict[str, str], make: Callable[..., Path]) -> None:
    # A lost host's placement runs out within lease_ttl; the active sees it within a renewal
    # interval, and in self mode the new node takes its placement up within another.
    for poll in ("10", "1", "60"):
        config = load(make(poll_frequency=poll), env)
        assert config.lease_ttl + 2 * config.renew_interval <= 12.0, poll
        # from a healthy node's last renewal to its leash's first stop (a shorter poll gives a
        # shorter renewal interval, hence a longer metastore_timeout and stop timeout)
        assert config.lease_ttl - config.safety_margin - config.scheduler_stop_timeout >= 5.4, poll


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
    assert (config.poll_frequency, config.lease_ttl, config.renew_interval) == (60.0, 8.0, 2.0)
    assert config.metastore_timeout == 1.5
    assert config.scheduler_stop_timeout == 1.5


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


def test_sqlite_metastore_with_nodes_on_other_hosts_is_refused(env: dict[str, str], make: Callable[..., Path]) -> None:
    """Each host would own a private SQLite file and elect itself: refuse it at load time."""
    expect_error(make(scheduler_nodes_in_cluster="node-a, node-b"), env, "metadata_service_sql_conn", "one host")
    both_local = load(
        make(scheduler_nodes_in_cluster="node-a, node-b", local_nodes="node-b", scheduler_process_match="s {node}"), env
    )
    assert both_local.metadata_service_sql_conn.startswith("sqlite")


def test_node_names_that_look_like_options_are_refused(env: dict[str, str], make: Callable[..., Path]) -> None:
    expect_error(make(scheduler_nodes_in_cluster="node-a, -oProxyCommand=x"), env, "scheduler_nodes_in_cluster")
