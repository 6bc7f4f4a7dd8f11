"""A prompt-toolkit loop that runs the CLI's commands on one long-lived State."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kong.cli import Context


def run_repl(obj: Context) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
    from prompt_toolkit.history import FileHistory

    from kong.cli import Context, run

    state = obj.state
    shell = Context(state=state, interactive=True)
    history = FileHistory(str(state.config.data_dir / "history"))
    session: PromptSession[str] = PromptSession(history=history,
                                                auto_suggest=AutoSuggestFromHistory())
    while True:
        try:
            line = session.prompt(f"kong [{state.profile}] {state.cwd.path} > ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            return
        try:
            words = shlex.split(line)
        except ValueError as exc:
            print(f"kong: error: {exc}")
            continue
        if not words:
            continue
        if words[0] in ("exit", "quit"):
            return
        words[0] = words[0].replace("_", "-")
        run(words, obj=shell)
