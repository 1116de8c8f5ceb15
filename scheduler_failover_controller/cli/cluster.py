"""Commands that read the cluster: version, get_current_host, is_scheduler_running, test_connection,
metadata, status, history."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from .. import __version__
from ..config.services import SCHEDULER
from ..exceptions import MetastoreError
from ..metastore.base import Event
from ..probe_result import ProbeResult, SchedulerState
from ..status import ClusterStatus, history_json, read_status
from .group import config_for, emit, main, open_store, reading_store

if TYPE_CHECKING:
    from ..config import Config
    from ..nodes import NodeRunner


@main.command()
def version() -> None:
    """Print the version."""
    click.echo(__version__)


@main.command()
@click.pass_context
def get_current_host(ctx: click.Context) -> None:
    """Print this node's name as the controller sees it."""
    click.echo(config_for(ctx).current_host)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def is_scheduler_running(ctx: click.Context, as_json: bool) -> None:
    """Probe every node: running / stopped / unhealthy / unknown, with pids.

    Exit 0 when exactly one scheduler runs, 1 otherwise.
    """
    config = config_for(ctx)
    with _runners(config) as runners:
        results = list(_probe_all(runners).values())
        ages = {node: _report_age(runner) for node, runner in runners.items()}
    emit(
        [{**r.to_json(), **({"report_age_s": ages[r.node]} if by_report(runners[r.node]) else {})} for r in results],
        as_json,
        lambda: "\n".join(f"{r.node}: {r.describe()}{_reported(ages[r.node])}" for r in results),
    )
    running = [r for r in results if r.state is SchedulerState.RUNNING]
    sys.exit(0 if len(running) == 1 and len(running[0].pids) == 1 else 1)


@contextlib.contextmanager
def _runners(config: Config) -> Iterator[dict[str, NodeRunner]]:
    """Every node's runner; in self mode the other nodes are their reports in the metastore."""
    from ..nodes import make_runners

    if config.node_control != "self" or config.nodes == (config.current_host,):
        yield make_runners(config)
        return
    with reading_store(config) as store:  # set up by its first call: a store down makes each report unknown
        yield make_runners(config, store)


def by_report(runner: NodeRunner) -> bool:
    return bool(getattr(runner, "by_report", False))


def _report_age(runner: NodeRunner) -> float | None:
    age = getattr(runner, "report_age", None)
    return round(age, 3) if isinstance(age, float) else None


def _reported(age: float | None) -> str:
    return "" if age is None else f" (reported {age:.1f}s ago)"


def _probe_all(runners: dict[str, NodeRunner]) -> dict[str, ProbeResult]:
    """Probe every node in parallel (a slow or unreachable node costs ssh_timeout once, not per node)."""
    from concurrent.futures import ThreadPoolExecutor

    try:
        with ThreadPoolExecutor(max_workers=min(16, max(1, len(runners)))) as pool:
            futures = {node: pool.submit(runner.probe) for node, runner in runners.items()}
            return {node: future.result() for node, future in futures.items()}
    finally:
        for runner in runners.values():
            runner.close()


@main.command()
@click.pass_context
def test_connection(ctx: click.Context) -> None:
    """Reach every node (local, its report in self mode, or SSH) and the metastore; exit 1 if any fails."""

    config = config_for(ctx)
    failed = False
    with _runners(config) as runners:
        outputs = _checks(runners)
    for ok, lines in outputs:
        failed |= not ok
        for line in lines:
            click.echo(line)
    store = open_store(config)
    try:
        store.setup()
        state = store.read_state()
        click.echo(f"metastore {store.describe()}: ok (epoch {state.lease.epoch})")
        if store.exposure():
            click.echo(f"  warning: {store.exposure()}")
    except MetastoreError as exc:
        failed = True
        click.echo(f"metastore {store.describe()}: FAILED: {exc}")
    finally:
        store.close()
    sys.exit(1 if failed else 0)


def _checks(runners: dict[str, NodeRunner]) -> list[tuple[bool, list[str]]]:
    """test_connection's lines for each node: local, its report (self mode), or over SSH."""
    from concurrent.futures import ThreadPoolExecutor

    def check(runner: NodeRunner) -> tuple[bool, list[str]]:
        if by_report(runner):  # self mode: never a connection to the node
            probe = runner.probe()
            ok = probe.state is not SchedulerState.UNKNOWN
            head = f"scheduler {probe.describe()}{_reported(_report_age(runner))}"
            return ok, [f"node {runner.node} (its controller's report): {'ok' if ok else 'FAILED'}: {head}"]
        from ..nodes import LocalNodeRunner

        if isinstance(runner, LocalNodeRunner):
            probe = runner.probe()
            ok = probe.state is not SchedulerState.UNKNOWN
            return ok, [f"node {runner.node} (local): {'ok' if ok else 'FAILED'}: scheduler {probe.describe()}"]
        from ..nodes import SSHNodeRunner

        assert isinstance(runner, SSHNodeRunner)
        report = runner.check()
        if report.probe is not None and report.ok:
            head = f"scheduler {report.probe.describe()}"
        elif report.tools_missing:
            head = f"missing on the node: {', '.join(report.tools_missing)}"
        elif report.state_dir_problem:
            head = f"state_dir there refused: {report.state_dir_problem}"
        elif report.probe is not None:
            head = f"scheduler {report.probe.describe()}"
        else:
            head = report.error
        reach = "reachable" if report.reachable else f"UNREACHABLE: {report.error}"
        lines = [
            f"node {runner.node} (remote): {'ok' if report.ok else 'FAILED'}: {head}",
            f"  ssh {report.target}: {reach}",
            f"  host key: {report.host_key}",
            f"  auth: {report.auth}",
            f"  project on the node: {report.project}",
        ]
        if report.auth_ok:
            missing = ", ".join(report.tools_missing)
            lines.append(f"  tools (ps, flock): {'MISSING ' + missing if missing else 'ok'}")
        return report.ok, lines

    try:
        with ThreadPoolExecutor(max_workers=min(16, max(1, len(runners)))) as pool:
            return list(pool.map(check, runners.values()))
    finally:
        for runner in runners.values():
            runner.close()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def metadata(ctx: click.Context, as_json: bool) -> None:
    """Print the metastore's contents."""
    config = config_for(ctx)
    with reading_store(config) as store:
        store.setup()
        data = store.dump()
    emit(data, as_json, lambda: _render_metadata(data))


def _render_metadata(data: dict[str, Any]) -> str:
    lines = [f"metastore: {data['metastore']}"]
    lease, placement = data["lease"], data["placement"]
    lines.append(f"lease: holder={lease['holder']} epoch={lease['epoch']} expires_in={lease['expires_in_s']}s")
    lines.append(
        f"placement: node={placement['node']} epoch={placement['epoch']} version={placement['version']} "
        f"expires_in={placement['expires_in_s']}s"
    )
    lines.append(f"paused: {data['paused']}")
    lines.append("controllers:")
    lines += [
        f"  {c['host']} pid={c['pid']} role={c['role']} version={c['version']} heartbeat_age={c['heartbeat_age_s']}s"
        + (" paused" if c.get("paused") else "")
        for c in data["controllers"]
    ]
    lines.append("observations:")
    lines += [
        f"  {o['node']}: {o['state']} pids={o['pids']} age={o['observed_age_s']}s {o['detail']}".rstrip()
        for o in data["observations"]
    ]
    for service in data.get("services", []):  # the other services' own records
        placed = service["placement"]
        lines.append(
            f"service {service['name']}: node={placed['node']} epoch={placed['epoch']} version={placed['version']} "
            f"expires_in={placed['expires_in_s']}s"
        )
        lines += [
            f"  {o['node']}: {o['state']} pids={o['pids']} age={o['observed_age_s']}s" for o in service["observations"]
        ]
    lines.append("recent events:")
    lines += [
        f"  [{e['kind']}] {e['host']} (epoch {e['epoch']}): "
        + ("" if e.get("service", "scheduler") == "scheduler" else f"{e['service']}: ")
        + e["message"]
        for e in data["events"]
    ]
    return "\n".join(lines)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """The cluster: controllers, epoch, every service's node and state, observations. Exit 0/1/2."""
    config = config_for(ctx)
    with reading_store(config) as store:
        store.setup()
        cluster = read_status(store, config)
    emit(cluster.to_json(), as_json, lambda: _render_status(cluster))
    sys.exit(cluster.health.exit_code)


def _render_status(cluster: ClusterStatus) -> str:
    data = cluster.to_json()  # the same words as the JSON: enum values, unknown ones as written
    lines = [
        f"health: {data['health']}" + (f" ({'; '.join(data['problems'])})" if data["problems"] else ""),
        f"active controller: {data['active_controller'] or '-'} (epoch {data['epoch']})",
        f"scheduler node: {data['scheduler_node'] or '-'}",
        f"paused: {'yes' if data['paused'] else 'no'}",
        f"drained: {', '.join(data['drained']) or 'none'}",
        f"node_control: {data['node_control'] or 'not recorded yet'}"
        + (
            ""
            if data["node_control"] in (None, cluster.configured_node_control)
            else f" ({cluster.configured_node_control} here)"
        ),
        "controllers:",
    ]
    lines += [
        f"  {c['host']}: {c['role']}{' (paused)' if c['paused'] else ''}, heartbeat {c['heartbeat_age_s']:.1f}s ago, "
        f"version {c['version']}"
        for c in data["controllers"]
    ] or ["  (none registered)"]
    lines.append("nodes:")
    for n in data["nodes"]:
        foreign = ", ".join(f"pid {f['pid']} ({f['user']})" for f in n["foreign"])
        line = _node_line(n, n["scheduler"], cluster.configured_node_control)
        lines.append(f"  {line}" + (f"; foreign: {foreign}" if foreign else ""))
    failed = [
        f"{f['host']} {f['count']}x, last {f['last_age_s']:.0f}s ago, avoided {f['avoided_for_s']:.0f}s more, "
        + ("never forgotten" if f["forgotten_in_s"] is None else f"forgotten in {f['forgotten_in_s']:.0f}s")
        for f in data["failed_starts"]
    ]
    lines.append(f"failed starts: {'; '.join(failed) or 'none'}")
    failover = data["last_failover"]
    lines.append(
        f"last failover: {failover['message']} ({failover['age_s']:.0f}s ago)" if failover else "last failover: none"
    )
    lines.append("services:")
    for s in data["services"]:
        where = f" on {s['node']}" if s["node"] else ", placed nowhere"
        moving = f", switchover to {s['switchover']} requested" if s["switchover"] else ""
        lines.append(f"  {s['name']}: {s['state']}{where}{moving} ({s['health']})")
        if s["name"] == SCHEDULER:
            continue  # its nodes, failed starts and problems are shown above
        lines += [f"    {_node_line(n, n['state'], cluster.configured_node_control)}" for n in s["nodes"]]
        lines += [f"    problem: {p}" for p in s["problems"]]
    return "\n".join(lines)


def _node_line(n: dict[str, Any], state: str, node_control: str) -> str:
    """One node of a ``status`` text: the service's state there, its pids, the age of the look."""
    age = "never observed" if n["observed_age_s"] is None else f"observed {n['observed_age_s']:.1f}s ago"
    if node_control == "self":
        age = "never reported" if n["report_age_s"] is None else f"reported {n['report_age_s']:.1f}s ago"
    pids = f" pid {', '.join(map(str, n['pids']))}" if n["pids"] else ""
    return f"{n['host']}: {state}{pids} ({age})"


@main.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def history(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Recent events of every service: elections, restarts, moves, kills, fences, alerts."""
    config = config_for(ctx)
    with reading_store(config) as store:
        store.setup()
        events = store.events(limit)
    import datetime

    def when(at: float) -> str:
        return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    width = max((len(e.service) for e in events), default=0)

    def line(e: Event) -> str:
        request = f" (request {e.request_id})" if e.request_id else ""
        return f"{when(e.at)} {e.service:<{width}} [{e.kind}] {e.host} (epoch {e.epoch}){request}: {e.message}"

    emit(
        history_json(events),
        as_json,
        lambda: "\n".join(line(e) for e in events) or "no events",
    )
