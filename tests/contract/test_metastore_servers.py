"""The metastore's servers: one that is not there, controller clocks minutes apart (libfaketime) on
a real MariaDB, and a real ZooKeeper ensemble's specifics (digest auth, session timeouts, a
suspended connection). Frozen and cut-off servers: test_metastore_faults.py.

The servers are tests/conftest.py's (``mariadb_url``, ``zk_hosts``, ``zk_ensemble``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from scheduler_failover_controller.exceptions import MetastoreError
from scheduler_failover_controller.metastore.sql import SQLMetastore
from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore
from tests.conftest import missing
from tests.contract.metastore_backends import LEASE, ROOT, TIMEOUT

# --- a server that is not there (frozen and cut-off servers: test_metastore_faults.py) ---------------


def test_unreachable_server_is_a_metastore_error() -> None:
    from tests.support.ports import free_port

    s = SQLMetastore(f"mysql+pymysql://u:pw@127.0.0.1:{free_port()}/x", 1.0)
    with pytest.raises(MetastoreError) as info:
        s.read_state()
    assert "pw" not in str(info.value)


def test_controller_clocks_minutes_apart_agree_on_expiry(mariadb_url: str, tmp_path: Path) -> None:
    """Contenders whose clocks are 10 minutes fast and slow (libfaketime) obey the server's clock."""
    faketime = shutil.which("faketime")
    if faketime is None:
        missing("faketime")
    script = tmp_path / "contend.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            from scheduler_failover_controller.metastore.sql import SQLMetastore
            s = SQLMetastore(sys.argv[1], 5.0)
            lease = s.acquire_or_renew(sys.argv[2], sys.argv[2], float(sys.argv[3]))
            print("won" if lease else "lost", lease.epoch if lease else -1, flush=True)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def contend(offset: str, holder: str, ttl: float) -> str:
        out = subprocess.run(
            [faketime, "-f", offset, sys.executable, str(script), mariadb_url, holder, str(ttl)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert out.returncode == 0, out.stderr[-1000:]
        return out.stdout.strip()

    assert contend("-10m", "slow", 3.0).startswith("won 1")
    # Ten minutes "later" by its own clock, the fast contender still sees a valid lease.
    assert contend("+10m", "fast", 3.0) == "lost -1"
    time.sleep(3.5)
    assert contend("+10m", "fast", 3.0) == "won 2"
    assert contend("-10m", "slow", 3.0) == "lost -1"


# --- ZooKeeper specifics ----------------------------------------------------------------------------


def test_zookeeper_digest_auth_protects_the_records(zk_hosts: str) -> None:
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoAuthError

    owner = ZooKeeperMetastore(zk_hosts, "/secured", LEASE, TIMEOUT, auth="sfc:pw")
    owner.setup()
    assert owner.acquire_or_renew("a", "host-a", LEASE) is not None
    stranger = KazooClient(hosts=zk_hosts, timeout=LEASE)
    stranger.start(timeout=10)
    try:
        with pytest.raises(NoAuthError):
            stranger.get("/secured/placement")
        with pytest.raises(NoAuthError):
            stranger.set("/secured/epoch", b"0")
    finally:
        stranger.stop()
        stranger.close()
    friend = ZooKeeperMetastore(zk_hosts, "/secured", LEASE, TIMEOUT, auth="sfc:pw")
    assert friend.read_state().lease.holder == "a"
    friend.close()
    # A wrong password or none: one line that says what to check, never a bare "NoAuthError:".
    for auth in ("sfc:wrong", ""):
        wrong = ZooKeeperMetastore(zk_hosts, "/secured", LEASE, TIMEOUT, auth=auth)
        with pytest.raises(MetastoreError, match=r"refused access.*NoAuthError.*metadata_service_zookeeper_auth"):
            wrong.read_state()
        wrong.close()
    owner.close()


def test_zookeeper_normal_close_is_no_lost_session(zk_hosts: str, caplog: pytest.LogCaptureFixture) -> None:
    store = ZooKeeperMetastore(zk_hosts, ROOT, LEASE, TIMEOUT)
    store.setup()
    store.read_state()
    with caplog.at_level(logging.DEBUG):
        store.close()
        time.sleep(0.5)  # kazoo reports the state change from its own thread
    assert not [r for r in caplog.records if "session lost" in r.getMessage()], caplog.text


def test_zookeeper_refuses_a_session_timeout_the_servers_will_not_grant(zk_hosts: str) -> None:
    """The ensemble allows at most 60 s: a 120 s lease must not silently become a 60 s session."""
    store = ZooKeeperMetastore(zk_hosts, ROOT, 120.0, TIMEOUT)
    with pytest.raises(MetastoreError, match="granted a session timeout of 60s but lease_ttl is 120s"):
        store.setup()
    store.close()


def test_zookeeper_suspended_connection_is_not_usable(zk_ensemble: Any, zk_hosts: str) -> None:
    store = ZooKeeperMetastore(zk_hosts, ROOT, LEASE, TIMEOUT)
    store.setup()
    assert store.acquire_or_renew("a", "a", LEASE) is not None and store.usable()
    for i in range(3):
        zk_ensemble.freeze(i)
    try:
        deadline = time.monotonic() + 2 * LEASE
        while store.usable() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not store.usable()
        with pytest.raises(MetastoreError):
            store.acquire_or_renew("a", "a", LEASE)
    finally:
        for i in range(3):
            zk_ensemble.thaw(i)
    store.close()
