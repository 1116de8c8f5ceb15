"""The leash's hygiene without real processes: what the scheduler's environment keeps, a leash that
may not signal, the cgroup's naming and leftovers (real processes: tests/process/test_leash_tree.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler_failover_controller.config import CONFIG_ENV, ENV_PREFIX
from scheduler_failover_controller.leash.cgroup import PREFIX, Cgroup, pid_namespace, sweep
from scheduler_failover_controller.leash.records import LeashRecord, parse_leash_record
from scheduler_failover_controller.leash.spec import child_environment, controller_only, scrubbed_environment
from scheduler_failover_controller.nodes.ssh.ps_table import ProcessEntry, probe_table

KEPT = {
    "PATH": "/usr/bin",
    "PYTHONPATH": "/opt/dags",
    "AIRFLOW_HOME": "/opt/airflow",
    "AIRFLOW__CORE__SQL_ALCHEMY_CONN": "postgresql://airflow@db/airflow",
    "AIRFLOW__SMTP__SMTP_PASSWORD": "airflow-reads-it-too",
    "AIRFLOW_CONN_WAREHOUSE": "postgresql://w",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "5",
}
DROPPED = {
    "AIRFLOW__SCHEDULER_FAILOVER__ALERT_WEBHOOK_URL": "https://hooks.example/T0k3n",
    "AIRFLOW__SCHEDULER_FAILOVER__ALERT_WEBHOOK_URL_CMD": "cat /run/secrets/hook",
    "AIRFLOW__SCHEDULER_FAILOVER__METADATA_SERVICE_ZOOKEEPER_AUTH_SECRET": "zk/auth",
    "AIRFLOW__SCHEDULER_FAILOVER__METADATA_SERVICE_ZOOKEEPER_AUTH": "sfc:pw",
    "SCHEDULER_FAILOVER_CONTROLLER_CONFIG": "/etc/sfc.cfg",
    "SFC_SCHEDULER_USER": "airflow",
    "SFC_PROCESS_MATCH": "airflow scheduler",
    "NOTIFY_SOCKET": "/run/systemd/notify",
}


def test_the_scheduler_keeps_airflows_settings_and_none_of_the_controllers() -> None:
    assert child_environment({**KEPT, **DROPPED}) == KEPT
    assert scrubbed_environment({**KEPT, **DROPPED}) == KEPT


def test_what_the_config_reads_from_the_environment_counts_as_the_controllers() -> None:
    assert controller_only(CONFIG_ENV)
    assert controller_only(ENV_PREFIX + "ANY_KEY")


def test_a_denied_leash_registers_and_no_probe_counts_it_leashed() -> None:
    boot = "b0000000-0000-4000-8000-000000000001"
    record = LeashRecord(10, 100.0, "denied", start=10000, boot=boot, hz=100)
    assert parse_leash_record(record.to_json()) == record
    leash = "/venv/bin/python -m scheduler_failover_controller.leash"
    table = [
        ProcessEntry(10, 1, tuple(leash.split()), "sleeping", 100.0, leash, started=100.0),
        ProcessEntry(
            30, 10, ("/venv/bin/airflow", "scheduler"), "sleeping", 101.0, "/venv/bin/airflow scheduler", started=101.0
        ),
    ]
    result = probe_table("n", table, "airflow scheduler", leashes=[record], boot=boot)
    assert result.pids == (30,) and not result.leashed
    tree = LeashRecord(10, 100.0, "tree", start=10000, boot=boot, hz=100)
    assert probe_table("n", table, "airflow scheduler", leashes=[tree], boot=boot).leashed


def test_only_cgroups_of_leashes_that_are_gone_are_swept(tmp_path: Path) -> None:
    """Of this PID namespace's leashes only: a pid of another namespace names another process here
    (a leash in a container whose pid is that of a dead one here must keep its tree)."""
    ns = pid_namespace()
    names = (f"{PREFIX}{ns}-11-500", f"{PREFIX}{ns}-12-600", f"{PREFIX}{ns + 1}-11-500", "other", f"{PREFIX}13")
    for name in names:
        (tmp_path / name).mkdir()
    alive = {(12, 600)}
    removed = sweep(tmp_path, lambda pid, ticks: (pid, ticks) in alive)
    assert removed == [tmp_path / f"{PREFIX}{ns}-11-500"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])


def test_a_cgroup_that_cannot_be_written_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scheduler_failover_controller.leash import cgroup as leash_cgroup

    monkeypatch.setattr(leash_cgroup, "parent_dir", lambda: "no cgroup2 hierarchy is mounted")
    assert Cgroup.create(1, 2) == "no cgroup2 hierarchy is mounted"
    monkeypatch.setattr(leash_cgroup, "parent_dir", lambda: tmp_path / "missing" / "deeper")
    made = Cgroup.create(1, 2)
    assert isinstance(made, str) and "cannot create" in made
