"""How the controller reaches one node's scheduler: probe, start, stop."""

from __future__ import annotations

import abc

from ..probe_result import ProbeResult


class NodeRunner(abc.ABC):
    """Probes and commands the scheduler of one node."""

    def __init__(self, node: str) -> None:
        self.node = node

    @abc.abstractmethod
    def probe(self) -> ProbeResult:
        """The node's scheduler state. Never raises: a node that cannot be reached is UNKNOWN."""

    @abc.abstractmethod
    def start(self, deadline: float) -> None:
        """Launch the scheduler under a leash and return without waiting for it to come up.

        ``deadline``: the caller's ``time.monotonic()`` placement deadline for the node. The leash
        (:mod:`scheduler_failover_controller.leash`) stops the scheduler's whole tree by then
        unless :meth:`renew_leash` moves it on, whatever becomes of the caller.

        Does nothing if a scheduler already runs there (checked under a per-node lock, so two
        controllers cannot both start one). Raises NodeUnreachable or CommandFailed.
        """

    def renew_leash(self, deadline: float) -> bool:
        """Move the node's leash deadline on to ``deadline`` (the caller's ``time.monotonic()``).

        Never raises and never blocks for long. False when the leash may not have it: a failure
        logs one warning, and the leash then stops the scheduler at the last deadline it got, so
        the caller must not renew the node's placement past that (docs/design.md, section 4).
        This default: a runner without a leash, which has nothing to renew.
        """
        return True

    @abc.abstractmethod
    def stop(self, grace: float | None = None) -> ProbeResult:
        """Stop every scheduler process tree on the node and return a fresh probe.

        ``grace``: seconds between SIGTERM and SIGKILL; None means the configured stop command
        (if any) and then ``scheduler_stop_timeout``; 0 kills at once without the stop command.

        The result is STOPPED only when nothing is left; NoSuchProcess counts as stopped.
        Raises NodeUnreachable when the node cannot be commanded.
        """

    def close(self) -> None:
        """Release connections."""
