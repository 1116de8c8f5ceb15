"""The click group and what every command shares: the config, the metastore, output, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ..config import CONFIG_ENV, SQL_SERVICE, Config, load_config
from ..exceptions import ConfigError, MetastoreError
from ..metastore import Metastore, open_metastore
from ..redaction import config_secrets, mask_output
from ..trust import write_problem
from ..undumpable import forbid_dumps


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


def config_for(ctx: click.Context) -> Config:
    # Before any secret is read: no process of this user may read them from our memory or environ.
    forbid_dumps()
    try:
        config = load_config(ctx.obj["config_file"])
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    mask_output(config_secrets(config))  # no command's output may show a secret the config holds
    return config


def open_store(config: Config) -> Metastore:
    path = sqlite_path(config.metadata_service_sql_conn) if config.metadata_service_type == SQL_SERVICE else None
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
def using_store(config: Config) -> Iterator[Metastore]:
    store = open_store(config)
    try:
        yield store
    except MetastoreError as exc:
        raise click.ClickException(f"{store.describe()}: {exc}") from None
    finally:
        store.close()


@contextmanager
def reading_store(config: Config) -> Iterator[Metastore]:
    """The store for a command that only reads. An embedded SQLite file that does not exist yet is
    not created (nor its directory): the command reads an empty store in a temporary directory
    instead, which is what that file would hold, and says so on stderr."""
    url = config.metadata_service_sql_conn
    path = sqlite_path(url) if config.metadata_service_type == SQL_SERVICE else None
    if path is None or path.exists():
        with using_store(config) as store:
            yield store
        return
    import dataclasses
    import tempfile

    click.echo(f"note: metastore {path} does not exist yet: no controller has run with this config", err=True)
    with tempfile.TemporaryDirectory(prefix="sfc-empty-") as empty:
        stand_in = dataclasses.replace(config, metadata_service_sql_conn=f"sqlite:///{empty}/metastore.db")
        with using_store(stand_in) as store:
            if isinstance(getattr(store, "url", None), str):
                store.url = url  # type: ignore[attr-defined]  # described as the file it stands for
            yield store


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite://`` URL, else None."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database or ""
    if database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database).expanduser() if database else None


def emit(data: Any, as_json: bool, text: Callable[[], str]) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False) if as_json else text())
