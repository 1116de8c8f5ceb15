"""The keys of alerts (email, webhook) and of the controller's own log.

Assembled by :mod:`.keys`, in this order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..redaction import redact_webhook
from . import parsers as p
from .key import Key

# Airflow's [smtp] keys (and AIRFLOW__SMTP__<KEY>), read for alert email; SmtpConfig field = key less "smtp_".
SMTP_KEYS: dict[str, Callable[[str], Any]] = {
    "smtp_host": p.text,
    "smtp_port": p.tcp_port,
    "smtp_starttls": p.boolean,
    "smtp_ssl": p.boolean,
    "smtp_user": p.text,
    "smtp_password": p.text,
    "smtp_mail_from": p.text,
    "smtp_timeout": p.positive,
}

ALERT_KEYS = (
    Key(
        "alert_to_email",
        p.comma_list,
        "",
        "Alerts: comma separated recipients; SMTP settings come from Airflow's [smtp] section.",
        "alert email recipients, comma separated; SMTP from Airflow's `[smtp]` ("
        + ", ".join(f"`{name}`" for name in SMTP_KEYS)
        + ", and `AIRFLOW__SMTP__*`)",
        since_2016=True,
    ),
    Key(
        "alert_email_subject",
        p.text,
        "Airflow Alert - Scheduler Failover Controller",
        "Subject of the alert email (surrounding quotes are dropped).",
        "subject of the alert email",
        since_2016=True,
    ),
    Key(
        "alert_webhook_url",
        p.text,
        "",
        """\
Optional URL that receives each alert as a JSON POST.
Or alert_webhook_url_cmd (a command printing it) or _file (a private file holding it).""",
        "alerts also POSTed as JSON",
        redact=lambda value: redact_webhook(value) if value else value,
    ),
    Key(
        "event_command",
        p.command,
        "",
        """\
Command run for every event a controller records (election, start, restart, move, fence, ...),
with the event in SFC_EVENT, SFC_NODE, SFC_FROM_NODE, SFC_EPOCH, SFC_CONTROLLER, SFC_MESSAGE and
SFC_TIME, and none of the controller's settings. One at a time, in order, apart from the cycle.
Empty: none.""",
        "run for every recorded event, with it in `SFC_*` variables (README, Event hooks)",
        command=True,
    ),
    Key(
        "event_command_timeout",
        p.positive,
        "30",
        "Seconds event_command may run; then its whole process group is killed.",
        "seconds `event_command` may run before it is killed",
    ),
    Key(
        "logging_level",
        p.level,
        "INFO",
        "Logging. Logs always go to stderr (journald), at this level: DEBUG, INFO, WARNING, ERROR or CRITICAL.",
        "logs go to stderr (journald) at this level",
        since_2016=True,
    ),
    Key(
        "logging_dir",
        p.text,
        "",
        """\
With logging_dir set (an absolute path) the logs also go to a rotating file there. Like state_dir,
it must belong to the controller's user and be writable by nobody else, up the whole path.""",
        "also log to a rotating file in this directory (private to the controller's user, as `state_dir`)",
        since_2016=True,
    ),
    Key(
        "logging_file_name",
        p.text,
        "scheduler_failover_controller.log",
        "The name of that log file in logging_dir.",
        "name of that file",
        since_2016=True,
    ),
    Key(
        "logs_rotate_when",
        p.rotate_when,
        "midnight",
        "When the log file is rotated: S, M, H, D, midnight or W0-W6 (weekday).",
        "when the file is rotated",
        since_2016=True,
    ),
    Key(
        "logs_rotate_backup_count",
        p.count,
        "7",
        "Rotated log files kept.",
        "rotated files kept",
        since_2016=True,
    ),
    Key(
        "log_summary_interval",
        p.off_or_seconds,
        "600",
        """\
A steady state logs nothing at INFO per cycle: each change of the cycle's decision is logged once,
and the unchanged decision as one summary line every this many seconds. 0: no summary.""",
        "seconds between one-line summaries of an unchanged cycle decision (changes are logged once); 0: none",
    ),
)
