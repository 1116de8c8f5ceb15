"""``drain NODE`` and ``undrain NODE``: keep every service off a node (maintenance), and let them back.

A drain is one record in the metastore, the fleet's; the active controller moves each service that
runs on the drained node by a controlled switchover whose outcome event carries the drain's request
id, which ``--wait`` waits for, service by service (see ``drain_wait``).
"""

from __future__ import annotations

import click

from ..config import Config
from ..metastore.events import EventKind, new_request_id
from .drain_wait import NotMoved, await_move
from .group import BadInput, config_for, main, using_store
from .operator import run_event_command
from .params import Seconds
from .services import service_names


def _node(config: Config, node: str) -> str:
    if node not in config.nodes:
        raise BadInput(f"{node!r} is not in scheduler_nodes_in_cluster ({', '.join(config.nodes)})")
    return node


@main.command()
@click.argument("node")
@click.option(
    "--wait",
    "wait_s",
    type=Seconds(min=0),
    default=None,
    help="Seconds to wait for every service to run elsewhere (default: 2 x lease_ttl + the longest stop and "
    "start timeouts of a service); 0: do not wait.",
)
@click.pass_context
def drain(ctx: click.Context, node: str, wait_s: float | None) -> None:
    """Keep every service off NODE; one that runs there is moved first by a controlled switchover."""
    config = config_for(ctx)
    _node(config, node)
    names = service_names(config)
    owns = [config if name == names[0] else config.for_service(name) for name in names]
    default = 2 * config.lease_ttl + max(c.scheduler_stop_timeout + c.scheduler_start_timeout for c in owns)
    wait = default if wait_s is None else wait_s
    request_id = new_request_id()
    with using_store(config) as store:
        store.setup()
        if not store.drain(node, config.nodes, request_id):
            raise click.ClickException(f"refused to drain {node}: every other node is drained, no node would be left")
        store.add_event(config.current_host, EventKind.DRAIN, f"{node} drained by CLI", request_id=request_id)
        run_event_command(config, EventKind.DRAIN, f"{node} drained by CLI", node)
        if wait == 0:
            click.echo(f"drained {node}")
            return
        interval = min(0.5, config.poll_frequency / 2)
        try:
            views = [(name, store.for_service(name)) for name in names]
            click.echo(await_move(views, node, request_id, wait, interval))
        except NotMoved as exc:
            raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("node")
@click.pass_context
def undrain(ctx: click.Context, node: str) -> None:
    """Let NODE run services again (none is moved back unless failback says so)."""
    config = config_for(ctx)
    _node(config, node)
    with using_store(config) as store:
        store.setup()
        if not store.undrain(node):
            click.echo(f"{node} was not drained")
            return
        store.add_event(config.current_host, EventKind.UNDRAIN, f"{node} undrained by CLI")
        run_event_command(config, EventKind.UNDRAIN, f"{node} undrained by CLI", node)
    click.echo(f"undrained {node}")
