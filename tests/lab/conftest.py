"""Fixtures of the multi-host lab: one network + MariaDB per module, one lab (hosts) per test."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from tests.conftest import IN_CI, MariaDB, mariadb_binaries, missing
from tests.lab.harness import Lab, Network, missing_tools, network_with_mariadb

# One line per scenario, printed at the end of the run (pytest -v / make lab).
RESULTS: list[dict[str, Any]] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: multi-host lab (namespaces, sshd, MariaDB); needs root")


def _require_lab() -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the lab needs root (network, PID and UTS namespaces); CI runs as root")
        pytest.skip("the lab needs root (network, PID and UTS namespaces)")
    lacking = missing_tools()
    if not mariadb_binaries():
        lacking.append("mariadb-server")
    if lacking:
        missing(f"{', '.join(lacking)} (Debian packages)")


@pytest.fixture(scope="module")
def lab_network() -> Iterator[tuple[Network, MariaDB]]:
    """The bridge namespace and the metastore namespace with MariaDB on 198.18.0.2."""
    _require_lab()
    with network_with_mariadb() as found:
        yield found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.lab_failed = report.failed  # type: ignore[attr-defined]


@pytest.fixture
def make_lab(request: pytest.FixtureRequest, lab_network: tuple[Network, MariaDB]) -> Iterator[Callable[..., Lab]]:
    """Build labs on the module's network; each is torn down when the test ends, pass or fail."""
    net, db = lab_network
    labs: list[Lab] = []

    def make(size: int = 3, config: dict[str, str] | None = None) -> Lab:
        lab = Lab(net, db, size=size, config=config)
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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("lab scenarios")
    header = f"{'scenario':<44} {'recovery s':>10} {'bound s':>7} {'2+ sched s':>10} {'none s':>7} {'sample ms':>9}"
    terminalreporter.write_line(header)
    for r in RESULTS:
        recovery = "-" if r.get("recovery") is None else f"{r['recovery']:.2f}"
        bound = "-" if r.get("bound") is None else f"{r['bound']:g}"
        terminalreporter.write_line(
            f"{r['scenario']:<44} {recovery:>10} {bound:>7} {r['two']:>10.2f} {r['none']:>7.2f} {r['pace'] * 1e3:>9.0f}"
            + (f"  {r['note']}" if r.get("note") else "")
        )
