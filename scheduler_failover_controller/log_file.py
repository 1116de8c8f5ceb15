"""The controller's log file: in a directory only its user may write, never through a link.

Root appending its log to a file another user can replace by a symbolic link appends to whatever
that link names (``/etc/shadow``). So ``logging_dir`` must pass the checks ``state_dir`` passes
(:func:`.trust.directory_problem`), and the file and each one a rotation creates is opened with
``O_NOFOLLOW`` and checked to be this user's regular file.
"""

from __future__ import annotations

import io
import logging.handlers
from pathlib import Path

from .exceptions import ConfigError
from .trust import UntrustedFile, directory_problem, open_append_private


class PrivateRotatingFileHandler(logging.handlers.TimedRotatingFileHandler):
    """A :class:`~logging.handlers.TimedRotatingFileHandler` whose every open refuses links.

    A rotation renames the file (a rename moves a link, never what it names) and then opens a new
    one through :meth:`_open`.
    """

    def _open(self) -> io.TextIOWrapper:
        fd = open_append_private(Path(self.baseFilename))
        return open(fd, "a", encoding=self.encoding or "utf-8", errors=self.errors)


def open_log_file(directory: Path, name: str, when: str, backups: int, source: str) -> PrivateRotatingFileHandler:
    """The handler of ``directory/name``, creating the directory 0700; ConfigError (one line) if the
    directory is not private to this user or the file cannot be opened safely."""
    path = directory / name
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{source}: logging_dir: cannot create {directory}: {exc.strerror or exc}") from None
    problem = directory_problem(directory)
    if problem:
        raise ConfigError(f"{source}: logging_dir: {problem}")
    try:
        return PrivateRotatingFileHandler(path, when=when, backupCount=backups, encoding="utf-8")
    except UntrustedFile as exc:
        raise ConfigError(f"{source}: logging_file_name: {exc}") from None
    except OSError as exc:
        raise ConfigError(
            f"{source}: logging_file_name: cannot open the log file {path}: {exc.strerror or exc}"
        ) from None
