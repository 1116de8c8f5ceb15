"""Which nodes may still run a scheduler this controller cannot stop, and ``fence_command`` for them.

An unreachable node is no obstacle to a start only when ``fence_command`` fenced it, or when its
placement has expired by server time and everything it may run is under a leash (which stopped
it before that expiry, whatever became of its controller). A registered controller alone guards
nothing: it may be dead, frozen or cut off.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable

from .config import Config
from .exceptions import MetastoreError
from .health import Health
from .metastore.base import Metastore
from .probe import ProbeResult, SchedulerState


def only_leashed(probe: ProbeResult) -> bool:
    """The node runs no scheduler, or only ones under a live leash (what its controller reports)."""
    return not probe.state.maybe_running or probe.leashed


class Fencing:
    """The nodes fenced by ``fence_command``, and the judgement of what blocks a start."""

    def __init__(self, config: Config, store: Metastore, health: Health, event: Callable[[str, str], None]) -> None:
        self.config = config
        self.store = store
        self.health = health
        self._event = event
        self.fenced: set[str] = set()
        self.fence_failed_cycle: dict[str, int] = {}  # node -> the cycle in which fence_command last failed

    def blocking(self, target: str, probes: dict[str, ProbeResult], cycle: int) -> list[str]:
        """Other nodes that might run a scheduler we cannot stop: they block a start on ``target``."""
        blocking = []
        for node, probe in probes.items():
            if node == target or probe.state is SchedulerState.STOPPED:
                continue
            if probe.state is not SchedulerState.UNKNOWN:
                blocking.append(node)
                continue
            if node in self.fenced:
                continue  # fence_command already did
            why = self.unseen_unsafe(node)
            if why is None or self.fence(node, cycle):
                continue
            blocking.append(f"{node} ({why})")
        return blocking

    def unseen_unsafe(self, node: str) -> str | None:
        """Why an unreachable ``node`` may still run a scheduler; None when it cannot."""
        try:
            state = self.store.read_state()
            registry = {c.host: c for c in self.store.controllers()}
        except MetastoreError as exc:
            return f"unreachable, and the metastore cannot tell whether its placement expired: {exc}"
        if state.placement.valid and state.placement.node == node:
            return f"unreachable; its placement expires in {state.placement.remaining:.1f}s"
        entry = registry.get(node)
        seen = self.health.last_seen(node)
        if entry is None and seen is None:
            return "unreachable; not known to run its scheduler under a leash"
        if entry is not None and not entry.leashed:
            return "unreachable; its controller last reported a scheduler that is not under a leash"
        if seen is not None and seen.state.maybe_running and not seen.leashed:
            return "unreachable; last seen running a scheduler that is not under a leash"
        return None

    def fence(self, node: str, cycle: int) -> bool:
        """Run fence_command for an unreachable node without a controller; True if it succeeded."""
        command = self.config.fence_command
        if not command or self.fence_failed_cycle.get(node) == cycle:
            return False  # none, or it failed for this node already this cycle: once per cycle is enough
        try:
            result = subprocess.run(
                ["/bin/sh", "-c", f"{command} {shlex.quote(node)}"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.config.ssh_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self.fence_failed_cycle[node] = cycle
            self._event("fence", f"fence_command for {node} timed out")
            return False
        ok = result.returncode == 0
        self._event("fence", f"fence_command for {node} {'succeeded' if ok else f'failed ({result.returncode})'}")
        if ok:
            self.fenced.add(node)
        else:
            self.fence_failed_cycle[node] = cycle
        return ok

    def started(self, node: str) -> None:
        """A scheduler was started on ``node``: a fence of it is over."""
        self.fenced.discard(node)
