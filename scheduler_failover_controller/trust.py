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
    return parents_problem(path, f"another user could replace {path}")


def parents_problem(path: Path, consequence: str = "") -> str | None:
    """Why a directory above ``path`` (its real path) lets another user swap what is below it: it
    belongs to someone but root or this user, or everyone may write it without the sticky bit."""
    me = os.geteuid()
    for parent in Path(os.path.realpath(path)).parents:
        try:
            pst = os.stat(parent)
        except OSError as exc:
            return f"{parent}: {exc.strerror or exc}"
        if pst.st_uid not in (0, me):
            return f"{parent} (above {path}) belongs to {_who(pst.st_uid)}" + (
                f": {consequence}" if consequence else ""
            )
        if pst.st_mode & stat.S_IWOTH and not pst.st_mode & stat.S_ISVTX:
            return f"{parent} (above {path}) is writable by everyone without the sticky bit"
    return None


def read_private(path: Path, limit: int = 65536) -> str:
    """The text of ``path`` if it is a regular file of this user's that nobody else may write.

    Opened without following a symbolic link and checked on the open file, so the file checked is
    the file read. Raises :class:`UntrustedFile` (or OSError, e.g. when it does not exist).
    """
    fd = open_trusted(path)
    try:
        return os.read(fd, limit).decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def open_trusted(path: Path, what: str = "", root_too: bool = False) -> int:
    """A read descriptor for ``path`` if it is a regular file of this user's (or root's, with
    ``root_too``) that no other user may write, opened without following a link and checked on
    the open file. ``what`` names the file in the message. Raises :class:`UntrustedFile` (or
    OSError, e.g. when it does not exist)."""
    name = f"{what} {path}" if what else str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedFile(f"{name} is a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedFile(f"{name} is not a regular file")
        if st.st_uid != os.geteuid() and not (root_too and st.st_uid == 0):
            owners = "this user or root" if root_too else "this user"
            raise UntrustedFile(f"{name} belongs to {_who(st.st_uid)}, not to {owners}")
        if _others_may_write(st):
            raise UntrustedFile(f"{name} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})")
    except BaseException:
        os.close(fd)
        raise
    return fd


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


def command_source_problem(path: Path, st: os.stat_result) -> str | None:
    """Why the file ``path`` (``st``: its fstat) may not say what this user runs, or None.

    A config names commands the controller runs (the start, stop and fence commands, ``KEY_cmd``
    keys): a file another user owns or may write would run that user's commands as this one.
    """
    me = os.geteuid()
    if st.st_uid not in (0, me):
        return f"{path} belongs to {_who(st.st_uid)}: that user could make this one ({_who(me)}) run any command"
    if _others_may_write(st):
        mode = stat.S_IMODE(st.st_mode)
        return f"{path} is writable by other users (mode {mode:04o}): they could make this user run any command"
    return None


def _others_may_write(st: os.stat_result) -> bool:
    return bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def write_problem(path: Path, sticky_ok: bool = True) -> str | None:
    """Why writing ``path`` could follow another user's link (None when it cannot).

    For a file written in place or replaced (a config, a SQLite file): every directory the name
    or, for a symbolic link, its target sits in must belong to root or this user, and no other
    user may write the directory holding it (a sticky directory like ``/tmp`` only when the file
    does not exist yet or is this user's or root's); a symbolic link itself must be this user's or
    root's. Directories above those may be world-writable only with the sticky bit, as for
    :func:`directory_problem`. ``sticky_ok=False`` refuses a sticky directory too (SQLite creates
    files of its own next to its database, under names another user could take first).
    """
    me = os.geteuid()
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        lst = None
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    places = [Path(os.path.abspath(path))]
    if lst is not None and stat.S_ISLNK(lst.st_mode):
        if lst.st_uid not in (0, me):
            return f"{path} is a symbolic link of {_who(lst.st_uid)}"
        places.append(Path(os.path.realpath(path)))
    for place in places:
        holder = place.parent
        while not os.path.lexists(holder) and holder != holder.parent:
            place, holder = holder, holder.parent  # directories yet to be created: this user's
        try:
            hst = os.stat(holder)
            leaf = os.lstat(place) if os.path.lexists(place) else None
        except OSError as exc:
            return f"{holder}: {exc.strerror or exc}"
        if hst.st_uid not in (0, me):
            return f"{holder} (holding {place.name}) belongs to {_who(hst.st_uid)}"
        if _others_may_write(hst):
            sticky = sticky_ok and hst.st_mode & stat.S_ISVTX and (leaf is None or leaf.st_uid in (0, me))
            if not sticky:
                mode = stat.S_IMODE(hst.st_mode)
                return f"{holder} (holding {place.name}) is writable by other users (mode {mode:04o})"
        problem = parents_problem(holder)
        if problem:
            return problem
    return None


def open_append_private(path: Path) -> int:
    """A descriptor appending to ``path``, created 0600: never through a symbolic link, only a
    regular file of this user's. Raises :class:`UntrustedFile` or OSError."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
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
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
