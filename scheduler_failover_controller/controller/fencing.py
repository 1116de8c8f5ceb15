"""Which nodes may still run a scheduler this controller cannot stop, and ``fence_command`` for them.

An unreachable node is no obstacle to a start only when ``fence_command`` fenced it, or when its
placement has expired by server time and everything it may run is under a leash (which stopped
it before that expiry, whatever became of its controller). A registered controller alone guards
nothing: it may be dead, frozen or cut off.

A fence is proof for this term only, and only until this term places the scheduler on that node
again (docs/design.md, "Fence, then start"): exit 0 means nothing ran on the node when the
command returned, and only a placement naming the node can start something there after that.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping

from ..config import Config
from ..exceptions import MetastoreError
from ..leash.spec import scrubbed_environment
from ..metastore.base import Metastore
from ..metastore.events import EventKind
from ..nodes.by_report import stale_after
from ..probe_result import ProbeResult, SchedulerState
from .health import Health

OUTPUT_TAIL = 4096  # bytes of fence_command's output kept: its last ones, for the event


def keep_tail(tail: bytearray, chunk: bytes) -> None:
    """Append ``chunk`` to ``tail``, keeping only its last :data:`OUTPUT_TAIL` bytes."""
    tail.extend(chunk)
    del tail[:-OUTPUT_TAIL]


def run_command(
    argv: list[str], timeout: float, env: Mapping[str, str] | None = None, started: Callable[[int], None] | None = None
) -> tuple[int | None, str]:
    """Run ``argv`` in a session of its own, with ``env`` or else without the controller's own
    settings in its environment (its secrets are none of the command's business); (exit status or
    None when it timed out and its whole process group was killed, the last line of its output).
    Only the last :data:`OUTPUT_TAIL` bytes are kept, however much it prints, and a child left
    holding the output open does not hold the controller. ``started`` is told its process group.
    """
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else scrubbed_environment(os.environ),
        start_new_session=True,
    )
    if started is not None:
        started(proc.pid)
    tail = bytearray()

    stream = proc.stdout
    assert stream is not None

    def read() -> None:  # owns the pipe: closes it when the last writer did
        with stream, contextlib.suppress(OSError):
            for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
                keep_tail(tail, chunk)

    reader = threading.Thread(target=read, name="fence-output", daemon=True)
    reader.start()
    try:
        status: int | None = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the command and what it started
        proc.wait()
        status = None
    reader.join(1.0)
    lines = bytes(tail).decode("utf-8", errors="replace").strip().splitlines()
    return status, lines[-1][:200] if lines else ""


def only_leashed(probe: ProbeResult) -> bool:
    """The node runs no scheduler, or only ones under a live leash (what its controller reports)."""
    return not probe.state.maybe_running or probe.leashed


class Fencing:
    """The nodes fenced by ``fence_command``, and the judgement of what blocks a start.

    The cycle's alone: the renewal thread never fences nor reads a fence.
    """

    def __init__(
        self,
        config: Config,
        store: Metastore,
        health: Health,
        event: Callable[..., None],  # Controller._event
        epoch: Callable[[], int] = lambda: 0,
    ) -> None:
        self.config = config
        self.store = store
        self.health = health
        self._event = event
        self._epoch = epoch  # this controller's term: a fence counts only in the term that ran it
        self._proofs: dict[str, int] = {}  # node -> the epoch in which fence_command fenced it
        self.fence_failed_cycle: dict[str, int] = {}  # node -> the cycle in which fence_command last failed
        self._failed_for: dict[str, int] = {}  # placed node -> the placement version its fence failed for

    @property
    def fenced(self) -> set[str]:
        """The nodes fenced in this term and not placed on since."""
        epoch = self._epoch()
        return {node for node, at in self._proofs.items() if at == epoch}

    def fence_placed(self, node: str, probe: ProbeResult, cycle: int, version: int) -> str | None:
        """Fence the placed ``node`` that cannot be seen, so that the move need not wait for its
        placement (of ``version``) to expire: None when it is fenced (now, or earlier in this
        term), else why not.

        Only a node that gave no answer at all in two looks in a row (one is not a failover), that
        is not this controller's own, and whose own controller is not heartbeating (it would be
        guarding the node, and the scheduler may run well there) is fenced; and once per
        placement: after a failure, the placement is waited out as without ``fence_command``.
        """
        if node in self.fenced:
            return None
        if not self.config.fence_command:
            return "no fence_command"
        if node == self.config.current_host:
            return "it is this controller's own node"
        if self._failed_for.get(node) == version:
            return "fence_command failed for this placement"
        if not probe.unreachable:
            return "it answered, with nothing usable yet"
        if self.health.unreachable_looks(node) < 2:
            return "silent in one look only"
        try:
            entry = next((c for c in self.store.controllers() if c.host == node), None)
        except MetastoreError as exc:
            return f"cannot read the registry: {exc}"
        if entry is not None and entry.age <= stale_after(self.config):
            return f"its own controller heartbeats ({entry.age:.1f}s ago)"
        if self.fence(node, cycle):
            return None
        self._failed_for[node] = version
        return "fence_command did not succeed"

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
        if state.placement.node is None and state.placement.remaining > 0 and self.config.node_control == "self":
            # A stop order (placement to nowhere) outlasts every placement renewed before it.
            return (
                f"unseen; a placement it held may last until the stop order expires in {state.placement.remaining:.1f}s"
            )
        entry = registry.get(node)
        seen = self.health.last_seen(node)
        if entry is None and seen is None:
            if self.config.node_control == "self":
                return None  # no controller of its ever ran: none started a scheduler there (README)
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
            status, said = run_command(["/bin/sh", "-c", f"{command} {shlex.quote(node)}"], self.config.ssh_timeout)
        except OSError as exc:
            status, said = 127, str(exc)
        if status is None:
            self.fence_failed_cycle[node] = cycle
            self._event(EventKind.FENCE, f"fence_command for {node} timed out", node=node)
            return False
        ok = status == 0
        result = "succeeded" if ok else f"failed ({status})" + (f": {said}" if said else "")
        self._event(EventKind.FENCE, f"fence_command for {node} {result}", node=node)
        if ok:
            self._proofs[node] = self._epoch()
        else:
            self.fence_failed_cycle[node] = cycle
        return ok

    def started(self, node: str) -> None:
        """A scheduler was started (or placed) on ``node``: a fence of it is over."""
        self._proofs.pop(node, None)
