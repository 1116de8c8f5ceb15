"""One service's records as ``sfc metadata`` shows them, the same on every backend."""

from __future__ import annotations

from typing import Any

from .base import Metastore


def dump_service(view: Metastore, name: str) -> dict[str, Any]:
    """Service ``name``'s own records read through its ``view``, in the shape of the scheduler's."""
    state = view.read_state()
    placement = state.placement
    return {
        "name": name,
        "placement": {
            "node": placement.node,
            "epoch": placement.epoch,
            "version": placement.version,
            "expires_in_s": round(placement.remaining, 3),
        },
        "switchover_requested": (
            {"to": state.switchover[0], "mode": state.switchover[1], "id": state.switchover_id}
            if state.switchover
            else None
        ),
        "failures": [{"node": f.node, "strikes": f.strikes, "last_age_s": round(f.age, 3)} for f in view.failures()],
        "observations": view._dump_records()["observations"],
        "reports": view._dump_reports()["reports"],
    }
