"""The command line: a thin click layer; every failure is one line and a non-zero exit.

The group and its shared helpers are in ``group``; the commands, by concern, in ``cluster`` (read
the cluster), ``operator`` (change it), ``drain`` (keep the scheduler off a node) and ``node`` (act on
this machine). Importing this package registers them all.
"""

from __future__ import annotations

import sys

import click

from ..exceptions import FailoverError
from . import cluster, drain, node, operator
from .group import main

__all__ = ["cluster", "drain", "main", "node", "operator", "run"]


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
