"""No secret the config holds reaches any output, at any log level (issue 10, class 5).

Real controllers run at DEBUG on a real ZooKeeper ensemble with digest auth and on a real MariaDB
whose user has a password, with an SMTP password and a webhook URL carrying a token. Their logs
and every CLI command's output are grepped for each planted secret, in every form it could take
(raw, URL-decoded, the ZooKeeper ACL hash).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from scheduler_failover_controller.redaction import zookeeper_digest
from tests.conftest import MariaDB
from tests.process.harness import SFC, ZK_PREFIX, Cluster
from tests.support.waiting import wait_for

ZK_AUTH = "sfcuser:Zk-Planted-9431"
SQL_PASSWORD = "Sql-Planted@Tail5517"  # an "@" too: written %40 in the URL, as it must be
# Each planted piece is a word no log has by chance: a bare number such as 5517 can be a pid, a port
# or a request id in a DEBUG line.
SMTP_PASSWORD = "Smtp-Planted-2208"
HOOK = "http://127.0.0.1:9/hooks/Hook-Planted-7730?token=Tok-Planted-1180"
PLANTED = ["Zk-Planted-9431", zookeeper_digest(ZK_AUTH).split(":", 1)[1], "Sql-Planted", "Tail5517"]
PLANTED += [SMTP_PASSWORD, "Hook-Planted-7730", "Tok-Planted-1180"]

COMMANDS = [
    ["status"],
    ["status", "--json"],
    ["metadata"],
    ["metadata", "--json"],
    ["history"],
    ["test_connection"],
    ["send_test_email"],
    ["is_scheduler_running"],
    ["get_current_host"],
    ["version"],
]


def _secrets_config(cluster: Cluster, extra: str) -> None:
    """The cluster's config plus alerting with secrets, and Airflow's [smtp] with a password."""
    text = cluster.config.read_text()
    cluster.config.write_text(
        text
        + extra
        + f"alert_to_email = ops@example.com\nalert_webhook_url = {HOOK}\nretry_count_before_alerting = 1\n"
        + f"[smtp]\nsmtp_host = 127.0.0.1\nsmtp_port = 9\nsmtp_password = {SMTP_PASSWORD}\nsmtp_timeout = 2\n"
    )


def _leaks(text: str) -> list[str]:
    return [secret for secret in PLANTED if secret in text]


def _run_and_grep(cluster: Cluster) -> None:
    """Run two controllers at DEBUG through an election and a stop, and every command; grep it all."""
    cluster.observer.start()
    for node in cluster.nodes:
        cluster.start(node)
    wait_for(lambda: len(cluster.observer.current()) == 1, 60, "one scheduler running")
    outputs: dict[str, str] = {}
    for args in COMMANDS:
        done = cluster.cli(*args)
        outputs[" ".join(args)] = done.stdout + done.stderr
    # A failover: the active is stopped, the standby takes over (reconnects, ACL'd creates, alerts).
    active = cluster.active()
    assert active is not None, outputs["status"]
    cluster.signal(active, signal.SIGTERM)
    cluster.procs[active].wait(timeout=30)
    wait_for(lambda: cluster.active() not in (None, active), 60, "the standby to take over")
    time.sleep(1.0)
    for node in cluster.nodes:
        if cluster.procs[node].poll() is None:
            cluster.signal(node, signal.SIGTERM)
            cluster.procs[node].wait(timeout=30)
    for node in cluster.nodes:
        outputs[f"{node} log (DEBUG)"] = cluster.log(node)
    state = cluster.tmp / "state"
    for path in state.rglob("*") if state.exists() else []:
        if path.is_file() and path.stat().st_size < 1_000_000:
            outputs[f"state file {path.name}"] = path.read_text(errors="replace")
    leaks = {where: _leaks(text) for where, text in outputs.items() if _leaks(text)}
    assert not leaks, f"secrets shown: {leaks}"
    cluster.observer.stop()
    assert cluster.observer.max_seen <= 1


def test_zookeeper_digest_and_alert_secrets_never_shown(make_cluster: Callable[..., Cluster], zk_hosts: str) -> None:
    cluster = make_cluster(ZK_PREFIX + zk_hosts, 2)
    _secrets_config(cluster, f"metadata_service_zookeeper_auth = {ZK_AUTH}\n")
    _run_and_grep(cluster)
    # kazoo did log its requests at DEBUG: the mask, not silence, kept the digest out.
    assert "Auth(" in cluster.log("n1") or "Create(" in cluster.log("n1") or "Sending request" in cluster.log("n1")


def test_sql_password_never_shown_on_mariadb(make_cluster: Callable[..., Cluster], mariadb: MariaDB) -> None:
    database = mariadb.create_database()
    user = "sfc_pw_" + os.urandom(3).hex()
    with mariadb.admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (SQL_PASSWORD,))
        cur.execute(f"GRANT ALL ON `{database}`.* TO '{user}'@'127.0.0.1'")
    try:
        url = f"mysql+pymysql://{user}:{SQL_PASSWORD.replace('@', '%40')}@127.0.0.1:{mariadb.port}/{database}"
        cluster = make_cluster(url, 2)
        _secrets_config(cluster, "")
        _run_and_grep(cluster)
        # A wrong password, as a query parameter, and one with an unescaped "@": one line, no secret.
        for bad in (
            url.replace("Planted%40", "Planted-x"),
            f"mysql+pymysql://127.0.0.1:{mariadb.port}/{database}?user={user}&password=Sql-Planted-wrongTail5517",
            url.replace("%40", "@"),
        ):
            text = cluster.config.read_text()
            current = next(line for line in text.splitlines() if line.startswith("metadata_service_sql_conn"))
            cluster.config.write_text(text.replace(current, f"metadata_service_sql_conn = {bad}"))
            for args in (["status"], ["metadata"], ["test_connection"], ["start"]):
                done = _cli_with_timeout(cluster, args)
                out = done.stdout + done.stderr
                assert not _leaks(out), f"{args} with {bad[:20]}...: {out}"
                assert "Traceback" not in out, out
    finally:
        with mariadb.admin() as conn, conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        mariadb.drop_database(database)


def _cli_with_timeout(cluster: Cluster, args: list[str]) -> subprocess.CompletedProcess[str]:
    """A command; ``start`` (which keeps retrying a store it cannot log in to) is stopped after 4 s."""
    if args != ["start"]:
        return cluster.cli(*args)
    proc = subprocess.Popen(
        [*SFC, "--config", str(cluster.config), "start"],
        env=cluster.env("n1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=4)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(autouse=True)
def _no_inherited_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))
