"""The command line: a thin click layer; every failure is one line and a non-zero exit."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import __version__
from .cli_types import Seconds
from .config import (
    CONFIG_ENV,
    SECTION,
    SQL_SERVICE,
    Config,
    config_path,
    default_config_text,
    load_config,
    node_name_problem,
    read_config_text,
)
from .exceptions import ConfigError, FailoverError, MetastoreError
from .metastore import Metastore, open_metastore
from .ownership import SCHEDULER_USER_ENV
from .probe import MATCH_ENV, ProbeResult, SchedulerState
from .redaction import config_secrets, mask_output, redact_webhook
from .status import ClusterStatus, SwitchoverOutcome, read_status
from .trust import write_problem
from .undumpable import forbid_dumps

if TYPE_CHECKING:
    from .nodes import NodeRunner


MAX_REQUEST_LINE = 4096  # bytes of a line read by a --serve loop


class ConfigProblem(click.ClickException):
    """A configuration error: exit code 2, as the README says."""

    exit_code = 2


class BadInput(click.ClickException):
    """A bad option or input (not the config): one line, exit code 2 like a config error."""

    exit_code = 2


class AliasGroup(click.Group):
    """Accepts ``test-connection`` as well as ``test_connection``."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        # click >= 7 names a command after its function with "_" turned into "-"; accept both.
        return (
            super().get_command(ctx, cmd_name)
            or super().get_command(ctx, cmd_name.replace("-", "_"))
            or super().get_command(ctx, cmd_name.replace("_", "-"))
        )

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        return (cmd.name if cmd else name), cmd, rest


@click.group(cls=AliasGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=str,  # load_config reports a bad path in one line (exit 2), not click's usage text
    default=None,
    help=f"Config file (default: ${CONFIG_ENV}, else $AIRFLOW_HOME/airflow.cfg).",
)
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """Keep exactly one Airflow scheduler running across the master nodes."""
    ctx.obj = {"config_file": config_file}


def _config(ctx: click.Context) -> Config:
    # Before any secret is read: no process of this user may read them from our memory or environ.
    forbid_dumps()
    try:
        config = load_config(ctx.obj["config_file"])
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    mask_output(config_secrets(config))  # no command's output may show a secret the config holds
    return config


def _open_store(config: Config) -> Metastore:
    path = _sqlite_path(config.metadata_service_sql_conn) if config.metadata_service_type == SQL_SERVICE else None
    problem = write_problem(path, sticky_ok=False) if path is not None else None  # SQLite follows links
    if problem:
        raise ConfigProblem(f"{config.source}: metadata_service_sql_conn: {problem}")
    try:
        return open_metastore(config)
    except ConfigError as exc:  # the backend's message names the key; add the file
        message = str(exc)
        raise ConfigProblem(message if message.startswith(config.source) else f"{config.source}: {message}") from None
    except OSError as exc:  # e.g. the SQLite file's directory cannot be created
        where = f" ({exc.filename})" if exc.filename else ""
        raise ConfigProblem(
            f"{config.source}: metadata_service_sql_conn: cannot open the metastore: {exc.strerror or exc}{where}"
        ) from None


@contextmanager
def _store(config: Config) -> Iterator[Metastore]:
    store = _open_store(config)
    try:
        yield store
    except MetastoreError as exc:
        raise click.ClickException(f"{store.describe()}: {exc}") from None
    finally:
        store.close()


@contextmanager
def _read_store(config: Config) -> Iterator[Metastore]:
    """The store for a command that only reads. An embedded SQLite file that does not exist yet is
    not created (nor its directory): the command reads an empty store in a temporary directory
    instead, which is what that file would hold, and says so on stderr."""
    url = config.metadata_service_sql_conn
    path = _sqlite_path(url) if config.metadata_service_type == SQL_SERVICE else None
    if path is None or path.exists():
        with _store(config) as store:
            yield store
        return
    import dataclasses
    import tempfile

    click.echo(f"note: metastore {path} does not exist yet: no controller has run with this config", err=True)
    with tempfile.TemporaryDirectory(prefix="sfc-empty-") as empty:
        stand_in = dataclasses.replace(config, metadata_service_sql_conn=f"sqlite:///{empty}/metastore.db")
        with _store(stand_in) as store:
            if isinstance(getattr(store, "url", None), str):
                store.url = url  # type: ignore[attr-defined]  # described as the file it stands for
            yield store


def _sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite://`` URL, else None."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database or ""
    if database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database).expanduser() if database else None


def _emit(data: Any, as_json: bool, text: Callable[[], str]) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False) if as_json else text())


@main.command()
@click.pass_context
def start(ctx: click.Context) -> None:
    """Run the controller in the foreground until SIGTERM/SIGINT, then release the lease."""
    from .controller import Controller
    from .daemon import prepare_state_dir, run, setup_logging
    from .nodes import make_runners

    config = _config(ctx)
    try:
        prepare_state_dir(config)
        setup_logging(config)
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    with _store(config) as store:  # run() sets the store up, retrying while it is down
        try:
            controller = Controller(config, store, make_runners(config))  # e.g. Airflow's database driver missing
            code = run(config, controller)
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
def version() -> None:
    """Print the version."""
    click.echo(__version__)


@main.command()
@click.pass_context
def get_current_host(ctx: click.Context) -> None:
    """Print this node's name as the controller sees it."""
    click.echo(_config(ctx).current_host)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def is_scheduler_running(ctx: click.Context, as_json: bool) -> None:
    """Probe every node: running / stopped / unhealthy / unknown, with pids.

    Exit 0 when exactly one scheduler runs, 1 otherwise.
    """
    from .nodes import make_runners

    config = _config(ctx)
    results = list(_probe_all(make_runners(config)).values())
    _emit(
        [r.to_json() for r in results],
        as_json,
        lambda: "\n".join(f"{r.node}: {r.describe()}" for r in results),
    )
    running = [r for r in results if r.state is SchedulerState.RUNNING]
    sys.exit(0 if len(running) == 1 and len(running[0].pids) == 1 else 1)


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


def _target_and_match(ctx: click.Context, node: str | None, match: str | None) -> tuple[str, str]:
    """``--node`` and ``--match``, from the config only when not given (it may not exist there)."""
    import shlex

    if node is not None and node_name_problem(node):
        raise BadInput(f"--node: {node_name_problem(node)}")
    if match:
        import socket

        node = node or socket.gethostname()
        words = match.replace("{node}", node)
        try:
            split = shlex.split(words)
        except ValueError as exc:
            raise BadInput(f"--match (or ${MATCH_ENV}): cannot be split into words: {exc}") from None
        if not any(word.strip() for word in split):
            raise BadInput(f"--match (or ${MATCH_ENV}): must name the scheduler's program")
        return node, words
    config = _config(ctx)
    node = node or config.current_host
    return node, config.process_match(node)


def _expected_uid(ctx: click.Context, match: str | None) -> int | None:
    """Whose processes count: the config's scheduler_user when the config is used (no --match);
    else None: ``$SFC_SCHEDULER_USER``, or this process's own user."""
    return None if match else _config(ctx).scheduler_uid()


_NODE_HELP = "Node name to report (default: current_host of the config, else this machine's host name)."
_MATCH_HELP = (
    f"Words of a scheduler's command line (default: scheduler_process_match of the config; also ${MATCH_ENV}). "
    "With a match, no config file is needed."
)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--node", default=None, help=_NODE_HELP)
@click.option("--match", default=None, envvar=MATCH_ENV, show_envvar=True, help=_MATCH_HELP)
@click.option(
    "--serve",
    is_flag=True,
    help="Print a probe as one JSON line now and again for every line read on stdin, until end of input "
    "(how the SSH runner keeps one cheap probe process per connection).",
)
@click.pass_context
def probe(ctx: click.Context, as_json: bool, node: str | None, match: str | None, serve: bool) -> None:
    """This machine's scheduler: running / stopped / unhealthy / unknown, with pids.

    The SSH runner of another master runs this on the node. Exit 0 when the processes could be
    listed (whatever the state), 1 when the state is unknown.
    """
    from .probe import OrphanWatch, probe_local

    name, words = _target_and_match(ctx, node, match)
    uid = _expected_uid(ctx, match)
    if serve:
        orphans = OrphanWatch()  # one per connection: it remembers the previous probe
        while True:
            click.echo(json.dumps(orphans.check(probe_local(name, words, uid=uid)).to_json()))
            sys.stdout.flush()
            if not sys.stdin.buffer.readline(MAX_REQUEST_LINE):  # bounded: a longer line counts as several
                return
    result = probe_local(name, words, uid=uid)
    _emit(result.to_json(), as_json, lambda: f"{result.node}: {result.describe()}")
    sys.exit(1 if result.state is SchedulerState.UNKNOWN else 0)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--node", default=None, help=_NODE_HELP)
@click.option("--match", default=None, envvar=MATCH_ENV, show_envvar=True, help=_MATCH_HELP)
@click.option(
    "--timeout",
    type=Seconds(0, 3600),
    default=None,
    help="Seconds between SIGTERM and SIGKILL (default: scheduler_stop_timeout, else 10).",
)
@click.option(
    "--session-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A start's session record (SID START_TICKS BOOT_ID): what is left in that session is ended too.",
)
@click.pass_context
def kill_local(
    ctx: click.Context,
    as_json: bool,
    node: str | None,
    match: str | None,
    timeout: float | None,
    session_file: str | None,
) -> None:
    """SIGTERM every scheduler process tree on this machine, SIGKILL what is left after --timeout.

    Prints a fresh probe; exit 0 when nothing is left. Used by the SSH runner of another master
    (it does not run airflow_scheduler_stop_command: the runner does that first).
    """
    from pathlib import Path

    from .nodes.local import end_session, kill_trees
    from .probe import owned_schedulers, probe_local

    name, words = _target_and_match(ctx, node, match)
    uid = _expected_uid(ctx, match)
    if timeout is None:
        timeout = _config(ctx).scheduler_stop_timeout if not match else 10.0
    try:
        roots = owned_schedulers(name, words, uid=uid)[0]
    except ValueError as exc:
        raise BadInput(f"${SCHEDULER_USER_ENV}: {exc}") from None
    kill_trees(roots, timeout)
    if session_file:
        end_session(Path(session_file), name)
    result = probe_local(name, words, uid=uid)
    _emit(result.to_json(), as_json, lambda: f"{result.node}: {result.describe()}")
    sys.exit(0 if result.state is SchedulerState.STOPPED else 1)


@main.command(hidden=True)
@click.option("--serve", is_flag=True, help="Answer leash renewals on stdin (the SSH runner's end).")
def leash(serve: bool) -> None:
    """Internal: the scheduler's supervisor, as the SSH runner starts it on another node.

    Its instructions are in SFC_LEASH_* variables (never arguments: see the leash module). It
    replaces this process with ``python -m scheduler_failover_controller.leash`` (same pid, none
    of the command line's imports kept for the scheduler's lifetime).
    """
    from .leash import LOCAL_ARGV

    sys.stdout.flush()
    os.execv(LOCAL_ARGV[0], [*LOCAL_ARGV, *(["--serve"] if serve else [])])


@main.command()
@click.pass_context
def test_connection(ctx: click.Context) -> None:
    """Reach every node (local, or SSH: host key, login, tools there) and the metastore; exit 1 if any fails."""
    from concurrent.futures import ThreadPoolExecutor

    from .nodes import SSHNodeRunner, make_runners

    config = _config(ctx)
    failed = False
    runners = make_runners(config)

    def check(runner: NodeRunner) -> tuple[bool, list[str]]:
        if not isinstance(runner, SSHNodeRunner):
            probe = runner.probe()
            ok = probe.state is not SchedulerState.UNKNOWN
            return ok, [f"node {runner.node} (local): {'ok' if ok else 'FAILED'}: scheduler {probe.describe()}"]
        report = runner.check()
        if report.probe is not None and report.ok:
            head = f"scheduler {report.probe.describe()}"
        elif report.tools_missing:
            head = f"missing on the node: {', '.join(report.tools_missing)}"
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
            outputs = list(pool.map(check, runners.values()))
    finally:
        for runner in runners.values():
            runner.close()
    for ok, lines in outputs:
        failed |= not ok
        for line in lines:
            click.echo(line)
    store = _open_store(config)
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


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def metadata(ctx: click.Context, as_json: bool) -> None:
    """Print the metastore's contents."""
    config = _config(ctx)
    with _read_store(config) as store:
        store.setup()
        data = store.dump()
    _emit(data, as_json, lambda: _render_metadata(data))


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
    lines.append("recent events:")
    lines += [f"  [{e['kind']}] {e['host']} (epoch {e['epoch']}): {e['message']}" for e in data["events"]]
    return "\n".join(lines)


@main.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def clear_metadata(ctx: click.Context, yes: bool) -> None:
    """Wipe the metastore (the epoch counter is kept so fencing tokens never go back)."""
    config = _config(ctx)
    if not yes:
        if sys.stdin is None or sys.stdin.closed or not sys.stdin.isatty():
            raise click.ClickException("refusing to wipe the metastore without confirmation; pass --yes")
        click.confirm("Wipe the failover controller's metastore?", abort=True)
    with _store(config) as store:
        store.setup()
        store.clear()
    click.echo("metastore cleared")


@main.command()
@click.pass_context
def send_test_email(ctx: click.Context) -> None:
    """Send a test alert to alert_to_email (and the webhook, if set)."""
    from .alerts import Alerter, AlertError

    config = _config(ctx)
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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """The cluster: controllers, epoch, scheduler node, observations. Exit 0/1/2."""
    config = _config(ctx)
    with _read_store(config) as store:
        store.setup()
        cluster = read_status(store, config)
    _emit(cluster.to_json(), as_json, lambda: _render_status(cluster))
    sys.exit(cluster.health.exit_code)


def _render_status(cluster: ClusterStatus) -> str:
    data = cluster.to_json()  # the same words as the JSON: enum values, unknown ones as written
    lines = [
        f"health: {data['health']}" + (f" ({'; '.join(data['problems'])})" if data["problems"] else ""),
        f"active controller: {data['active_controller'] or '-'} (epoch {data['epoch']})",
        f"scheduler node: {data['scheduler_node'] or '-'}",
        f"paused: {'yes' if data['paused'] else 'no'}",
        "controllers:",
    ]
    lines += [
        f"  {c['host']}: {c['role']}{' (paused)' if c['paused'] else ''}, heartbeat {c['heartbeat_age_s']:.1f}s ago, "
        f"version {c['version']}"
        for c in data["controllers"]
    ] or ["  (none registered)"]
    lines.append("nodes:")
    for n in data["nodes"]:
        age = "never observed" if n["observed_age_s"] is None else f"observed {n['observed_age_s']:.1f}s ago"
        pids = f" pid {', '.join(map(str, n['pids']))}" if n["pids"] else ""
        foreign = ", ".join(f"pid {f['pid']} ({f['user']})" for f in n["foreign"])
        lines.append(f"  {n['host']}: {n['scheduler']}{pids} ({age})" + (f"; foreign: {foreign}" if foreign else ""))
    failover = data["last_failover"]
    lines.append(
        f"last failover: {failover['message']} ({failover['age_s']:.0f}s ago)" if failover else "last failover: none"
    )
    return "\n".join(lines)


@main.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def history(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Recent events: elections, restarts, moves, kills, fences, alerts."""
    config = _config(ctx)
    with _read_store(config) as store:
        store.setup()
        events = store.events(limit)
    import datetime

    def when(at: float) -> str:
        return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    _emit(
        [{"at": e.at, "host": e.host, "kind": e.kind, "epoch": e.epoch, "message": e.message} for e in events],
        as_json,
        lambda: (
            "\n".join(f"{when(e.at)} [{e.kind}] {e.host} (epoch {e.epoch}): {e.message}" for e in events) or "no events"
        ),
    )


@main.command()
@click.option("--to", "target", required=True, help="The node that should run the scheduler.")
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
    help="Seconds to wait for the result (default: 2 x lease_ttl + scheduler_start_timeout); 0: do not wait.",
)
@click.pass_context
def switchover(ctx: click.Context, target: str, mode: str, wait_s: float | None) -> None:
    """Planned move of the scheduler to another node, carried out by the active controller."""
    import time

    config = _config(ctx)
    if target not in config.nodes:
        raise click.BadParameter(
            f"{target!r} is not in scheduler_nodes_in_cluster ({', '.join(config.nodes)})", param_hint="--to"
        )
    wait = 2 * config.lease_ttl + config.scheduler_start_timeout if wait_s is None else wait_s
    with _store(config) as store:
        store.setup()
        # The request's event first: the active may carry the request out (and record its outcome)
        # at once, and the history must show the request before its outcome.
        store.add_event(config.current_host, "switchover", f"{mode} switchover to {target} requested")
        store.request_switchover(target, mode)
        if wait == 0:
            click.echo(f"requested a {mode} switchover to {target}")
            return
        deadline = time.monotonic() + wait
        while store.read_state().switchover is not None:
            if time.monotonic() > deadline:
                raise click.ClickException(
                    f"the switchover to {target} was not carried out within {wait:g}s "
                    "(is a controller active, and not paused?); the request stays pending"
                )
            time.sleep(min(0.5, config.poll_frequency / 2))
        # The active controller records the outcome as an event of its own kind, the sentence as its message.
        kinds = {outcome.value for outcome in SwitchoverOutcome}
        events = store.events(20)
        ours = max((i for i, e in enumerate(events) if e.kind == "switchover"), default=-1)  # our request
        outcomes = [e for e in events[ours + 1 :] if e.kind in kinds]  # not an earlier switchover's
        placement = store.read_state().placement
    last = outcomes[-1] if outcomes else None
    message = last.message if last else "no outcome recorded"
    if placement.node != target or (last is not None and last.kind != SwitchoverOutcome.DONE):
        raise click.ClickException(message)
    click.echo(message)


def _set_paused(ctx: click.Context, paused: bool) -> None:
    config = _config(ctx)
    with _store(config) as store:
        store.setup()
        store.set_paused(paused)
        store.add_event(
            config.current_host, "pause" if paused else "resume", f"{'paused' if paused else 'resumed'} by CLI"
        )
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


def run() -> None:
    """Console entry point: any error we raise on purpose is one line, never a traceback."""
    try:
        main(standalone_mode=True)
    except FailoverError as exc:  # pragma: no cover - commands convert these already
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:  # a file or socket the command needed (commands name theirs where they can)
        where = f" ({exc.filename})" if exc.filename else ""
        click.echo(f"Error: {exc.strerror or exc}{where}", err=True)
        sys.exit(1)
