"""Write the copies of the config key registry: README.md's key table and
config/scheduler_failover_controller.cfg (what ``sfc init`` writes, for host master1).

Run after changing a key in scheduler_failover_controller/config/keys.py:

    PYTHONPATH=. python scripts/config_docs.py          # rewrite both files
    PYTHONPATH=. python scripts/config_docs.py --check  # exit 1 if either is out of date

tests/unit/test_config_keys.py makes the same comparison.
"""

from __future__ import annotations

import sys
from pathlib import Path

from scheduler_failover_controller.config.docs import SAMPLE_HOST, default_config_text, with_readme_table

ROOT = Path(__file__).resolve().parents[1]


def expected() -> dict[Path, str]:
    """Each generated file and the text it must have."""
    readme = ROOT / "README.md"
    return {
        readme: with_readme_table(readme.read_text(encoding="utf-8")),
        ROOT / "config" / "scheduler_failover_controller.cfg": default_config_text(SAMPLE_HOST),
    }


def main(argv: list[str]) -> int:
    stale = [path for path, text in expected().items() if path.read_text(encoding="utf-8") != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(ROOT)}: out of date; run scripts/config_docs.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in expected().items():
        if path in stale:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
