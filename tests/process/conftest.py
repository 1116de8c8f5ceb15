"""Fixtures of the process tests: clusters of real controllers, on every real metastore."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.process.harness import ZK_PREFIX, Cluster
from tests.process.test_leash import Lab


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Builds clusters in this test's temp dir; every process they started is stopped after."""
    clusters: list[Cluster] = []

    def make(url: str, size: int, node_control: str = "ssh", **timing: float) -> Cluster:
        clusters.append(Cluster(tmp_path / f"c{len(clusters)}", url, size, node_control=node_control, **timing))
        return clusters[-1]

    yield make
    for cluster in clusters:
        cluster.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A leash lab (see tests/process/test_leash.py): what it started is stopped after."""
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture(params=["sqlite", "mariadb", "zookeeper"])
def cluster_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The metastore of a process-test cluster: embedded SQLite, real MariaDB or real ZooKeeper."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metastore.db'}"
    if request.param == "mariadb":
        return str(request.getfixturevalue("mariadb_url"))
    return ZK_PREFIX + str(request.getfixturevalue("zk_hosts"))
