"""Alerts by email (Airflow's [smtp] settings) and an optional JSON webhook."""

from __future__ import annotations

import json
import logging
import smtplib
import socket
import ssl
import threading
import urllib.request
from email.message import EmailMessage

from .config import Config
from .exceptions import FailoverError

log = logging.getLogger(__name__)


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
        except (OSError, smtplib.SMTPException) as exc:
            raise AlertError(f"email via {smtp.host}:{smtp.port} failed: {exc}") from None

    def post_webhook(self, summary: str, body: str) -> None:
        payload = json.dumps({"summary": summary, "text": body, "host": self.config.current_host}).encode()
        request = urllib.request.Request(
            self.config.alert_webhook_url, data=payload, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.config.smtp.timeout) as response:
                if response.status >= 300:
                    raise AlertError(f"webhook answered HTTP {response.status}")
        except (OSError, socket.timeout) as exc:
            raise AlertError(f"webhook failed: {exc}") from None
