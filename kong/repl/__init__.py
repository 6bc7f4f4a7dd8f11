"""The interactive shell: ``kong`` with no arguments."""

from kong.repl.shell import run_repl

__all__ = ["run_repl"]
