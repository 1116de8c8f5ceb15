"""``send_test_email`` against a small SMTP server on 127.0.0.1.

The environment is cleared of SCHEDULER_FAILOVER_CONTROLLER_CONFIG and AIRFLOW__* and AIRFLOW_HOME
points at a tmp dir. Network use is limited to 127.0.0.1.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.support.ports import free_port

from .cli_support import HOST, Cli, assert_no_traceback, assert_one_error_line

# --- send_test_email ---------------------------------------------------------------------------


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: EHLO, MAIL, RCPT, DATA, QUIT (no STARTTLS, no AUTH)."""

    server: _SmtpServer

    def reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        self.reply("220 127.0.0.1 test SMTP ready")
        sender, in_data = "", False
        recipients: list[str] = []
        data: list[bytes] = []
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            if in_data:
                if raw.rstrip(b"\r\n") == b".":
                    in_data = False
                    self.server.messages.append((sender, recipients, b"".join(data).decode("utf-8", "replace")))
                    self.reply("250 OK queued")
                else:
                    data.append(raw[1:] if raw.startswith(b"..") else raw)
                continue
            line = raw.decode("ascii", "replace").strip()
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250-127.0.0.1")
                self.reply("250 8BITMIME")
            elif verb == "HELO" or verb in ("NOOP", "RSET"):
                self.reply("250 OK")
            elif verb == "MAIL":
                sender, recipients, data = line.split(":", 1)[1].strip(), [], []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(line.split(":", 1)[1].strip())
                self.reply("250 OK")
            elif verb == "DATA":
                in_data = True
                self.reply("354 end with <CRLF>.<CRLF>")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SmtpHandler)
        self.messages: list[tuple[str, list[str], str]] = []


@pytest.fixture
def smtp_server() -> Iterator[_SmtpServer]:
    server = _SmtpServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_send_test_email_without_recipients_exits_1(cli: Cli) -> None:
    result = cli("send_test_email")
    assert_one_error_line(result, 1, "alert_to_email", str(cli.config))


def test_send_test_email_is_delivered(cli: Cli, smtp_server: _SmtpServer) -> None:
    port = smtp_server.server_address[1]
    cli.write(
        extra=f"[smtp]\nsmtp_host = 127.0.0.1\nsmtp_port = {port}\nsmtp_starttls = False\n"
        "smtp_mail_from = sfc@example.com\nsmtp_timeout = 5\n",
        alert_to_email="ops@example.com, oncall@example.com",
        alert_email_subject="SFC Alert",
    )

    result = cli("send_test_email")

    assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert "ops@example.com" in result.output
    assert len(smtp_server.messages) == 1
    sender, recipients, body = smtp_server.messages[0]
    assert sender == "<sfc@example.com>"
    assert recipients == ["<ops@example.com>", "<oncall@example.com>"]
    assert f"Subject: SFC Alert: test alert from {HOST}" in body
    assert "This is a test alert" in body


def test_send_test_email_to_a_closed_port_exits_1(cli: Cli) -> None:
    port = free_port()
    cli.write(
        extra=f"[smtp]\nsmtp_host = 127.0.0.1\nsmtp_port = {port}\nsmtp_starttls = False\n"
        "smtp_password = Smtp-S3cret\nsmtp_timeout = 2\n",
        alert_to_email="ops@example.com",
    )
    line = assert_one_error_line(cli("send_test_email"), 1, f"127.0.0.1:{port}")
    assert "Smtp-S3cret" not in line


def test_smtp_from_env_is_used(cli: Cli, smtp_server: _SmtpServer) -> None:
    cli.write(alert_to_email="ops@example.com")
    env: dict[str, str | None] = {
        "AIRFLOW__SMTP__SMTP_HOST": "127.0.0.1",
        "AIRFLOW__SMTP__SMTP_PORT": str(smtp_server.server_address[1]),
        "AIRFLOW__SMTP__SMTP_STARTTLS": "False",
    }
    result = cli("send_test_email", **env)
    assert result.exit_code == 0, result.output
    assert len(smtp_server.messages) == 1
