"""Commands that act on this machine, as another master's SSH runner calls them: probe, kill_local, leash."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from ..config import node_name_problem
from ..ownership import SCHEDULER_USER_ENV
from ..probe import MATCH_ENV
from ..probe_result import SchedulerState
from .group import BadInput, config_for, emit, main
from .params import Seconds

MAX_REQUEST_LINE = 4096  # bytes of a line read by a --serve loop


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
    config = config_for(ctx)
    node = node or config.current_host
    return node, config.process_match(node)


def _expected_uid(ctx: click.Context, match: str | None) -> int | None:
    """Whose processes count: the config's scheduler_user when the config is used (no --match);
    else None: ``$SFC_SCHEDULER_USER``, or this process's own user."""
    return None if match else config_for(ctx).scheduler_uid()


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
    from ..orphans import OrphanWatch
    from ..probe import probe_local

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
    emit(result.to_json(), as_json, lambda: f"{result.node}: {result.describe()}")
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

    from ..nodes.local import end_session, kill_trees
    from ..probe import probe_local, stop_targets

    name, words = _target_and_match(ctx, node, match)
    uid = _expected_uid(ctx, match)
    if timeout is None:
        timeout = config_for(ctx).scheduler_stop_timeout if not match else 10.0
    try:
        roots = stop_targets(name, words, uid=uid)
    except ValueError as exc:
        raise BadInput(f"${SCHEDULER_USER_ENV}: {exc}") from None
    kill_trees(roots, timeout)
    if session_file:
        end_session(Path(session_file), name)
    result = probe_local(name, words, uid=uid)
    emit(result.to_json(), as_json, lambda: f"{result.node}: {result.describe()}")
    sys.exit(0 if result.state is SchedulerState.STOPPED else 1)


@main.command(hidden=True)
@click.option("--serve", is_flag=True, help="Answer leash renewals on stdin (the SSH runner's end).")
def leash(serve: bool) -> None:
    """Internal: the scheduler's supervisor, as the SSH runner starts it on another node.

    Its instructions are in SFC_LEASH_* variables (never arguments: see the leash module). It
    replaces this process with ``python -m scheduler_failover_controller.leash`` (same pid, none
    of the command line's imports kept for the scheduler's lifetime).
    """
    from ..leash.spec import LOCAL_ARGV

    sys.stdout.flush()
    os.execv(LOCAL_ARGV[0], [*LOCAL_ARGV, *(["--serve"] if serve else [])])
