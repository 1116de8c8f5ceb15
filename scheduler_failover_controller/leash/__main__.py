"""``python -m scheduler_failover_controller.leash [--serve]``: how a leash is started on its node."""

from __future__ import annotations

import sys

from .process import main

sys.exit(main())
