"""Masking of secrets in everything the product prints or logs.

Secrets reach output by three roads: URLs shown on purpose (status, metadata, the start banner),
error messages of drivers that quote what they were given, and DEBUG lines of libraries (kazoo
prints its digest ``user:password`` and every ACL hash). The first is handled by the ``redact_*``
functions; the other two by :class:`RedactingFormatter`, which every log handler uses and which
replaces each secret the config holds wherever it appears in a formatted line, tracebacks
included.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from .config import Config

MASK = "***"

# Query parameters whose values are secrets (SQLAlchemy's ``?password=``, webhook tokens).
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|sig|credential", re.IGNORECASE)
_QUERY_PAIR = re.compile(r"(?P<key>[^&=?#]+)=(?P<value>[^&#]*)")
# kazoo's own lines: Auth(auth_type=0, scheme='digest', auth='user:password') and ACL ids.
_KAZOO_AUTH = re.compile(r"(auth=)(['\"])(.*?)\2")
_KAZOO_ACL_ID = re.compile(r"(scheme=(['\"])digest\2,\s*id=)(['\"])(.*?)\3")


def _split(url: str) -> tuple[str, str, str | None, str]:
    """``url`` as (scheme, user part or "", password or None, host and the rest).

    The user part ends at the *last* ``@`` before the path, so that a password holding an
    unescaped ``@`` counts whole as the password, never in part as the host name.
    """
    scheme, rest = url.split("://", 1)
    at = rest.rfind("@", 0, _path_start(rest))
    if at < 0:
        return scheme, "", None, rest
    creds, host = rest[:at], rest[at + 1 :]
    user, sep, password = creds.partition(":")
    return scheme, user, password if sep else None, host


def redact_url(url: str) -> str:
    """``url`` with its password and every secret-looking query value replaced by ``***``.

    Where SQLAlchemy parses the URL as we split it, it renders the part before the path
    (``render_as_string(hide_password=True)``); the path and query stay as written (SQLAlchemy
    would reorder and re-escape them, and show a ``?password=``), secret query values masked.
    A URL it cannot parse, or splits elsewhere (a password holding an unescaped ``@``), is masked
    by our own split, which counts everything up to the last ``@`` as the credentials.
    """
    if "://" not in url:
        return url
    scheme, user, password, host = _split(url)
    if "?" in host:
        path, query = host.split("?", 1)
        host = path + "?" + _QUERY_PAIR.sub(_mask_pair, query)
    if password is not None:
        authority = _rendered_authority(url, password)
        if authority is not None:
            return authority + host[_path_start(host) :]
    if not user and password is None:
        return f"{scheme}://{host}"
    return f"{scheme}://{user}{':' + MASK if password is not None else ''}@{host}"


def _path_start(rest: str) -> int:
    """Where the path (or query, or fragment) begins in what follows ``scheme://``."""
    return min([i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0], default=len(rest))


def _rendered_authority(url: str, password: str) -> str | None:
    """``scheme://user:***@host:port`` as SQLAlchemy renders it, or None if it reads ``url`` otherwise.

    Otherwise: another password than our split's ``password`` (an unescaped ``@`` in it), or
    another text before the path (a fragment taken for the host).

    Only called for a URL with a password: SQLAlchemy is imported where there is one to hide.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    scheme, rest = url.split("://", 1)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    bare = parsed.set(query={})._replace(database=None)
    if (
        parsed.password != unquote(password)
        or bare.render_as_string(False) != f"{scheme}://{rest[: _path_start(rest)]}"
    ):
        return None  # our split counts the credentials whole
    return bare.render_as_string(hide_password=True)


def _mask_pair(match: re.Match[str]) -> str:
    key = match.group("key")
    return f"{key}={MASK}" if _SECRET_PARAM.search(key) and match.group("value") else match.group(0)


def redact_webhook(url: str) -> str:
    """Only the scheme and host of a webhook URL: its path and query usually hold the token."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    more = "/" + MASK if (parts.path.strip("/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{more}" if host else MASK


def url_secrets(url: str) -> list[str]:
    """The secret substrings of ``url``: its password (raw and decoded) and secret query values."""
    if "://" not in url:
        return []
    _scheme, _user, password, host = _split(url)
    found = [password] if password else []
    if "?" in host:
        found += [v for k, v in parse_qsl(host.split("?", 1)[1]) if _SECRET_PARAM.search(k)]
    return _with_decoded(found)


def zookeeper_digest(auth: str) -> str:
    """The ACL id ZooKeeper stores for digest ``user:password``: ``user:base64(sha1(auth))``."""
    user = auth.split(":", 1)[0]
    return f"{user}:{base64.b64encode(hashlib.sha1(auth.encode()).digest()).decode()}"


def config_secrets(config: Config) -> list[str]:
    """Every secret string the config holds, in the forms they may be printed in."""
    found = url_secrets(config.metadata_service_sql_conn) + url_secrets(config.scheduler_job_sql_conn)
    auth = config.metadata_service_zookeeper_auth
    if auth:
        found += [auth, auth.partition(":")[2], zookeeper_digest(auth), zookeeper_digest(auth).partition(":")[2]]
    if config.smtp.password:
        found.append(config.smtp.password)
    if config.http_token:
        found.append(config.http_token)
    hook = config.alert_webhook_url
    if hook:
        found.append(hook)
        try:
            parts = urlsplit(hook)
            found += [p for p in parts.path.split("/") if len(p) >= 6]
            found += [v for _k, v in parse_qsl(parts.query)]
            if parts.password:
                found.append(parts.password)
        except ValueError:
            pass
    return _with_decoded(found)


def _with_decoded(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        for form in (value, unquote(value)):
            # Very short strings would mask ordinary words; they are no secret worth the name.
            if len(form) >= 3 and form not in out:
                out.append(form)
    return out


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret, and kazoo's digest fields, masked."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _KAZOO_AUTH.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}{m.group(2)}", text)
    return _KAZOO_ACL_ID.sub(lambda m: f"{m.group(1)}{m.group(3)}{MASK}{m.group(3)}", text)


class RedactingFormatter(logging.Formatter):
    """A formatter that masks the given secrets in the whole formatted record, traceback included."""

    def __init__(self, fmt: str, secrets: Iterable[str] = ()) -> None:
        super().__init__(fmt)
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record), self.secrets)


class MaskingStream(io.TextIOBase):
    """A text stream that masks secrets in what it writes, line by line, then passes it on.

    The CLI puts its stdout and stderr behind one of these once it knows the config, so that no
    command's output (a driver's error quoting its URL, a library's warning) can show a secret.
    """

    def __init__(self, inner: TextIO, secrets: Iterable[str]) -> None:
        self.inner = inner
        self.secrets = list(secrets)
        self._pending = ""

    def write(self, text: str) -> int:
        # Whole lines only, so a secret split across two writes is still found.
        self._pending += text
        head, sep, self._pending = self._pending.rpartition("\n")
        if sep:
            self.inner.write(mask(head + sep, self.secrets))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.inner.write(mask(self._pending, self.secrets))
            self._pending = ""
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", "utf-8")


def mask_output(secrets: Iterable[str]) -> None:
    """Put ``sys.stdout`` and ``sys.stderr`` behind :class:`MaskingStream` (once per process)."""
    found = [s for s in secrets if s]
    if not found:
        return
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, MaskingStream):
            stream.secrets = sorted(set(stream.secrets) | set(found))
        elif stream is not None:
            setattr(sys, name, MaskingStream(stream, found))
