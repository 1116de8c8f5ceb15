"""ZooKeeper znodes another client could write are never trusted, against the real ensemble.

With ``metadata_service_zookeeper_auth`` set, a root or record znode someone else created first
(with an open ACL, or one for another digest user) is refused with one line naming it, not
adopted. Without it, the store warns once that anyone who can reach the ensemble can rewrite it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.security import OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, make_digest_acl

from scheduler_failover_controller.exceptions import MetastoreError
from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore

LEASE, TIMEOUT = 10.0, 5.0
AUTH = "sfc:pw"


@pytest.fixture
def stranger(zk_hosts: str) -> Iterator[KazooClient]:
    """Another client of the ensemble, without our digest user (it may log in as its own)."""
    client = KazooClient(hosts=zk_hosts, timeout=LEASE, auth_data=[("digest", "eve:evil")])
    client.start(timeout=30)
    yield client
    client.stop()
    client.close()


def _store(zk_hosts: str, auth: str = AUTH) -> ZooKeeperMetastore:
    return ZooKeeperMetastore(zk_hosts, "/secured", LEASE, TIMEOUT, auth=auth)


def test_a_root_created_first_with_an_open_acl_is_refused(zk_hosts: str, stranger: KazooClient) -> None:
    stranger.create("/secured", b"", acl=OPEN_ACL_UNSAFE)
    store = _store(zk_hosts)
    try:
        with pytest.raises(MetastoreError, match=r"^znode /secured lets world:anyone write it") as caught:
            store.setup()
        assert "\n" not in str(caught.value)
    finally:
        store.close()


def test_a_planted_placement_is_refused(zk_hosts: str, stranger: KazooClient) -> None:
    ours = make_digest_acl("sfc", "pw", all=True)
    theirs = make_digest_acl("eve", "evil", all=True)
    stranger.create("/secured", b"", acl=[ours, theirs])
    stranger.create("/secured/placement", b'{"node": "evil", "epoch": 0, "version": 0, "ttl": 0}', acl=[ours, theirs])
    stranger.set_acls("/secured", [ours])  # the root looks right now; the record does not
    store = _store(zk_hosts)
    try:
        with pytest.raises(MetastoreError, match=r"^znode /secured/placement lets digest:eve:"):
            store.setup()
    finally:
        store.close()


def test_our_own_znodes_and_world_reading_are_accepted(zk_hosts: str, stranger: KazooClient) -> None:
    ours = make_digest_acl("sfc", "pw", all=True)
    stranger.create("/secured", b"", acl=[ours, *READ_ACL_UNSAFE])
    store = _store(zk_hosts)
    try:
        store.setup()
        store.setup()  # what it created itself passes the check too
        assert store.exposure() is None
    finally:
        store.close()


def test_without_auth_one_warning_that_everything_is_open(zk_hosts: str, caplog: pytest.LogCaptureFixture) -> None:
    store = _store(zk_hosts, auth="")
    try:
        with caplog.at_level(logging.WARNING):
            store.setup()
            store.setup()
        said = [r.getMessage() for r in caplog.records if "metadata_service_zookeeper_auth is empty" in r.getMessage()]
        assert len(said) == 1, caplog.text
        assert "anyone who can reach the ensemble can rewrite the placement" in said[0]
        assert store.exposure() == said[0]
    finally:
        store.close()


def test_test_connection_says_the_znodes_are_open_without_auth(zk_hosts: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from scheduler_failover_controller.cli import main
    from scheduler_failover_controller.config import CONFIG_ENV

    config = tmp_path / "sfc.cfg"
    config.write_text(
        "[scheduler_failover]\nscheduler_nodes_in_cluster = node-a\ncurrent_host = node-a\n"
        f"state_dir = {tmp_path / 'state'}\nscheduler_process_match = no_such_scheduler_77c1\n"
        f"metadata_service_type = zookeeper\nmetadata_service_zookeeper_nodes = {zk_hosts}\nlease_ttl = 10\n"
    )
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("AIRFLOW__")}
    env.update({CONFIG_ENV: None, "AIRFLOW_HOME": str(tmp_path)})
    result = CliRunner().invoke(main, ["--config", str(config), "test_connection"], env=env)
    assert result.exit_code == 0, result.output
    assert "  warning: metadata_service_zookeeper_auth is empty" in result.output
