"""click's CliRunner with stdout and stderr apart on every click the supported Pythons get.

click 8.2+ keeps ``result.stderr`` apart and ``result.output`` holds both streams; click 8.1 (the
newest on Python 3.9) mixes stderr into stdout unless asked, and then its ``output`` is stdout
alone. ``cli_runner()`` gives 8.2's behaviour on both.
"""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner, Result


class _BothStreams(Result):
    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class _Apart(CliRunner):
    def invoke(self, *args: Any, **kwargs: Any) -> Result:
        result = super().invoke(*args, **kwargs)
        result.__class__ = _BothStreams
        return result


def cli_runner() -> CliRunner:
    """A CliRunner with ``stderr`` apart and ``output`` both streams, as click 8.2+ has it."""
    try:
        apart: dict[str, Any] = {"mix_stderr": False}
        return _Apart(**apart)
    except TypeError:  # click 8.2+: no mix_stderr, and nothing to do
        return CliRunner()
