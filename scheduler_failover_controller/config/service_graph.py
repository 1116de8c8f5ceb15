"""Where services may run together: colocation, anti-colocation, and process matches kept apart.

Refused at load: a reference to an unknown service or to itself; a colocation cycle (colocation is
one way: the dependent follows its leader, so the leaders form a forest under each root); a
service both colocated and anti-colocated with another, or anti-colocated with one of its own
colocation group (which must share one node); a group whose services share no node; and any set
of anti-colocations that no placement of the groups on their nodes keeps apart (a small search:
the groups are few, the nodes too). Also two services whose process matches could claim each
other's processes: strays are killed by the match, so one would kill the other.
"""

from __future__ import annotations

import functools
import shlex
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError
from .services import SCHEDULER, ServiceSpec

if TYPE_CHECKING:
    from .sources import Sources

MAX_SEARCH_STEPS = 100_000  # placements tried before the anti-colocation search gives up


def check_graph(specs: tuple[ServiceSpec, ...], cluster: tuple[str, ...], src: Sources) -> None:
    """Refuse any colocation / anti-colocation combination that no placement satisfies."""
    nodes: dict[str, tuple[str, ...]] = {SCHEDULER: cluster, **{s.name: s.nodes for s in specs}}
    leader = {s.name: s.colocate_with for s in specs if s.colocate_with}
    for spec in specs:
        fail = functools.partial(src.service_fail, spec.name)
        lead = spec.colocate_with
        if lead and lead not in nodes:
            raise fail("colocate_with", f"{lead[:40]!r} is neither scheduler nor a service named in services")
        if lead == spec.name:
            raise fail("colocate_with", "a service cannot be colocated with itself")
        for other in spec.anti_colocate_with:
            if other not in nodes:
                raise fail("anti_colocate_with", f"{other[:40]!r} is neither scheduler nor a service named in services")
            if other == spec.name:
                raise fail("anti_colocate_with", "a service cannot be kept apart from itself")
            if other == lead:
                raise fail("anti_colocate_with", f"{other!r} is also its colocate_with: it cannot be both")
    root: dict[str, str] = {}
    for name in nodes:
        try:
            root[name] = _root(name, leader)
        except ValueError as exc:
            raise src.service_fail(name, "colocate_with", str(exc)) from None
    for spec in specs:
        if spec.colocate_with and not set(spec.nodes) & set(nodes[spec.colocate_with]):
            raise src.service_fail(
                spec.name, "colocate_with", f"its nodes share none with {spec.colocate_with!r}'s nodes"
            )
    group_nodes: dict[str, set[str]] = {}
    for name in nodes:  # scheduler first, then services in order: the first service to empty it is named
        allowed = group_nodes.setdefault(root[name], set(nodes[root[name]]))
        if not allowed & set(nodes[name]):
            members = ", ".join(n for n in nodes if root[n] == root[name])
            raise src.service_fail(
                name, "colocate_with", f"the services that follow {root[name]!r} ({members}) share no node"
            )
        allowed &= set(nodes[name])
    for spec in specs:
        for other in spec.anti_colocate_with:
            if root[other] == root[spec.name]:
                raise src.service_fail(
                    spec.name,
                    "anti_colocate_with",
                    f"{other!r} is in its colocation group (led by {root[other]!r}): they run on one node",
                )
    apart = {(root[s.name], root[o]) for s in specs for o in s.anti_colocate_with}
    _check_apart(specs, root, group_nodes, apart, cluster, src)


def _root(name: str, leader: dict[str, str]) -> str:
    """The service at the head of ``name``'s colocation chain; ValueError naming a cycle."""
    chain = [name]
    for _ in range(len(leader) + 1):
        nxt = leader.get(chain[-1])
        if nxt is None:
            return chain[-1]
        if nxt in chain:
            raise ValueError("colocation cycle: " + " -> ".join([*chain[chain.index(nxt) :], nxt]))
        chain.append(nxt)
    raise ValueError("colocation cycle: " + " -> ".join(chain))  # not reached: longer than the leaders


def _check_apart(
    specs: tuple[ServiceSpec, ...],
    root: dict[str, str],
    group_nodes: dict[str, set[str]],
    apart: set[tuple[str, str]],
    cluster: tuple[str, ...],
    src: Sources,
) -> None:
    """Some placement of the colocation groups on their nodes keeps every anti-colocated pair apart."""
    for spec in specs:
        for other in spec.anti_colocate_with:
            mine, theirs = group_nodes[root[spec.name]], group_nodes[root[other]]
            if len(mine) == 1 and mine == theirs:
                raise src.service_fail(
                    spec.name, "anti_colocate_with", f"{other!r} and it can only run on the one node {min(mine)}"
                )
    groups = [g for g in dict.fromkeys(root.values()) if any(g in pair for pair in apart)]
    if not groups:
        return
    order = {node: i for i, node in enumerate(cluster)}
    domains = {g: sorted(group_nodes[g], key=order.__getitem__) for g in groups}
    groups.sort(key=lambda g: len(domains[g]))
    neighbours = {g: {b for a, b in apart if a == g} | {a for a, b in apart if b == g} for g in groups}
    placed: dict[str, str] = {}
    steps = [0]

    def search(i: int) -> bool:
        if i == len(groups):
            return True
        steps[0] += 1
        if steps[0] > MAX_SEARCH_STEPS:
            raise ConfigError(f"{src.path}: anti_colocate_with: too many services kept apart to check them all")
        group = groups[i]
        for node in domains[group]:
            if all(placed.get(n) != node for n in neighbours[group]):
                placed[group] = node
                if search(i + 1):
                    return True
                del placed[group]
        return False

    if not search(0):
        first = next(s for s in specs if s.anti_colocate_with)
        involved = ", ".join(g for g in groups)
        raise src.service_fail(
            first.name,
            "anti_colocate_with",
            f"no placement keeps the services apart on their nodes (groups led by {involved})",
        )


def check_matches(specs: tuple[ServiceSpec, ...], values: dict[str, Any], src: Sources) -> None:
    """No two services (the scheduler included) whose process matches could claim each other's processes."""
    cluster = values["scheduler_nodes_in_cluster"]
    entries = [(SCHEDULER, "scheduler_process_match", values["scheduler_process_match"], cluster)]
    entries += [(s.name, "process_match", s.process_match, s.nodes) for s in specs]
    for i, (name, key, match, nodes) in enumerate(entries):
        for other, other_key, other_match, other_nodes in entries[:i]:
            for node in [n for n in nodes if n in other_nodes]:
                mine = shlex.split(match.replace("{node}", node))
                theirs = shlex.split(other_match.replace("{node}", node))
                if could_claim(mine, theirs) or could_claim(theirs, mine):
                    raise src.service_fail(
                        name,
                        key,
                        f"{match!r} and {other}'s {other_key} {other_match!r} could match each other's processes "
                        f"(on {node}): each would kill the other as a stray",
                    )


def could_claim(words: list[str], other: list[str]) -> bool:
    """Whether the match ``words`` finds a process started to match ``other`` (run directly, or as
    a script by the interpreter ``words`` names), programs compared by basename."""
    import os.path

    from ..matching import matches, program_index

    words = [w for w in words if w.strip()]
    other = [w for w in other if w.strip()]
    if not words or not other:
        return False
    mine = [os.path.basename(words[0]), *words[1:]]
    theirs = [os.path.basename(other[0]), *other[1:]]
    candidates = [theirs]
    if program_index([mine[0], "/script"]) == 1:  # an interpreter: it runs scripts like the other's
        candidates.append([mine[0], "/bin/" + theirs[0], *theirs[1:]])
    return any(matches(argv, mine) for argv in candidates)
