"""What every lab scenario shares: the lab's timing, the bounds by ``node_control``, the checks
at the end (``finish``), and the parametrization of a scenario by mode and metastore.

A scenario runs with ``node_control = ssh`` (hosts with sshd; the active probes, starts and stops
the others over SSH) or ``self`` (hosts with no sshd at all; each controller acts on its own
host). ``cases`` names the (mode, metastore) runs of a scenario: by default ssh on MariaDB and
ZooKeeper, self on MariaDB, PostgreSQL and ZooKeeper. CI runs the ones on MariaDB (conftest.py);
a self-mode run on MariaDB is manual too unless the scenario is its fault class's CI pick
(``self_in_ci``), which keeps the lab lane's growth to about two minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from tests.lab.conftest import RESULTS
from tests.lab.harness import Lab
from tests.lab.tools import ssh_available
from tests.support.observer import Seen
from tests.support.waiting import wait_for

POLL, TTL = 0.5, 3.0  # poll_frequency and lease_ttl in the lab's config
START_TIMEOUT = 3.0  # scheduler_start_timeout in the lab's config

MakeLab = Callable[..., Lab]

ALL = ("mariadb", "postgresql", "zookeeper")
BOTH = ("mariadb", "zookeeper")


def cases(
    ssh: Sequence[str] = BOTH, self: Sequence[str] = ALL, self_in_ci: bool = False, ssh_in_ci: bool = True
) -> pytest.MarkDecorator:
    """Parametrize a scenario by ``(lab_node_control, lab_metastore)``: ssh mode on ``ssh``'s
    metastores, self mode on ``self``'s. Runs off MariaDB are manual (conftest.py); so is the
    self-mode run on MariaDB unless ``self_in_ci``, and the ssh-mode one if not ``ssh_in_ci``."""
    params: list[Any] = []
    for mode, sites, in_ci in (("ssh", ssh, ssh_in_ci), ("self", self, self_in_ci)):
        for site in sites:
            manual = site == "mariadb" and not in_ci
            params.append(pytest.param(mode, site, id=f"{mode}-{site}", marks=[pytest.mark.manual] if manual else []))
    return pytest.mark.parametrize(("lab_node_control", "lab_metastore"), params, indirect=True)


def self_mode(lab: Lab) -> bool:
    return lab.node_control == "self"


def ssh_timeout(lab: Lab) -> float:
    """The ssh_timeout the controllers derive (a default that depends on the lease)."""
    return lab.config().ssh_timeout


def remote_stop(lab: Lab) -> float:
    """The longest a remote stop may take by the config's own rule: grace plus two SSH steps."""
    config = lab.config()
    return config.scheduler_stop_timeout + 2 * config.ssh_timeout


def takeover_bound(lab: Lab) -> float:
    """L1 for a lost scheduler host. ssh mode: lease_ttl, a poll, one probe of the lost host, the
    start. Self mode: lease_ttl plus the start: nothing waits on a probe
    (the placement's expiry by the server's clock decides), and the cycle and the node's wake
    that follow fit in the start's allowance (the stand-in scheduler starts at once)."""
    if self_mode(lab):
        return TTL + START_TIMEOUT
    return TTL + 2 * POLL + ssh_timeout(lab) + START_TIMEOUT


def stray_bound(lab: Lab) -> float:
    """A stray's end: its own controller's next cycle (or the active's), plus the stop (over SSH
    in ssh mode)."""
    if self_mode(lab):
        return 2 * POLL + lab.config().scheduler_stop_timeout + 1.0
    return 2 * POLL + remote_stop(lab)


def needs_ssh(lab_or_mode: Lab | str = "ssh") -> None:
    """Skip a scenario that controls other masters over SSH in a checkout without it."""
    mode = lab_or_mode if isinstance(lab_or_mode, str) else lab_or_mode.node_control
    if mode == "ssh" and not ssh_available():
        pytest.skip("needs SSH control of other masters (scheduler_failover_controller/nodes/ssh/)")


def finish(
    lab: Lab,
    scenario: str,
    recovery: float | None = None,
    bound: float | None = None,
    note: str = "",
    outage_allowed: bool = True,
) -> None:
    """Stop the observer, record the scenario's figures, and check what every scenario promises
    (in self mode also: the cluster runs in self mode, and no host tried an SSH connection)."""
    obs = lab.observer
    obs.stop()
    RESULTS.append(
        {
            "scenario": f"{scenario} [{lab.node_control}, {lab.site.kind}]",
            "recovery": recovery,
            "bound": bound,
            "two": obs.seconds_two_or_more,
            "none": obs.seconds_none,
            "note": note,
            "pace": obs.mean_interval(),
        }
    )
    assert obs.samples > 20, "the observer did not run"
    pace = obs.mean_interval()
    assert pace < 0.25, f"the observer sampled every {pace:.3f}s on average; too slow to trust"
    assert obs.max_seen <= 1 and obs.seconds_two_or_more == 0, (
        f"two schedulers at once for {obs.seconds_two_or_more:.2f}s: {obs.doubled[:5]}\n{obs.describe()}"
    )
    errors = lab.internal_errors()
    assert not errors, f"a controller hit an internal error: {errors[:3]}"
    if self_mode(lab):
        recorded = lab.store.read_node_control()
        assert recorded == "self", f"self-mode lab, but the cluster's node_control is {recorded!r}"
        tried = lab.ssh_attempts()
        assert not any(tried.values()), f"self mode: SSH connections tried (packets to port 22 per host): {tried}"
    if bound is not None:
        assert recovery is not None, f"{scenario}: no recovery"
        assert recovery <= bound, f"{scenario}: recovered after {recovery:.2f}s, bound {bound:g}s\n{obs.describe()}"
    if not outage_allowed:
        assert obs.seconds_none == 0, f"{scenario}: {obs.seconds_none:.2f}s without a scheduler\n{obs.describe()}"


def finish_without_outage(lab: Lab, scenario: str, note: str) -> None:
    """``finish`` for a fault that must not cost a single second without a scheduler."""
    finish(lab, scenario, 0.0, 0.0, note=note, outage_allowed=False)


def recovered(lab: Lab, since: float, gone: Seen, timeout: float, elsewhere: bool = False) -> float:
    """Seconds from ``since`` until exactly one scheduler other than ``gone`` runs (on another host)."""

    def ok(real: tuple[Seen, ...]) -> bool:
        return len(real) == 1 and real[0].pid != gone.pid and (not elsewhere or real[0].node != gone.node)

    def done() -> bool:
        if lab.observer.seconds_two_or_more > 0:  # no use waiting any longer: fail with what was seen
            raise AssertionError(f"two schedulers at once while waiting for recovery: {lab.observer.describe()}")
        return ok(lab.observer.current())

    wait_for(done, timeout, "a new scheduler")
    at = lab.observer.first_after(since, ok)
    assert at is not None
    return at - since


def settled(lab: Lab) -> bool:
    """Exactly one scheduler, placed (validly) where it runs; False while the store cannot be read."""
    seen = lab.observer.current()
    if len(seen) != 1:
        return False
    try:
        state = lab.state()
    except Exception:  # noqa: BLE001 - the metastore may still be coming back
        return False
    return state.placement.valid and state.placement.node == seen[0].node


def scheduler_moved_to_h2(lab: Lab) -> Seen:
    """Boot ``lab`` and have its active controller (h1) move the scheduler to h2 (a planned
    switchover), so that it runs there as every scheduler the product starts does: under its
    leash, started by h2's own controller in self mode, over SSH by h1 in ssh mode."""
    needs_ssh(lab)
    lab.boot()
    moved = lab.cli("switchover", "--to", "h2", "--wait", "20", timeout=60)
    assert moved.returncode == 0, f"switchover to h2: {moved.stdout}{moved.stderr}"
    wait_for(lambda: settled(lab) and lab.observer.current()[0].node == "h2", 20, "the scheduler placed on h2")
    old = lab.observer.one()
    assert old is not None and old.node == "h2" and lab.active() == "h1"
    return old
