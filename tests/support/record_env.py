"""An ``event_command`` for tests: appends its whole environment, as one JSON line, to the file named.

Usage: record_env.py FILE
"""

from __future__ import annotations

import json
import os
import sys

if __name__ == "__main__":
    with open(sys.argv[1], "a", encoding="utf-8") as out:
        out.write(json.dumps(dict(os.environ)) + "\n")
