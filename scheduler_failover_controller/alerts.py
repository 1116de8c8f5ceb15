"""Alerts by email (Airflow's [smtp] settings) and an optional JSON webhook.

A failed send, whatever raised it (a refused connection, a timeout, a server answering garbage, a
bad status), is one :class:`AlertError` line naming the channel and why: the CLI prints that line,
the daemon logs it and goes on to the next alert. Each channel's send as a whole ends within
``smtp_timeout`` seconds, however slowly its peer answers; the daemon's alerts wait in one bounded
queue for one sending thread, and those that find it full are dropped and counted.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import queue
import smtplib
import socket
import ssl
import threading
from email.message import EmailMessage

from . import http_client
from .config import Config
from .exceptions import FailoverError
from .redaction import redact_webhook

log = logging.getLogger(__name__)

MAX_REASON = 200  # a server's garbage quoted in an error is cut to this many characters
QUEUE_SIZE = 16  # alerts waiting to be sent; more are dropped (and counted) until it drains


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

    def __init__(self, config: Config, queue_size: int = QUEUE_SIZE) -> None:
        self.config = config
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self.dropped = 0  # alerts dropped because the queue was full, since it last had room
        self.dropped_total = 0

    @property
    def enabled(self) -> bool:
        return bool(self.config.alert_to_email or self.config.alert_webhook_url)

    def notify(self, summary: str, body: str) -> None:
        """Queue for the sending thread; failures are logged, never raised. A full queue (a
        channel slower than the alerts come) drops the alert: said once, then counted."""
        if not self.enabled:
            log.info("alert (no recipients configured): %s", summary)
            return
        with self._lock:
            try:
                self._queue.put_nowait((summary, body))
            except queue.Full:
                self.dropped += 1
                self.dropped_total += 1
                if self.dropped == 1:
                    log.error(
                        "alert not delivered (%d wait for a slow channel; new alerts are dropped until they go): %s",
                        self._queue.qsize(),
                        summary,
                    )
                return
            if self.dropped:
                log.warning("alert queue has room again; %d alert(s) were dropped", self.dropped)
                self.dropped = 0
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="alert", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            summary, body = self._queue.get()
            self._deliver_logged(summary, body)

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
        """Send by SMTP; the whole exchange ends within ``smtp_timeout`` seconds (smtplib's own
        timeout bounds each operation only: at the deadline its socket is shut down)."""
        smtp = self.config.smtp
        msg = EmailMessage()
        msg["Subject"] = f"{self.config.alert_email_subject}: {summary}"
        msg["From"] = smtp.mail_from
        msg["To"] = ", ".join(self.config.alert_to_email)
        msg.set_content(body)
        client: smtplib.SMTP
        if smtp.ssl:
            client = smtplib.SMTP_SSL(timeout=smtp.timeout, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(timeout=smtp.timeout)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            sock = client.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(smtp.timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            client.connect(smtp.host, smtp.port)
            with client:
                if smtp.starttls and not smtp.ssl and client.has_extn("starttls"):
                    client.starttls(context=ssl.create_default_context())
                if smtp.user:
                    client.login(smtp.user, smtp.password)
                client.send_message(msg)
        except Exception as exc:  # noqa: BLE001 - smtplib also raises ValueError, UnicodeError, ...
            why = f"timed out after {smtp.timeout:g}s" if expired.is_set() else reason(exc)
            raise AlertError(f"email via {smtp.host}:{smtp.port} failed: {why}") from None
        finally:
            timer.cancel()
            with contextlib.suppress(Exception):
                client.close()

    def post_webhook(self, summary: str, body: str) -> None:
        """POST the alert as JSON; the whole exchange ends within ``smtp_timeout`` seconds."""
        url = self.config.alert_webhook_url
        where = f"webhook {redact_webhook(url)}"
        payload = json.dumps({"summary": summary, "text": body, "host": self.config.current_host}).encode()
        try:
            status = http_client.request(
                url, self.config.smtp.timeout, data=payload, headers={"Content-Type": "application/json"}
            )
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise AlertError(f"{where} failed: {http_client.describe(exc)}") from None
        if status >= 300:
            raise AlertError(f"{where} answered HTTP {status}")
