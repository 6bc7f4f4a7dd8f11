"""The interactive shell: a prompt-toolkit loop running the CLI's commands on one State.

Start-up is what a person feels most, so the first prompt is drawn before the
database layer is imported: the State is built in a thread once the prompt is
on screen, and the prompt shows the profile as soon as it is there. Anything
that needs the State (a command, a completion) waits for it.

Lines typed here run through ``kong.cli.run``, exactly as ``kong <words>`` from
a terminal would, on the one State of this shell.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.document import Document

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.formatted_text import StyleAndTextTuples
    from prompt_toolkit.input import Input
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
    from prompt_toolkit.output import Output

    from kong.cli import Context

#: commands whose path arguments are folders only
_FOLDER_COMMANDS = {"cd", "mkdir"}
_PROFILE_SUBCOMMANDS = ("list", "show", "use", "test")


class StateLoadFailed(Exception):
    """The State could not be built (bad config, unreadable database)."""


def history_file() -> Path:
    import os

    from kong.config import data_dir
    from kong.paths import make_private_dir

    path = make_private_dir(data_dir()) / "history"
    # FileHistory appends with the umask's mode: the commands typed are the user's alone.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    os.chmod(path, 0o600)
    return path


class KongCompleter(Completer):
    """Command names, options, profile names, folder paths and job ids."""

    def __init__(self, obj: Context) -> None:
        self.obj = obj

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        from kong.cli import ALIASES, cli

        text = document.text_before_cursor
        try:
            words = shlex.split(text)
        except ValueError:  # an open quote: complete the raw last word
            words = text.split()
        if not text or text[-1].isspace():
            words.append("")
        current = words[-1]
        if len(words) == 1:
            names = sorted({*cli.commands, *ALIASES})
            for name in names:
                if name.startswith(current):
                    yield Completion(name, -len(current))
            return
        command = ALIASES.get(words[0], words[0])
        if "--" in words[1:-1]:
            return  # the job's own command line
        if command == "help" and len(words) == 2:
            for name in sorted(cli.commands):
                if name.startswith(current):
                    yield Completion(name, -len(current))
            return
        if command == "profile":
            yield from self._profile(words, current)
            return
        cmd = cli.commands.get(command)
        if cmd is None:
            return
        if current.startswith("-"):
            opts = sorted({o for p in cmd.params for o in [*p.opts, *p.secondary_opts]
                           if o.startswith("-")})
            for opt in opts:
                if opt.startswith(current):
                    yield Completion(opt, -len(current))
            return
        if not any(p.param_type_name == "argument" for p in cmd.params):
            return
        from kong.repl.completion import complete_spec

        folders_only = command in _FOLDER_COMMANDS or (command == "mv" and len(words) > 2)
        for cand in complete_spec(self.obj.state, current, folders_only=folders_only):
            yield Completion(cand.text, -len(current), display=cand.display,
                             display_meta=cand.meta)

    def _profile(self, words: list[str], current: str) -> Iterable[Completion]:
        if len(words) == 2:
            for sub in _PROFILE_SUBCOMMANDS:
                if sub.startswith(current):
                    yield Completion(sub, -len(current))
        elif len(words) == 3 and words[1] in ("use", "test"):
            for name, prof in self.obj.state.config.profiles.items():
                if name.startswith(current):
                    yield Completion(name, -len(current), display_meta=prof.driver)


def tab_bindings(completer: Completer) -> KeyBindings:
    """Tab completes at once, even while a completion started by typing is still running.

    prompt-toolkit runs one completion at a time and drops a Tab that comes while
    the one started by typing is in flight, so a quick Tab would do nothing.
    """
    from prompt_toolkit.buffer import CompletionState
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.completion.base import get_common_complete_suffix
    from prompt_toolkit.key_binding import KeyBindings

    kb = KeyBindings()

    @kb.add("tab")
    def _(event: KeyPressEvent) -> None:
        buf = event.current_buffer
        state = buf.complete_state
        if state is not None and state.completions:
            if len(state.completions) == 1:
                buf.apply_completion(state.completions[0])
            else:
                buf.complete_next()
            return
        doc = buf.document
        found = list(completer.get_completions(doc, CompleteEvent(completion_requested=True)))
        if len(found) == 1:
            buf.apply_completion(found[0])
        elif found:
            common = get_common_complete_suffix(doc, found)
            if common:
                buf.insert_text(common)
            else:
                buf.complete_state = CompletionState(original_document=doc, completions=found)

    return kb


def _prompt_parts(obj: Context, cache: dict[str, Any]) -> StyleAndTextTuples:
    if obj.state_ready:
        state = obj.state
        key = (state.profile, state.cwd.folder_id)
        if cache.get("key") != key:
            cache["key"] = key
            cache["cwd"] = state.cwd.path
        profile, cwd = state.profile, cache["cwd"]
    else:
        profile, cwd = obj._profile or "…", "/"
    return [
        ("class:kong", "kong "),
        ("class:profile", f"[{profile}]"),
        ("", " "),
        ("class:cwd", cwd),
        ("class:kong", " > "),
    ]


def run_repl(
    obj: Context,
    *,
    input: Input | None = None,
    output: Output | None = None,
    on_session: Callable[[PromptSession[str]], None] | None = None,
) -> int:
    """Run the shell until exit/Ctrl-D. Returns the exit code for ``kong``.

    ``input``/``output`` replace the terminal, and ``on_session`` is handed the
    prompt session, for embedding the shell and for driving it in tests.
    """
    from prompt_toolkit import PromptSession
    from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.styles import Style

    from kong.cli import Context

    shell = Context(profile=obj._profile, state=obj._state, interactive=True)
    if input is None and not sys.stdin.isatty():
        return run_script(shell, sys.stdin)
    completer = KongCompleter(shell)
    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(history_file())),
        auto_suggest=AutoSuggestFromHistory(),
        completer=completer,
        key_bindings=tab_bindings(completer),
        complete_while_typing=True,
        style=Style.from_dict({
            "kong": "bold",
            "profile": "ansimagenta bold",
            "cwd": "ansicyan bold",
        }),
        input=input,
        output=output,
    )
    if on_session is not None:
        on_session(session)
    failure: list[BaseException] = []

    def load() -> None:
        try:
            shell.state  # noqa: B018 - builds it
        except BaseException as exc:
            failure.append(exc)
        app = session.app
        loop = getattr(app, "loop", None)
        if loop is None or not app.is_running:
            return
        if failure:
            loop.call_soon_threadsafe(
                lambda: app.exit(exception=StateLoadFailed()) if app.is_running else None
            )
        else:
            loop.call_soon_threadsafe(app.invalidate)

    loader = threading.Thread(target=load, name="kong-load-state", daemon=True)

    def start_loader(*_: Any) -> None:
        if loader.ident is None:
            loader.start()

    # Loading starts once the first prompt is on screen: both are CPU-bound imports,
    # and sharing the GIL from the start would only delay the prompt.
    session.app.after_render += start_loader
    cache: dict[str, Any] = {}

    def fail_early() -> None:
        # The loader may have failed before this prompt's event loop was running.
        if failure:
            session.app.exit(exception=StateLoadFailed())

    while True:
        cache.clear()  # the last command may have renamed or moved the current folder
        try:
            if failure:
                raise StateLoadFailed()
            line = session.prompt(lambda: _prompt_parts(shell, cache), pre_run=fail_early)
        except KeyboardInterrupt:
            continue
        except EOFError:
            start_loader()
            loader.join()
            if failure:
                return _report_load_failure(failure[0])
            _trim_history(shell)
            return 0
        except StateLoadFailed:
            start_loader()
            loader.join()
            return _report_load_failure(failure[0])
        status = run_line(shell, line)
        if status == 130:
            _after_interrupt(shell)
        if shell.exit_requested:
            _trim_history(shell)
            return 0


def _trim_history(shell: Context) -> None:
    """Keep the newest ``history_size`` entries (config); done on exit, not at start-up."""
    keep = shell.state.config.history_size
    path = history_file()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return
    # FileHistory writes each entry as "\n# <time>\n+line\n[+line\n...]".
    starts = [i for i, line in enumerate(text.splitlines(keepends=True)) if line.startswith("# ")]
    if len(starts) <= keep:
        return
    lines = text.splitlines(keepends=True)
    first = starts[-keep] - 1 if starts[-keep] > 0 else 0
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines[first:]), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)


def run_script(shell: Context, lines: Iterable[str]) -> int:
    """``kong < commands.txt``: each line a command; stops at the first that fails."""
    from kong.errors import KongError

    try:
        shell.state  # noqa: B018 - a bad config is reported before any command runs
    except KongError as exc:
        return _report_load_failure(exc)
    for line in lines:
        if line.strip().startswith("#"):
            continue
        status = run_line(shell, line)
        if status or shell.exit_requested:
            return status
    return 0


def _report_load_failure(exc: BaseException) -> int:
    import click

    from kong.errors import KongError

    if isinstance(exc, KongError):
        click.echo(f"kong: error: {exc}", err=True)
        return 1
    raise exc


def run_line(shell: Context, line: str) -> int:
    """Run one line typed at the prompt; a Ctrl-C inside it ends only it."""
    import click

    from kong.cli import run

    try:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            click.echo(f"kong: error: {exc}", err=True)
            return 2
        if not words:
            return 0
        return run(words, obj=shell)
    except KeyboardInterrupt:
        # run() handles Ctrl-C inside the command; this catches one that lands
        # between its handlers, so the shell survives it too.
        click.echo("kong: interrupted", err=True)
        return 130


def _after_interrupt(shell: Context) -> None:
    """Drop whatever half-done transaction the interrupted command left open."""
    if not shell.state_ready:
        return
    from kong import db

    # The next command reports a database that cannot even roll back.
    with contextlib.suppress(Exception):
        db.session().rollback()
