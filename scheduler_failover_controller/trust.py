"""What the controller may trust on disk: only what no other user can have written.

The state directory holds files the controller acts on (the session a start created, whose
processes it SIGKILLs; the leash deadlines). Whoever can write them can make it kill any session
or keep a scheduler running, so the directory must belong to the controller's user and be
writable by nobody else, up the whole path (as OpenSSH's StrictModes checks ``~/.ssh``), and each
file is opened without following links and checked the same way before it is believed.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class UntrustedFile(Exception):
    """A file or directory another user could have written; the message says why."""


def _who(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def directory_problem(path: Path) -> str | None:
    """Why ``path`` (an existing directory) is not private to this user, or None when it is.

    The directory itself must be this user's and writable by no one else; every directory above
    it must belong to root or this user and, when others may write it, have the sticky bit (like
    ``/tmp``), so that nobody can swap the directory for another.
    """
    me = os.geteuid()
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if st.st_uid != me:
        return f"{path} belongs to {_who(st.st_uid)}, not to this user ({_who(me)})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o}); chmod 700 it"
    for parent in Path(os.path.realpath(path)).parents:
        try:
            pst = os.stat(parent)
        except OSError as exc:
            return f"{parent}: {exc.strerror or exc}"
        if pst.st_uid not in (0, me):
            return f"{parent} (above {path}) belongs to {_who(pst.st_uid)}: another user could replace {path}"
        if pst.st_mode & stat.S_IWOTH and not pst.st_mode & stat.S_ISVTX:
            return f"{parent} (above {path}) is writable by everyone without the sticky bit"
    return None


def read_private(path: Path, limit: int = 65536) -> str:
    """The text of ``path`` if it is a regular file of this user's that nobody else may write.

    Opened without following a symbolic link and checked on the open file, so the file checked is
    the file read. Raises :class:`UntrustedFile` (or OSError, e.g. when it does not exist).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedFile(f"{path} is a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedFile(f"{path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise UntrustedFile(f"{path} belongs to {_who(st.st_uid)}, not to this user")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UntrustedFile(f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})")
        return os.read(fd, limit).decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` by a file of this user's, mode 0600, whole or not at all."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
