"""A controller's graceful exit: its node's scheduler stopped (nobody would guard it), everything released."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exceptions import MetastoreError
from ..metastore.events import EventKind
from ..probe_result import SchedulerState
from .health import seen_running
from .starts import stop

if TYPE_CHECKING:
    from .cycle import Controller


def shut_down(ctl: Controller) -> str:
    """Stop ``ctl``'s local scheduler unless another holds it, release the placement and the lease.

    Only the scheduler's controller releases the lease and the registry row: the daemon shuts it
    down after every other service's controller is done, so no service is left placed under a
    lease given up (another controller could then take the lease and place that service elsewhere
    while it still runs here)."""
    parts: list[str] = []
    if ctl.duplicate is not None or ctl.node_control.refused:  # not this controller's to act on
        whose = "to the other controller" if ctl.duplicate else "as they are (another node_control)"
        parts.append(f"left the local scheduler and its placement {whose} on {ctl.host}")
    elif not ctl.paused:
        probe = ctl.local.probe()
        after = probe
        if seen_running(probe):
            after = stop(ctl.local)
            parts.append(f"stopped the local scheduler ({probe.describe()} -> {after.state.value})")
            if ctl.leads() and ctl.last_probes:  # else status would show it running until the next active looks
                ctl._record({**ctl.last_probes, ctl.host: after})
        if after.state is SchedulerState.STOPPED:
            try:
                if ctl.store.release_placement(ctl.host):
                    parts.append("released the placement")
            except MetastoreError as exc:
                parts.append(f"could not release the placement ({exc})")
        else:  # let it expire by server time instead: only then may another node start one
            parts.append(f"kept the placement: local scheduler is {after.state.value}")
    else:
        parts.append("paused: left the local scheduler as it is")
    ctl.term.forget_placement()
    try:
        if ctl.primary and ctl.fleet.release_lease and ctl.store.release(ctl.holder):
            parts.append(f"released the leadership lease (epoch {ctl.epoch})")
        if ctl.primary:
            ctl.store.deregister(ctl.host, ctl.holder)
        ctl._event(
            EventKind.STOP, f"controller on {ctl.host} stopped: {'; '.join(parts) or 'nothing held'}", node=ctl.host
        )
    except MetastoreError as exc:
        parts.append(f"metastore unreachable ({exc})")
    ctl.term.end()
    ctl._pool.shutdown(wait=False, cancel_futures=True)
    ctl._renewal_pool.shutdown(wait=False, cancel_futures=True)
    if ctl.jobs is not None:
        ctl.jobs.close()
    if ctl.starts.airflow is not None:
        ctl.starts.airflow.close()
    return "; ".join(parts) or "nothing held"
