"""Secrets are masked in URLs shown on purpose, in log lines of any library, and in CLI output."""

from __future__ import annotations

import io
import logging

import pytest

from scheduler_failover_controller.redaction import (
    MASK,
    MaskingStream,
    RedactingFormatter,
    mask,
    redact_url,
    redact_webhook,
    url_secrets,
    zookeeper_digest,
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mysql+pymysql://sfc:pw@db:3306/sfc", "mysql+pymysql://sfc:***@db:3306/sfc"),
        ("postgresql://sfc@db/sfc", "postgresql://sfc@db/sfc"),
        (
            "postgresql://db/sfc?user=sfc&password=hunter2&sslmode=require",
            "postgresql://db/sfc?user=sfc&password=***&sslmode=require",
        ),
        ("mysql+pymysql://sfc:p@ss@db/sfc", "mysql+pymysql://sfc:***@db/sfc"),  # an unescaped "@": masked whole
        ("sqlite:////var/lib/x@y/m.db", "sqlite:////var/lib/x@y/m.db"),
        (
            "mysql+pymysql://sfc:pw@db/sfc?ssl_key=/k&api_token=abc",
            "mysql+pymysql://sfc:***@db/sfc?ssl_key=***&api_token=***",
        ),
    ],
)
def test_redact_url_masks_password_and_secret_query_values(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_url_secrets_finds_raw_and_decoded_password() -> None:
    assert url_secrets("mysql://u:pw%40x@h/d?password=sekret") == ["pw%40x", "pw@x", "sekret"]
    assert url_secrets("sqlite:////tmp/m.db") == []


def test_webhook_shows_only_scheme_and_host() -> None:
    assert redact_webhook("https://hooks.example:8443/services/T0/B0/XYZ?token=abc") == "https://hooks.example:8443/***"
    assert redact_webhook("http://127.0.0.1/") == "http://127.0.0.1"
    assert redact_webhook("not a url") == MASK


def test_kazoo_debug_lines_are_masked_without_knowing_the_secret() -> None:
    auth = "Sending request(xid=None): Auth(auth_type=0, scheme='digest', auth='sfc:topsecret')"
    acl = "Create(path='/sfc', acl=[ACL(perms=31, id=Id(scheme='digest', id='sfc:B64HASH='))])"
    assert "topsecret" not in mask(auth, []) and "sfc:topsecret" not in mask(auth, [])
    assert "B64HASH" not in mask(acl, [])


def test_zookeeper_digest_matches_what_zookeeper_stores() -> None:
    # The digest scheme: user:base64(sha1("user:password")), as kazoo's make_digest_acl_credential.
    from kazoo.security import make_digest_acl_credential

    assert zookeeper_digest("sfc:topsecret") == make_digest_acl_credential("sfc", "topsecret")


def test_formatter_masks_message_and_traceback() -> None:
    formatter = RedactingFormatter("%(levelname)s %(message)s", ["hunter2"])
    try:
        raise RuntimeError("could not log in with hunter2")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "using %s", ("hunter2",), sys.exc_info())
    text = formatter.format(record)
    assert "hunter2" not in text and text.count(MASK) >= 2


def test_masking_stream_masks_secrets_split_across_writes() -> None:
    inner = io.StringIO()
    stream = MaskingStream(inner, ["hunter2"])
    stream.write("password hun")
    stream.write("ter2 shown?\nnext ")
    stream.write("line hunter2")
    stream.flush()
    assert inner.getvalue() == f"password {MASK} shown?\nnext line {MASK}"
