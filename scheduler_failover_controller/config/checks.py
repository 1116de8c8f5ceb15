"""Checks of single values that need more than a parser: URLs, paths, ZooKeeper hosts, node names.

Each takes the key it checks and ``fail`` (``Sources.fail``), which builds the one-line error
naming the key and where its value came from.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError

Fail = Callable[[str, str], ConfigError]

# Node names become file names (state_dir/locks/NODE.lock, leash/.NODE.deadline.PID.RANDOM.tmp, ...):
# this leaves room for the longest suffix within a file system's 255-byte name limit.
MAX_NODE_NAME = 200
# The drivers Airflow's database may be read with (each held to the deadline; mysqldb URLs run on pymysql).
_JOB_DRIVERS = {
    "sqlite": ("pysqlite",),
    "mysql": ("pymysql", "mysqldb"),
    "mariadb": ("pymysql", "mysqldb"),
    "postgresql": ("psycopg2", "psycopg"),
}


def node_name_problem(node: str) -> str | None:
    """Why ``node`` cannot be a node name (it reaches shells, ssh and file names), or None."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._:-]*", node):
        return f"{node[:40]!r} is not a valid host name"
    if len(node) > MAX_NODE_NAME:
        return f"{node[:20]}...: a node name is at most {MAX_NODE_NAME} characters"
    return None


def match_problem(match: str, whose: str) -> str | None:
    """Why ``match`` cannot find processes (empty, unsplittable, no program), or None."""
    if not match:
        return "must not be empty"
    try:
        words = shlex.split(match)
    except ValueError as exc:  # e.g. an unbalanced quote: the probe would crash on it later
        return f"cannot be split into words: {exc}"
    if not any(word.strip() for word in words):
        return f"must name {whose} program"
    return None


def check_sql(sql_conn: str, nodes: tuple[str, ...], local_nodes: tuple[str, ...], fail: Fail) -> None:
    """The SQL metastore URL: parseable, shared when nodes live on other hosts, SQLite only in a file."""
    key = "metadata_service_sql_conn"
    if sql_conn.startswith("sqlite") and set(nodes) - set(local_nodes):
        # Each host would have its own file and elect itself: two schedulers.
        raise fail(
            key,
            "an SQLite metastore is local to one host; nodes on other hosts need a shared MySQL/MariaDB/PostgreSQL URL",
        )
    _check_authority(sql_conn, key, fail)
    from sqlalchemy.engine import make_url  # here: a ZooKeeper controller never loads SQLAlchemy
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(sql_conn)
        backend = url.get_backend_name()
    except (ArgumentError, ValueError):  # e.g. a port that is not a number; never show the URL (password)
        raise fail(key, "not a valid SQLAlchemy URL (dialect+driver://...)") from None
    if backend != "sqlite":
        return
    database = url.database or ""
    query = " ".join(f"{k}={v}" for k, v in url.query.items())
    if not database or ":memory:" in database or "mode=memory" in f"{database} {query}":
        # Each process would have a store of its own: every controller elects itself.
        raise fail(
            key, "an in-memory SQLite metastore is private to one process; name a file (sqlite:////path/file.db)"
        )
    if database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    db = expand(database, key, fail)
    if not db.is_absolute():
        # Relative to each process's working directory: two commands could use two stores.
        raise fail(key, f"the SQLite file {database!r} must be an absolute path (sqlite:////path/file.db)")
    directory(str(db.parent), key, fail)
    if os.path.isdir(db):
        raise fail(key, f"the SQLite file {db} is a directory")


def check_job_db(url: str, key: str, fail: Fail) -> None:
    """Airflow's database URL: one we can read, held to a deadline; never shown (it may hold a password)."""
    _check_authority(url, key, fail)
    from sqlalchemy.engine import make_url  # here: only a controller with this check on loads SQLAlchemy for it
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
    except (ArgumentError, ValueError):
        raise fail(key, "not a valid SQLAlchemy URL (dialect+driver://...)") from None
    if backend not in _JOB_DRIVERS:
        raise fail(key, f"database {backend[:40]!r} is not supported (sqlite, mysql, mariadb, postgresql)")
    if "+" in parsed.drivername and parsed.drivername.split("+", 1)[1] not in _JOB_DRIVERS[backend]:
        names = ", ".join(f"{backend}+{d}://" for d in _JOB_DRIVERS[backend])
        raise fail(key, f"driver {parsed.drivername.split('+', 1)[1][:40]!r} cannot be held to a deadline; use {names}")
    database = parsed.database or ""
    if backend == "sqlite" and (not database or ":memory:" in database or "mode=memory" in url):
        raise fail(key, "an in-memory SQLite database is private to one process; name Airflow's file")


def _check_authority(url: str, key: str, fail: Fail) -> None:
    """A URL with a scheme whose user/password holds no unescaped '@'."""
    if "://" not in url:
        raise fail(key, "not a SQLAlchemy URL (dialect+driver://...)")
    authority = re.split(r"[/?#]", url.split("://", 1)[1], maxsplit=1)[0]
    if authority.count("@") > 1:
        # SQLAlchemy would read what follows the first "@" as the host: part of the password
        # would then be shown in every connection error.
        raise fail(key, "the user or password holds an unescaped '@': write it as %40 (URL-encode the password)")


def expand(raw: str, key: str, fail: Fail) -> Path:
    """``raw`` as a path with ``~`` expanded."""
    try:
        return Path(raw).expanduser()
    except RuntimeError:  # "~" with no home directory, "~user" of no such user
        raise fail(key, f"{raw!r}: cannot expand '~' (no such home directory)") from None


def directory(raw: str, key: str, fail: Fail) -> Path:
    """An absolute directory that exists or could be created: nothing on its path is a file.

    Whether this user may create it is found out where it is created (``start``), with one line.
    """
    path = expand(raw, key, fail)
    if not path.is_absolute():
        raise fail(key, f"{raw!r} must be an absolute path")
    probe = path
    for _ in range(len(path.parts) + 1):  # up to the root, which exists
        try:
            info = probe.stat()
        except (FileNotFoundError, NotADirectoryError):
            probe = probe.parent
            continue
        except (OSError, ValueError) as exc:  # a name too long, a symlink loop, no permission
            raise fail(key, f"{path}: cannot be used: {getattr(exc, 'strerror', None) or exc}") from None
        if stat.S_ISDIR(info.st_mode):
            return path
        if probe == path:
            raise fail(key, f"{path} exists and is not a directory")
        raise fail(key, f"{path} cannot be created: {probe} is not a directory")
    return path


def check_url(url: str, key: str, fail: Fail, show: bool) -> None:
    """An http(s) URL that urllib can use: ASCII, no whitespace, a host (``show``: may appear in messages)."""
    shown = f"{url!r} " if show else ""  # a webhook URL often carries a token: never shown
    if not url.isascii() or any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in url):
        raise fail(key, f"{shown}must be ASCII without spaces (percent-encode them)")
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
    except ValueError:
        raise fail(key, f"{shown}is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise fail(key, f"{shown}must be an http:// or https:// URL")
    if not parts.hostname:
        raise fail(key, f"{shown}names no host")


def check_zookeeper_hosts(value: str, fail: Fail) -> None:
    """``host:port,...[/chroot]`` as kazoo reads it, each port written out (kazoo would assume 2181)."""
    from kazoo.hosts import collect_hosts  # here: an SQL controller never loads kazoo

    key = "metadata_service_zookeeper_nodes"
    servers, _, chroot = value.partition("/")
    if not servers.strip():
        raise fail(key, "no ZooKeeper server given")
    for server in servers.split(","):
        server = server.strip()
        port = server.rpartition(":")[2]
        try:
            # kazoo's own reading of it (what KazooClient connects to): host, and port or 2181.
            hosts, _ = collect_hosts(server)
            ok = len(hosts) == 1 and port.isdigit() and hosts[0][1] == int(port) and 0 < int(port) < 65536
        except ValueError:  # no host, a port that is not a number or out of range
            ok = False
        if not ok:
            raise fail(key, f"{server!r} is not host:port")
    if chroot and (chroot.endswith("/") or "//" in chroot):
        raise fail(key, f"chroot '/{chroot}' is not a valid ZooKeeper path")


def check_zookeeper(values: dict[str, Any], fail: Fail) -> None:
    """The ZooKeeper keys: hosts with optional chroot, root path, digest auth, TLS files."""
    check_zookeeper_hosts(values["metadata_service_zookeeper_nodes"], fail)
    root = values["metadata_service_zookeeper_root"]
    if not root.startswith("/") or root == "/" or root.endswith("/") or "//" in root:
        raise fail("metadata_service_zookeeper_root", f"{root!r} must be an absolute ZooKeeper path like /sfc")
    auth = values["metadata_service_zookeeper_auth"]
    if auth and (":" not in auth or not auth.split(":", 1)[0] or not auth.split(":", 1)[1]):
        raise fail("metadata_service_zookeeper_auth", "must be user:password (digest)")
    for key in (
        "metadata_service_zookeeper_ca",
        "metadata_service_zookeeper_certfile",
        "metadata_service_zookeeper_keyfile",
    ):
        if values[key] and not Path(values[key]).expanduser().is_file():
            raise fail(key, f"{values[key]!r} is not a readable file")
    if (values["metadata_service_zookeeper_certfile"] == "") != (values["metadata_service_zookeeper_keyfile"] == ""):
        raise fail("metadata_service_zookeeper_keyfile", "certfile and keyfile must be given together")
