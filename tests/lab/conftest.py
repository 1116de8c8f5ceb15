"""Fixtures of the multi-host lab: one network + metastore servers per session, one lab (hosts) per test.

The metastore host 198.18.0.2 that every lab host reaches runs MariaDB, and, once a test asks
for them, a 3-server ZooKeeper ensemble and PostgreSQL. ``make_lab`` runs a scenario on MariaDB
and on ZooKeeper (``lab_metastore``; a test may choose other sites with
``@pytest.mark.parametrize("lab_metastore", [...], indirect=True)``), ``make_mariadb_lab`` on
MariaDB alone. Both build hosts for ``lab_node_control`` (ssh, or self: hosts without sshd;
scenarios.cases parametrizes a scenario by mode and metastore).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from tests.conftest import IN_CI, MariaDB, mariadb_binaries, missing
from tests.lab.harness import Lab
from tests.lab.network import Network
from tests.lab.sites import (
    LabMetastore,
    MariaDBSite,
    PostgreSQLSite,
    ZooKeeperSite,
    network_with_mariadb,
    postgresql_on,
    zookeeper_on,
)
from tests.lab.tools import missing_tools
from tests.support.pg import postgresql_available
from tests.support.zk import zookeeper_available

# One line per scenario, printed at the end of the run (pytest -v / make lab).
RESULTS: list[dict[str, Any]] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: multi-host lab (namespaces, sshd, MariaDB/ZooKeeper); needs root")


def _require_lab() -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the lab needs root (network, PID and UTS namespaces); CI runs as root")
        pytest.skip("the lab needs root (network, PID and UTS namespaces)")
    lacking = missing_tools()
    if not mariadb_binaries():
        lacking.append("mariadb-server")
    if not zookeeper_available():
        lacking.append("zookeeper")
    if lacking:
        missing(f"{', '.join(lacking)} (Debian packages)")


@pytest.fixture(scope="session")
def lab_network() -> Iterator[tuple[Network, MariaDB]]:
    """The bridge namespace and the metastore namespace with MariaDB on 198.18.0.2 (one per session)."""
    _require_lab()
    with network_with_mariadb() as found:
        yield found


@pytest.fixture(scope="session")
def lab_zookeeper(lab_network: tuple[Network, MariaDB]) -> Iterator[ZooKeeperSite]:
    """A 3-server ZooKeeper ensemble on 198.18.0.2 (the metastore namespace), started when first needed."""
    net, _ = lab_network
    with zookeeper_on(net) as site:
        yield site


@pytest.fixture(scope="session")
def lab_postgresql(lab_network: tuple[Network, MariaDB]) -> Iterator[PostgreSQLSite]:
    """PostgreSQL on 198.18.0.2 (the metastore namespace), started when first needed."""
    if not postgresql_available():
        missing("postgresql (server binaries, the postgres user) and psycopg2")
    net, _ = lab_network
    with postgresql_on(net) as site:
        yield site


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A scenario runs on MariaDB in CI; its runs on ZooKeeper and PostgreSQL are by hand (``make lab``)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("lab_metastore", "mariadb") != "mariadb":
            item.add_marker(pytest.mark.manual)


def site_named(request: pytest.FixtureRequest, name: str, lab_network: tuple[Network, MariaDB]) -> LabMetastore:
    """The lab metastore called ``name``: mariadb, postgresql or zookeeper."""
    if name == "zookeeper":
        zk: LabMetastore = request.getfixturevalue("lab_zookeeper")
        return zk
    if name == "postgresql":
        pg: LabMetastore = request.getfixturevalue("lab_postgresql")
        return pg
    assert name == "mariadb", name
    return MariaDBSite(lab_network[1], lab_network[0])


@pytest.fixture(scope="module", params=["mariadb", "zookeeper"])
def lab_metastore(request: pytest.FixtureRequest, lab_network: tuple[Network, MariaDB]) -> LabMetastore:
    """The metastore of the module's labs: every scenario runs once on each."""
    return site_named(request, request.param, lab_network)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.lab_failed = report.failed  # type: ignore[attr-defined]


@pytest.fixture
def lab_node_control(request: pytest.FixtureRequest) -> str:
    """The labs' ``node_control``: ssh unless a scenario is parametrized by it (scenarios.cases)."""
    mode: str = getattr(request, "param", "ssh")
    assert mode in ("ssh", "self"), mode
    return mode


def _labs(
    request: pytest.FixtureRequest, net: Network, site: LabMetastore, node_control: str
) -> Iterator[Callable[..., Lab]]:
    labs: list[Lab] = []

    def make(size: int = 3, config: dict[str, str] | None = None, kind: Callable[..., Lab] = Lab) -> Lab:
        lab = kind(net, site, size=size, config={"node_control": node_control, **(config or {})})
        labs.append(lab)
        return lab

    try:
        yield make
    finally:
        failed = getattr(request.node, "lab_failed", True)
        keep = os.environ.get("SFC_LAB_KEEP", "") == "1"
        for lab in labs:
            if failed:
                print(lab.report())  # shown by pytest under "Captured stdout teardown"
            lab.close(keep=keep)
        left = [port for port in net.ports() if not port.startswith("vm")]
        assert not left, f"hosts left on the bridge after teardown: {left}"


@pytest.fixture
def make_lab(
    request: pytest.FixtureRequest,
    lab_network: tuple[Network, MariaDB],
    lab_metastore: LabMetastore,
    lab_node_control: str,
) -> Iterator[Callable[..., Lab]]:
    """Build labs on the module's network and metastore; each is torn down when the test ends, pass or fail."""
    yield from _labs(request, lab_network[0], lab_metastore, lab_node_control)


@pytest.fixture
def make_mariadb_lab(
    request: pytest.FixtureRequest, lab_network: tuple[Network, MariaDB], lab_node_control: str
) -> Iterator[Callable[..., Lab]]:
    """Labs on MariaDB alone, for scenarios about SQL sessions."""
    yield from _labs(request, lab_network[0], MariaDBSite(lab_network[1], lab_network[0]), lab_node_control)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("lab scenarios")
    header = f"{'scenario':<56} {'recovery s':>10} {'bound s':>7} {'2+ sched s':>10} {'none s':>7} {'sample ms':>9}"
    terminalreporter.write_line(header)
    for r in RESULTS:
        recovery = "-" if r.get("recovery") is None else f"{r['recovery']:.2f}"
        bound = "-" if r.get("bound") is None else f"{r['bound']:g}"
        terminalreporter.write_line(
            f"{r['scenario']:<56} {recovery:>10} {bound:>7} {r['two']:>10.2f} {r['none']:>7.2f} {r['pace'] * 1e3:>9.0f}"
            + (f"  {r['note']}" if r.get("note") else "")
        )
