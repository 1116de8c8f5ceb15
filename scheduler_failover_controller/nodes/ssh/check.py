"""What ``test_connection`` reports for one node reached over SSH."""

from __future__ import annotations

from dataclasses import dataclass

from ...probe_result import ProbeResult, SchedulerState
from .transport import SSHFailure


@dataclass
class SSHCheck:
    """What ``test_connection`` reports for one SSH node."""

    target: str
    reachable: bool = False
    host_key: str = "not checked"
    host_key_ok: bool = False
    auth: str = "not tried"
    auth_ok: bool = False
    project: str = "not checked"
    tools_missing: tuple[str, ...] = ()
    state_dir_problem: str = ""  # why the node's state_dir may not be written (remote_dirs)
    error: str = ""
    probe: ProbeResult | None = None

    @property
    def ok(self) -> bool:
        return (
            self.reachable
            and self.host_key_ok
            and self.auth_ok
            and not self.tools_missing
            and not self.state_dir_problem
            and self.probe is not None
            and self.probe.state is not SchedulerState.UNKNOWN
        )


def connection_failed(report: SSHCheck, exc: SSHFailure) -> None:
    """Fill ``report`` for a connection that could not be opened."""
    report.error = str(exc)
    if exc.kind in ("resolve", "connect", "timeout", "handshake"):
        report.reachable = exc.kind == "handshake"
        return
    report.reachable = True
    if exc.kind == "host-key-unknown":
        report.host_key = f"unknown: {exc}"
    elif exc.kind == "host-key-mismatch":
        report.host_key = f"MISMATCH: {exc}"
    else:
        report.host_key, report.host_key_ok = "known", True
        report.auth = f"FAILED: {exc}"
