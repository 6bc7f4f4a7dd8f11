"""The ``kong`` command line: one click command per operation, each a thin call
into ``State``. The REPL (``kong/repl``) runs these same commands on its own,
long-lived State, so every command has exactly one implementation.

``group`` holds the group and error handling; the commands live in ``folders``,
``jobs``, ``logs`` and ``profiles``, registered on the group by importing them.
"""

from __future__ import annotations

from kong.agent_cli import COMMANDS as _AGENT_COMMANDS  # agent, connect, disconnect
from kong.cli import (  # noqa: F401 - register the commands
    folders,
    jobs,
    logs,
    profiles,
    report,
    staging,
    sweep,
)
from kong.cli.group import ALIASES, Context, cli, fail, main, run

for _command in _AGENT_COMMANDS:
    cli.add_command(_command)

import kong.completion_cli  # noqa: E402, F401 - registers `kong completion`

__all__ = ["ALIASES", "Context", "cli", "fail", "main", "run"]
