"""``python -m scheduler_failover_controller``: the same as the console script."""

from .cli import run

run()
