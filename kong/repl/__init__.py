"""The interactive shell: ``kong`` with no arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kong.cli import Context


def run_repl(obj: Context, **kwargs: Any) -> int:
    """See ``kong.repl.shell.run_repl``; imported on call, so that shell completion,
    which uses ``kong.repl.completion``, does not load prompt-toolkit."""
    from kong.repl.shell import run_repl as run

    return run(obj, **kwargs)


__all__ = ["run_repl"]
