"""ZooKeeper over TLS, on a real 3-server ensemble that requires client certificates.

The servers serve a TLS client port (Netty, PEM key and trust stores, ``ssl.clientAuth=need``)
beside their plain one; the certificates are made by the tests with openssl. The metastore must
work through ``metadata_service_zookeeper_use_ssl`` and its ``ca``/``certfile``/``keyfile`` keys,
and a server it cannot trust, or a missing client certificate, must fail as a clear
MetastoreError, never as a hang or a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scheduler_failover_controller.exceptions import MetastoreError
from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore
from tests.conftest import missing
from tests.support.tls import CA, Issued
from tests.support.zk import Ensemble, start_ensemble, zookeeper_available

# A TLS handshake with a JVM on a loaded 2-core machine (CI runs three lanes at once) takes seconds:
# the call's deadline leaves room for it; what is checked here is the outcome, not the speed.
LEASE, TIMEOUT = 15.0, 6.0
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Pki:
    ca: CA
    client: Issued
    rogue_ca: CA  # trusted by nobody
    rogue_client: Issued  # issued by the rogue CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        missing("openssl")
    directory = tmp_path_factory.mktemp("pki")
    ca, rogue = CA.create(directory, "sfc-test-ca"), CA.create(directory, "rogue-ca")
    return Pki(ca, ca.issue("controller"), rogue, rogue.issue("intruder"))


@pytest.fixture(scope="module")
def tls_ensemble(pki: Pki) -> Iterator[Ensemble]:
    if not zookeeper_available():
        missing("zookeeper (java, /usr/share/java/zookeeper.jar)")
    server = pki.ca.issue("zookeeper").combined()
    with start_ensemble(3, tls=(server, pki.ca.cert)) as ensemble:
        yield ensemble


def tls_store(ensemble: Ensemble, ca: Path, client: Issued | None, root: str) -> ZooKeeperMetastore:
    return ZooKeeperMetastore(
        ensemble.secure_hosts,
        root,
        LEASE,
        TIMEOUT,
        use_ssl=True,
        ca=str(ca),
        certfile=str(client.cert) if client else "",
        keyfile=str(client.key) if client else "",
    )


def test_metastore_over_tls_with_a_client_certificate(tls_ensemble: Ensemble, pki: Pki) -> None:
    store = tls_store(tls_ensemble, pki.ca.cert, pki.client, "/tls-ok")
    other = tls_store(tls_ensemble, pki.ca.cert, pki.client, "/tls-ok")
    try:
        store.setup()
        lease = store.acquire_or_renew("a", "host-a", LEASE)
        assert lease is not None and lease.epoch == 1
        placed = store.set_placement("n1", "a", lease.epoch, store.read_state().placement.version, 10)
        assert placed is not None and placed.node == "n1"
        assert other.acquire_or_renew("b", "host-b", LEASE) is None  # a's lease holds, over TLS too
        state = other.read_state()
        assert state.lease.holder == "a" and state.placement.node == "n1" and state.placement.valid
    finally:
        store.close()
        other.close()


@pytest.mark.parametrize("case", ["untrusted server", "no client certificate", "client of another CA"])
def test_tls_failures_are_clear_metastore_errors(tls_ensemble: Ensemble, pki: Pki, case: str) -> None:
    ca, client = {
        "untrusted server": (pki.rogue_ca.cert, pki.client),
        "no client certificate": (pki.ca.cert, None),
        "client of another CA": (pki.ca.cert, pki.rogue_client),
    }[case]
    store = tls_store(tls_ensemble, ca, client, "/tls-refused")
    try:
        with pytest.raises(MetastoreError, match="cannot connect"):
            store.setup()
    finally:
        store.close()


def test_cli_reaches_the_ensemble_over_tls(tls_ensemble: Ensemble, pki: Pki, tmp_path: Path) -> None:
    """The config keys reach kazoo: ``metadata`` and ``test_connection`` over TLS, as an operator runs them."""
    config = tmp_path / "sfc.cfg"
    config.write_text(
        "[scheduler_failover]\n"
        "scheduler_nodes_in_cluster = node-a\ncurrent_host = node-a\n"
        f"state_dir = {tmp_path / 'state'}\n"
        "scheduler_process_match = no-such-scheduler-process-anywhere\n"
        "metadata_service_type = ZookeeperMetadataService\n"
        f"metadata_service_zookeeper_nodes = {tls_ensemble.secure_hosts}/tls-cli\n"
        "lease_ttl = 5\npoll_frequency = 1\n"
        "metadata_service_zookeeper_use_ssl = true\n"
        f"metadata_service_zookeeper_ca = {pki.ca.cert}\n"
        f"metadata_service_zookeeper_certfile = {pki.client.cert}\n"
        f"metadata_service_zookeeper_keyfile = {pki.client.key}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env["PYTHONPATH"] = str(ROOT)

    def sfc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scheduler_failover_controller", "--config", str(config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            stdin=subprocess.DEVNULL,
        )

    # The chroot must exist first (as an operator creates it); over TLS like everything else.
    from kazoo.client import KazooClient

    admin = KazooClient(
        hosts=tls_ensemble.secure_hosts,
        use_ssl=True,
        ca=str(pki.ca.cert),
        certfile=str(pki.client.cert),
        keyfile=str(pki.client.key),
    )
    admin.start(timeout=30)
    try:
        admin.ensure_path("/tls-cli")
    finally:
        admin.stop()
        admin.close()
    out = sfc("metadata", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["metastore"].startswith("zookeeper ")
    out = sfc("test_connection")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stdout + out.stderr
    metastore_lines = [line for line in out.stdout.splitlines() if "metastore" in line.lower()]
    assert metastore_lines and all("ok" in line.lower() for line in metastore_lines), out.stdout
