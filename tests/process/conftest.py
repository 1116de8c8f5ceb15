"""Fixtures of the process tests: clusters of real controllers, on every real metastore."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.process.harness import ZK_PREFIX, Cluster
from tests.process.test_leash import Lab

#: The real servers a process test may start, by the fixtures that start them.
SERVERS = {"mariadb": {"mariadb", "mariadb_url"}, "zookeeper": {"zk_ensemble", "zk_hosts"}}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts a real server carries the server's name as a keyword, whatever its own
    name says: CI's `-k "mariadb or zookeeper"` (process-servers, on 3.11) selects it, and the
    tier's runs on the embedded SQLite metastore (3.9, 3.11, 3.13) leave it out."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for keyword, fixtures in SERVERS.items():
            if used & fixtures:
                item.extra_keyword_matches.add(keyword)


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
