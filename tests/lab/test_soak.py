"""A short chaos soak in CI (benchmarks/soak.py): seeded random faults on a 3-host lab.

3 minutes on one metastore in self mode by default, with a second service beside the scheduler;
``SFC_SOAK_SECONDS``, ``SFC_SOAK_SEED``, ``SFC_SOAK_METASTORE`` (mariadb, postgresql, zookeeper),
``SFC_SOAK_NODE_CONTROL`` (self, ssh) and ``SFC_SOAK_SERVICES`` (0: the scheduler alone) override.
``make soak`` runs an hour on each metastore, by hand.
"""

from __future__ import annotations

import os

import pytest

from benchmarks.soak import run_soak
from tests.conftest import MariaDB
from tests.lab.conftest import RESULTS, site_named
from tests.lab.network import Network

pytestmark = pytest.mark.lab


def test_chaos_soak(request: pytest.FixtureRequest, lab_network: tuple[Network, MariaDB]) -> None:
    seconds = float(os.environ.get("SFC_SOAK_SECONDS", "180"))
    seed = int(os.environ.get("SFC_SOAK_SEED", "1"))
    metastore = os.environ.get("SFC_SOAK_METASTORE", "postgresql")
    node_control = os.environ.get("SFC_SOAK_NODE_CONTROL", "self")
    services = int(os.environ.get("SFC_SOAK_SERVICES", "1"))
    site = site_named(request, metastore, lab_network)
    result = run_soak(lab_network[0], site, seconds, seed, log=print, node_control=node_control, services=services)
    print(result.table())
    for name, tally in result.services.items():
        kind, outage = result.worst(name)
        RESULTS.append(
            {
                "scenario": f"chaos soak, seed {seed}, {result.faults} faults, {name} [{node_control}, {site.kind}]",
                "recovery": outage,
                "bound": None,
                "two": tally.two,
                "none": tally.none,
                "note": f"availability {100 * tally.availability:.2f}%, longest outage: {kind}",
                "pace": tally.pace,
            }
        )
    for name, tally in result.services.items():
        assert tally.pace < 0.25, f"{name}'s observer sampled every {tally.pace:.3f}s on average; too slow to trust"
        assert tally.two == 0, f"two of {name} at once for {tally.two:.2f}s:\n{result.table()}"
    assert not result.unsettled, f"the cluster did not become healthy again:\n{result.table()}"
    assert result.faults >= max(1, int(seconds / 30)), f"only {result.faults} faults in {seconds:g}s"
