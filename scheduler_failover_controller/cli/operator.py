"""Commands that change the cluster: start, init, clear_metadata, send_test_email, switchover, pause, resume,
node_control."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..config import SECTION, Config, config_path, default_config_text, read_config_text
from ..config.services import SCHEDULER
from ..exceptions import ConfigError
from ..metastore.events import EventKind, new_request_id
from ..redaction import redact_webhook
from ..trust import write_problem
from .group import ConfigProblem, config_for, main, using_store
from .params import Seconds
from .services import service_config
from .switchover_wait import NotCarriedOut, await_outcome


@main.command()
@click.pass_context
def start(ctx: click.Context) -> None:
    """Run the controller in the foreground until SIGTERM/SIGINT, then release the lease."""
    from ..daemon import prepare_state_dir, run, setup_logging
    from ..daemon_services import build_controllers
    from ..nodes import make_runners

    config = config_for(ctx)
    try:
        for name in (SCHEDULER, *config.service_names):  # each service's leash records live in its own
            prepare_state_dir(config.for_service(name))
        setup_logging(config)
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    with using_store(config) as store:  # run() sets the store up, retrying while it is down
        try:
            # e.g. Airflow's database driver missing
            controller, *services = build_controllers(config, store, make_runners)
            code = run(config, controller, services=services)
        except ConfigError as exc:  # e.g. metrics_port already in use
            raise ConfigProblem(str(exc)) from None
        sys.exit(code)


@main.command()
@click.option("--force", is_flag=True, help="Overwrite an existing config file.")
@click.pass_context
def init(ctx: click.Context, force: bool) -> None:
    """Write a documented default config (or add the section to airflow.cfg)."""
    import socket

    path, named = config_path(ctx.obj["config_file"], os.environ)
    text = default_config_text(socket.gethostname())
    try:
        if path.exists() and not path.is_file():  # never replace a device or a FIFO by a config
            raise ConfigProblem(f"{path}: not a regular file")
        problem = write_problem(path)  # init follows a link: it must be no other user's to plant
        if problem:
            raise ConfigProblem(f"{path}: not written: {problem}")
        if not named and path.exists():
            existing = read_config_text(path)
            if f"[{SECTION}]" in existing:
                raise click.ClickException(f"{path}: already has a [{SECTION}] section")
            _write_atomically(path, existing.rstrip("\n") + "\n\n" + text)
            click.echo(f"added [{SECTION}] to {path}")
            return
        if path.exists() and not force:
            raise click.ClickException(f"{path}: exists; use --force to overwrite it")
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, text)
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write: {exc.strerror or exc}") from None
    click.echo(f"wrote {path}")


def _write_atomically(path: Path, text: str) -> None:
    """Replace the file ``path`` names, whole or not at all, keeping what it was.

    A symbolic link (an ``airflow.cfg`` kept in a config repository, say) stays a link: the file
    it points to is replaced. That file keeps its mode, owner and group; a new file is 0600.
    """
    target = Path(os.path.realpath(path))
    old = target.stat() if target.exists() else None
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
            if old is not None:
                os.fchmod(out.fileno(), old.st_mode & 0o7777)
                if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                    os.fchown(out.fileno(), old.st_uid, old.st_gid)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@main.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def clear_metadata(ctx: click.Context, yes: bool) -> None:
    """Wipe the metastore (the epoch counter is kept so fencing tokens never go back)."""
    config = config_for(ctx)
    if not yes:
        if sys.stdin is None or sys.stdin.closed or not sys.stdin.isatty():
            raise click.ClickException("refusing to wipe the metastore without confirmation; pass --yes")
        click.confirm("Wipe the failover controller's metastore?", abort=True)
    with using_store(config) as store:
        store.setup()
        store.clear()
    click.echo("metastore cleared")


@main.command()
@click.pass_context
def send_test_email(ctx: click.Context) -> None:
    """Send a test alert to alert_to_email (and the webhook, if set)."""
    from ..alerts import Alerter, AlertError

    config = config_for(ctx)
    alerter = Alerter(config)
    if not alerter.enabled:
        raise click.ClickException(f"{config.source}: alert_to_email (or alert_webhook_url) is not set")
    try:
        alerter.deliver(
            f"test alert from {config.current_host}",
            "This is a test alert from the scheduler failover controller.",
        )
    except AlertError as exc:
        raise click.ClickException(str(exc)) from None
    hook = [redact_webhook(config.alert_webhook_url)] if config.alert_webhook_url else []
    targets = [*config.alert_to_email, *hook]
    click.echo(f"test alert sent to {', '.join(targets)}")


@main.command()
@click.option("--to", "target", required=True, help="The node that should run the service.")
@click.option(
    "--mode",
    type=click.Choice(["controlled", "forced"]),
    default="controlled",
    show_default=True,
    help="controlled: SIGTERM (or the stop command) and up to scheduler_stop_timeout for the old "
    "scheduler to exit; forced: kill it at once. Both stop it before starting the new one.",
)
@click.option(
    "--wait",
    "wait_s",
    type=Seconds(min=0),
    default=None,
    help="Seconds to wait for the result (default: 2 x lease_ttl + the service's start timeout); 0: do not wait.",
)
@click.option(
    "--service",
    default=SCHEDULER,
    show_default=True,
    help="The service to move: the scheduler, or one named in services.",
)
@click.pass_context
def switchover(ctx: click.Context, target: str, mode: str, wait_s: float | None, service: str) -> None:
    """Planned move of a service (the scheduler by default) to another node, carried out by the active controller."""
    config = config_for(ctx)
    own = service_config(config, service)
    if target not in own.nodes:
        where = "scheduler_nodes_in_cluster" if service == SCHEDULER else f"the nodes of {service}"
        raise click.BadParameter(f"{target!r} is not in {where} ({', '.join(own.nodes)})", param_hint="--to")
    wait = 2 * config.lease_ttl + own.scheduler_start_timeout if wait_s is None else wait_s
    request_id = new_request_id()
    moved = f"switchover to {target}" if service == SCHEDULER else f"switchover of {service} to {target}"
    with using_store(config) as store:
        store.setup()
        view = store.for_service(service)  # the request and its events are the service's own
        # The request's event first: the active may carry the request out (and record its outcome)
        # at once, and the history must show the request before its outcome.
        view.add_event(config.current_host, EventKind.SWITCHOVER, f"{mode} {moved} requested", request_id=request_id)
        view.request_switchover(target, mode, request_id)
        run_event_command(own, EventKind.SWITCHOVER, f"{mode} {moved} requested", target)
        if wait == 0:
            click.echo(f"requested a {mode} {moved}")
            return
        interval = min(0.5, config.poll_frequency / 2)
        try:
            settle = config.metastore_timeout
            verdict = await_outcome(view, request_id, target, wait, interval, settle=settle, service=service)
        except NotCarriedOut:
            raise click.ClickException(
                f"the {moved} was not carried out within {wait:g}s "
                "(is a controller active, and not paused?); the request stays pending"
            ) from None
    if not verdict.ok:
        raise click.ClickException(verdict.message)
    click.echo(verdict.message)


def run_event_command(config: Config, kind: EventKind, message: str, node: str = "") -> None:
    """Run ``event_command`` for an event this command recorded (bounded by its timeout); its
    failure is one warning line on stderr, and the command's own outcome stands."""
    if not config.event_command:
        return
    from ..event_hook import run_now  # only when there is a command to run

    failure = run_now(config, kind, message, node)
    if failure is not None:
        click.echo(f"warning: {failure}", err=True)


def _set_paused(ctx: click.Context, paused: bool) -> None:
    config = config_for(ctx)
    with using_store(config) as store:
        store.setup()
        store.set_paused(paused)
        kind, message = (EventKind.PAUSE, "paused by CLI") if paused else (EventKind.RESUME, "resumed by CLI")
        store.add_event(config.current_host, kind, message)
    run_event_command(config, kind, message)
    click.echo("paused: controllers keep their lease but start and stop nothing" if paused else "resumed")


@main.command()
@click.pass_context
def pause(ctx: click.Context) -> None:
    """Maintenance mode: controllers keep their lease but start and stop nothing."""
    _set_paused(ctx, True)


@main.command()
@click.pass_context
def resume(ctx: click.Context) -> None:
    """Leave maintenance mode."""
    _set_paused(ctx, False)


@main.command(name="node_control")
@click.argument("value", type=click.Choice(["self", "ssh"]))
@click.pass_context
def node_control(ctx: click.Context, value: str) -> None:
    """Record the cluster's node_control (self or ssh); only while paused (README: moving between them)."""
    config = config_for(ctx)
    with using_store(config) as store:
        store.setup()
        before = store.read_node_control()
        if not store.set_node_control(value):
            raise click.ClickException(
                "the cluster is not paused: pause it first (sfc pause), then change node_control"
            )
        message = f"node_control {before or 'unset'} -> {value} by CLI"
        store.add_event(config.current_host, EventKind.NODE_CONTROL, message)
    run_event_command(config, EventKind.NODE_CONTROL, message)
    click.echo(
        f"node_control: {value} for the cluster; controllers configured otherwise refuse to act: "
        "change their configs, restart them, then resume"
    )
