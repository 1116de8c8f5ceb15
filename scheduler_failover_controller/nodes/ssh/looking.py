"""One look at a node over SSH: its ``probe --serve`` helper's answer, or its ``ps`` listing read here.

A mixin of :class:`~.runner.SSHNodeRunner` (its methods use the runner's connection and helpers
as they are).
"""

from __future__ import annotations

from ...config import Config
from ...probe_result import ProbeResult, SchedulerState
from . import scripts
from .ps_table import ProcessEntry, listed_leashes, probe_table, table_owned, table_roots
from .serve import ProbeServer
from .transport import Connection, Deadline


class Looking:
    """``_look`` and the reading of a ``ps`` listing (the scheduler roots that count, the probe)."""

    node: str
    config: Config
    match: str
    remote_project: bool | None
    _prober: ProbeServer

    def _exec(
        self, conn: Connection, script: str, deadline: Deadline, budget: float | None = None
    ) -> tuple[int, str, str]:
        raise NotImplementedError

    def _probe_script(self) -> str:
        return scripts.listing_script(self.config.state_dir, self.node, self.config.scheduler_user)

    def _parse_listing(self, out: str) -> list[ProcessEntry] | None:
        return scripts.parse_listing(out)

    def _probe_listed(self, out: str, table: list[ProcessEntry]) -> ProbeResult:
        """probe_table with the node's leashes (verifiable only when its boot and uptime were printed)
        and the uid whose processes count there (UNKNOWN when it could not be told)."""
        records, _now = scripts.parse_listing_head(out)
        boot = scripts.parse_listing_boot(out)
        uid = scripts.parse_expected_uid(out)
        if uid is None:
            who = f"scheduler_user {self.config.scheduler_user!r}" if self.config.scheduler_user else "its own uid"
            return ProbeResult(self.node, SchedulerState.UNKNOWN, detail=f"ssh: the node did not tell {who}")
        return probe_table(
            self.node,
            table,
            self.match,
            leashes=records if boot else (),
            expected=uid,
            boot=boot[0] if boot else "",
        )

    def _owned_listed(self, out: str, table: list[ProcessEntry]) -> list[ProcessEntry]:
        """The scheduler roots of a listing that count (none when the expected uid is not known)."""
        records, _now = scripts.parse_listing_head(out)
        boot = scripts.parse_listing_boot(out)
        uid = scripts.parse_expected_uid(out)
        if uid is None:
            return []
        live = listed_leashes(table, records if boot else (), boot[0] if boot else "")
        skip = {r.pid for r in live} | {r.watcher for r in live if r.watcher}
        return table_owned(table, table_roots(table, self.match, skip), uid, live)[0]

    def _look(self, conn: Connection, deadline: Deadline) -> tuple[ProbeResult, list[ProcessEntry] | None]:
        """One probe on the node; with the ps table when the fallback was used."""
        served = self._prober.probe(conn, deadline)
        if served is not None:
            self.remote_project = True
            return served, None
        status, out, err = self._exec(conn, self._probe_script(), deadline)
        table = self._parse_listing(out)
        if table is None:
            why = (err.strip().splitlines() or [f"exit status {status}"])[-1]
            return ProbeResult(
                self.node, SchedulerState.UNKNOWN, detail=f"ssh: unreadable process listing ({why})"
            ), None
        if not self._prober.running_on(conn):
            self.remote_project = False
        return self._probe_listed(out, table), table
