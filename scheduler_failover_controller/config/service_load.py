"""The services' sections, parsed into :class:`~.services.ServiceSpec`: names, required keys,
defaults from the scheduler's keys, each value checked as the scheduler's own is.

Runs after the main section's stages (:mod:`.load`): the defaults and the leash rule need the
cluster's nodes and the derived timeouts. Where services may run together is
:mod:`.service_graph`'s concern.
"""

from __future__ import annotations

import functools
from typing import Any

from ..exceptions import ConfigError
from .checks import check_url, match_problem
from .model import renew_interval, safety_margin
from .service_graph import check_graph, check_matches
from .service_keys import REQUIRED, SERVICE_KEYS, SERVICE_NAME, service_env_name
from .services import SCHEDULER, SERVICE_SECTION_PREFIX, ServiceSpec
from .sources import Sources


def check_services(values: dict[str, Any], src: Sources) -> tuple[ServiceSpec, ...]:
    """Every service named in ``services``, from its section, in that order; refuse what cannot run."""
    names = values["services"]
    seen: set[str] = set()
    for name in names:
        if name == SCHEDULER:
            raise src.fail("services", "'scheduler' is the service every config has: name only the others")
        if not SERVICE_NAME.fullmatch(name):
            raise src.fail("services", f"{name[:40]!r} is not a service name ([a-z][a-z0-9_]{{0,31}})")
        if name in seen:
            raise src.fail("services", f"{name!r} is listed twice")
        seen.add(name)
    for name, raw in src.services.items():
        if name not in seen:
            where = next(iter(raw.values()))[1] if raw else f"{src.path} [{SERVICE_SECTION_PREFIX}{name}]"
            listed = ", ".join(names) or "empty"
            raise ConfigError(f"{where}: service {name[:40]!r} is not named in services ({listed})")
    specs = tuple(_spec(name, values, src) for name in names)
    check_graph(specs, values["scheduler_nodes_in_cluster"], src)
    check_matches(specs, values, src)
    return specs


def _spec(name: str, values: dict[str, Any], src: Sources) -> ServiceSpec:
    raw = src.services.get(name, {})
    section = f"[{SERVICE_SECTION_PREFIX}{name}]"
    if not raw:
        raise ConfigError(
            f"{src.path}: {section}: no such section for service {name!r} named in services "
            f"({' and '.join(REQUIRED)} are required)"
        )
    parsed: dict[str, Any] = {}
    for key, spec_key in SERVICE_KEYS.items():
        if key in raw:
            text, where = raw[key]
            try:
                parsed[key] = spec_key.parse(text)
            except ValueError as exc:
                reason = str(exc) if "must" in str(exc) else "not a valid value"
                raise ConfigError(f"{where}: {key} = {text.strip()!r}: {reason}") from None
        else:
            parsed[key] = None if spec_key.default is None else spec_key.parse(spec_key.default)

    fail = functools.partial(src.service_fail, name)

    for key in REQUIRED:
        if not parsed[key]:
            what = "must not be empty" if key in raw else f"required (or {service_env_name(name, key)})"
            raise ConfigError(f"{src.service_origin(name, key).replace(' (default)', '')}: {key}: {what}")
    problem = match_problem(parsed["process_match"], "the service's")
    if problem:
        raise fail("process_match", problem)
    nodes = _nodes(parsed["nodes"], values["scheduler_nodes_in_cluster"], fail)
    local = [n for n in values["local_nodes"] if n in nodes]
    if len(local) > 1 and "{node}" not in parsed["process_match"]:
        raise fail(
            "process_match",
            f"must contain {{node}} when several of its nodes are local ({', '.join(local)}), "
            "so that each node's service is told apart",
        )
    stop = parsed["stop_timeout"]
    if stop is None:
        stop = values["scheduler_stop_timeout"]
    else:
        problem = leash_problem(stop, values)
        if problem:
            raise fail("stop_timeout", problem)
    if parsed["health_url"]:
        for node in nodes:
            check_url(parsed["health_url"].replace("{node}", node), "health_url", fail, show=True)
    start = parsed["start_timeout"]
    return ServiceSpec(
        name=name,
        start_command=parsed["start_command"],
        stop_command=parsed["stop_command"],
        process_match=parsed["process_match"],
        start_timeout=values["scheduler_start_timeout"] if start is None else start,
        stop_timeout=stop,
        health_url=parsed["health_url"],
        nodes=nodes,
        colocate_with=parsed["colocate_with"],
        anti_colocate_with=parsed["anti_colocate_with"],
    )


def _nodes(given: tuple[str, ...] | None, cluster: tuple[str, ...], fail: Any) -> tuple[str, ...]:
    """The service's nodes: all the cluster's by default; else a subset, in the cluster's order."""
    if given is None:
        return cluster
    if not given:
        raise fail("nodes", "the node list is empty (leave nodes out for all of scheduler_nodes_in_cluster)")
    for node in given:
        if node not in cluster:
            raise fail("nodes", f"{node[:40]!r} is not in scheduler_nodes_in_cluster ({', '.join(cluster)})")
        if given.count(node) > 1:
            raise fail("nodes", f"a node is listed twice: {node}")
    return tuple(n for n in cluster if n in given)


def leash_problem(stop: float, values: dict[str, Any]) -> str | None:
    """Why ``stop`` seconds of grace break the leash rule (README, Configuration), or None."""
    poll, ttl, timeout = values["poll_frequency"], values["lease_ttl"], values["metastore_timeout"]
    renew = renew_interval(poll, ttl)
    if stop >= ttl - renew:
        return f"{stop:g}s must be < lease_ttl - renewal interval ({ttl - renew:g}s)"
    margin = safety_margin(ttl)
    if renew + 2 * timeout + stop + margin > ttl:
        return (
            f"a renewal must land before the leash starts stopping the service: renewal interval + "
            f"2 x metastore_timeout + stop_timeout + safety margin ({renew:g} + 2 x {timeout:g} + "
            f"{stop:g} + {margin:g}) must be <= lease_ttl ({ttl:g})"
        )
    return None
