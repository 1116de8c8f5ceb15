"""Alerts by email (Airflow's [smtp] settings) and an optional JSON webhook.

A failed send, whatever raised it (a refused connection, a timeout, a server answering garbage, a
bad status), is one :class:`AlertError` line naming the channel and why: the CLI prints that line,
the daemon logs it and goes on to the next alert.
"""

from __future__ import annotations

import json
import logging
import smtplib
import socket
import ssl
import threading
import urllib.error
import urllib.request
from email.message import EmailMessage

from .config import Config
from .exceptions import FailoverError
from .redaction import redact_webhook

log = logging.getLogger(__name__)

MAX_REASON = 200  # a server's garbage quoted in an error is cut to this many characters


def reason(exc: BaseException) -> str:
    """``exc`` as a short single line: its type when its text says little (``BadStatusLine('')``)."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    if len(text) > MAX_REASON:
        text = text[:MAX_REASON] + "..."
    if not text or text in ("''", '""'):
        return name
    return text if isinstance(exc, (OSError, smtplib.SMTPException)) else f"{name}: {text}"


class AlertError(FailoverError):
    """An alert could not be delivered."""


class Alerter:
    """Sends alerts; ``notify`` never blocks the controller cycle."""

    def __init__(self, config: Config) -> None:
        self.config = config

    @property
    def enabled(self) -> bool:
        return bool(self.config.alert_to_email or self.config.alert_webhook_url)

    def notify(self, summary: str, body: str) -> None:
        """Deliver in a background thread; failures are logged, never raised."""
        if not self.enabled:
            log.info("alert (no recipients configured): %s", summary)
            return
        threading.Thread(target=self._deliver_logged, args=(summary, body), name="alert", daemon=True).start()

    def _deliver_logged(self, summary: str, body: str) -> None:
        try:
            self.deliver(summary, body)
            log.info("alert sent: %s", summary)
        except AlertError as exc:
            log.error("alert not delivered (%s): %s", exc, summary)
        except Exception as exc:  # noqa: BLE001 - never a silent end of the alert thread
            log.error("alert not delivered (%s): %s", reason(exc), summary)

    def deliver(self, summary: str, body: str) -> None:
        """Send now, by every configured channel; raise AlertError naming what failed."""
        errors = []
        if self.config.alert_to_email:
            try:
                self.send_email(summary, body)
            except AlertError as exc:
                errors.append(str(exc))
        if self.config.alert_webhook_url:
            try:
                self.post_webhook(summary, body)
            except AlertError as exc:
                errors.append(str(exc))
        if errors:
            raise AlertError("; ".join(errors))

    def send_email(self, summary: str, body: str) -> None:
        smtp = self.config.smtp
        msg = EmailMessage()
        msg["Subject"] = f"{self.config.alert_email_subject}: {summary}"
        msg["From"] = smtp.mail_from
        msg["To"] = ", ".join(self.config.alert_to_email)
        msg.set_content(body)
        try:
            client: smtplib.SMTP
            if smtp.ssl:
                client = smtplib.SMTP_SSL(
                    smtp.host, smtp.port, timeout=smtp.timeout, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
            with client:
                if smtp.starttls and not smtp.ssl and client.has_extn("starttls"):
                    client.starttls(context=ssl.create_default_context())
                if smtp.user:
                    client.login(smtp.user, smtp.password)
                client.send_message(msg)
        except Exception as exc:  # noqa: BLE001 - smtplib also raises ValueError, UnicodeError, ...
            raise AlertError(f"email via {smtp.host}:{smtp.port} failed: {reason(exc)}") from None

    def post_webhook(self, summary: str, body: str) -> None:
        url = self.config.alert_webhook_url
        where = f"webhook {redact_webhook(url)}"
        payload = json.dumps({"summary": summary, "text": body, "host": self.config.current_host}).encode()
        try:
            request = urllib.request.Request(
                url, data=payload, headers={"Content-Type": "application/json"}, method="POST"
            )
            with urllib.request.urlopen(request, timeout=self.config.smtp.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:  # a 4xx/5xx answer: its status says why
            raise AlertError(f"{where} answered HTTP {exc.code}") from None
        except socket.timeout:
            raise AlertError(f"{where} failed: no answer within {self.config.smtp.timeout:g}s") from None
        except urllib.error.URLError as exc:
            why = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
            raise AlertError(f"{where} failed: {reason(why)}") from None
        except Exception as exc:  # noqa: BLE001 - http.client's BadStatusLine...: a server answering garbage
            raise AlertError(f"{where} failed: {reason(exc)}") from None
        if status >= 300:
            raise AlertError(f"{where} answered HTTP {status}")
