"""How an alert failure is put in one line."""

from __future__ import annotations

import http.client
import smtplib

from scheduler_failover_controller.alerts import MAX_REASON, reason


def test_reason_is_one_short_line_naming_the_error() -> None:
    assert reason(http.client.BadStatusLine("garbage\r\nmore")) == "BadStatusLine: garbage more"
    assert reason(http.client.BadStatusLine("''")) == "BadStatusLine"
    assert reason(ConnectionRefusedError(111, "Connection refused")) == "[Errno 111] Connection refused"
    assert reason(smtplib.SMTPServerDisconnected("gone")) == "gone"
    long = reason(ValueError("x" * 1000))
    assert len(long) <= MAX_REASON + len("ValueError: ...") and "\n" not in long
