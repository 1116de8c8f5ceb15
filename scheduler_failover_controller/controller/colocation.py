"""Where a service may be placed, given the other services' placements (``colocate_with``,
``anti_colocate_with``).

Colocation is one way: a dependent service's only target is the node its leader's placement
names, and when the leader moves the dependent follows it (a controlled switchover: stop before
start); nothing here ever moves the leader. Anti-colocation goes both ways: a service is never
placed on a node that the placement of a service it is kept apart from names (valid or expired:
an expired placement's process may not be confirmed gone yet). A store that cannot be read bars
every node: nothing new is placed on a guess.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..config.services import SCHEDULER, ServiceSpec
from ..exceptions import MetastoreError
from ..metastore.base import Metastore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Constraint:
    """What the other services' placements allow this one this cycle."""

    leader: str = ""  # the service this one follows ('' none)
    follow: str | None = None  # the node the leader's valid placement names (None: none)
    apart: dict[str, str] = field(default_factory=dict)  # node -> the service placed there this one keeps apart from
    unknown: str = ""  # why the placements could not be read ('' they could)

    def barred(self, nodes: Sequence[str]) -> dict[str, str]:
        """The nodes that are no target for this service, each with the reason."""
        if self.unknown:
            return {node: f"placements unreadable ({self.unknown})" for node in nodes}
        out = {node: f"{service} placed there" for node, service in self.apart.items() if node in nodes}
        if self.leader:
            where = f"{self.leader} is on {self.follow}" if self.follow else f"{self.leader} is placed nowhere"
            out.update({node: f"follows {where}" for node in nodes if node != self.follow and node not in out})
        return out


FREE = Constraint()


def related(service: str, specs: Sequence[ServiceSpec]) -> tuple[str, tuple[str, ...]]:
    """(the service ``service`` follows or '', the services it is kept apart from, either side naming it)."""
    own = next((s for s in specs if s.name == service), None)
    leader = own.colocate_with if own is not None else ""
    apart = set(own.anti_colocate_with) if own is not None else set()
    apart.update(s.name for s in specs if service in s.anti_colocate_with)
    apart.discard(service)
    return leader, tuple(sorted(apart))


class Colocation:
    """Reads the placements of the services ``service`` is tied to (through their store views)."""

    def __init__(self, service: str, specs: Sequence[ServiceSpec], view: Callable[[str], Metastore]) -> None:
        self.service = service
        self.leader, self.apart = related(service, specs)
        self.view = view  # a service's store view by name (``Metastore.for_service``)
        self._said = ""

    @property
    def tied(self) -> bool:
        return bool(self.leader or self.apart)

    def read(self) -> Constraint:
        """This cycle's constraint (FREE when this service is tied to none)."""
        if not self.tied:
            return FREE
        try:
            follow = None
            if self.leader:
                placement = self.view(self.leader).read_state().placement
                follow = placement.node if placement.valid else None
            apart: dict[str, str] = {}
            for other in self.apart:
                node = self.view(other).read_state().placement.node
                if node is not None:
                    apart.setdefault(node, other)
        except MetastoreError as exc:
            self._say(f"cannot read the placements of the services {self.service} is tied to: {exc}")
            return Constraint(self.leader, None, {}, str(exc))
        self._say("")
        return Constraint(self.leader, follow, apart)

    def _say(self, problem: str) -> None:
        """Log a problem when it appears, and when it is gone."""
        if problem and problem != self._said:
            log.warning("%s", problem)
        elif self._said and not problem:
            log.info("the placements of the services %s is tied to can be read again", self.service)
        self._said = problem


def colocation_for(config_specs: Sequence[ServiceSpec], service: str, store: Metastore) -> Colocation:
    """The colocation of ``service`` over the fleet's ``store`` (the scheduler's view is the store)."""

    def view(name: str) -> Metastore:
        return store if name == SCHEDULER else store.for_service(name)

    return Colocation(service, config_specs, view)
