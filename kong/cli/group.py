"""The ``kong`` group, what its commands share (Context, JobSpec parameter type,
confirmation), the shell's own commands and ``run``: user errors become one line."""

from __future__ import annotations

import errno
import sys
import threading
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any, NoReturn

import click
from click.shell_completion import CompletionItem

from kong import __version__
from kong.errors import KongError, KongWarning

STATUS_NAMES = ["UNKNOWN", "CREATED", "SUBMITTED", "RUNNING", "FAILED", "COMPLETED"]

#: other spellings of commands: the seed REPL's names (create_job, submit_job, ...)
ALIASES = {
    "create_job": "create-job",
    "submit_job": "submit",
    "submit-job": "submit",
    "kill_job": "kill",
    "kill-job": "kill",
    "resubmit_job": "resubmit",
    "resubmit-job": "resubmit",
    "refresh": "update",
    "quit": "exit",
}


class Context:
    """What commands share: the State (created on first use) and how to talk to people."""

    def __init__(self, profile: str | None = None, state: Any = None, interactive: bool = False):
        self._profile = profile
        self._state = state
        # The REPL builds the State in a thread while the first prompt is shown.
        self._lock = threading.Lock()
        self.interactive = interactive
        self.exit_requested = False

    @property
    def state(self) -> Any:
        if self._state is None:
            with self._lock:
                if self._state is None:
                    from kong.state import State

                    state = State.get_instance(profile=self._profile)
                    # people are told when a range selects nothing; scripts get []
                    state.empty_range_is_error = True
                    self._state = state
        return self._state

    @property
    def state_ready(self) -> bool:
        return self._state is not None


pass_context = click.make_pass_decorator(Context)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class SpecType(click.ParamType):
    """A JobSpec or folder path; completes folder paths and job ids from the database."""

    name = "jobspec"

    def __init__(self, folders_only: bool = False) -> None:
        self.folders_only = folders_only

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        from kong.repl.completion import complete_spec

        try:
            obj = ctx.find_object(Context) or Context()
            candidates = complete_spec(obj.state, incomplete, folders_only=self.folders_only)
        except Exception:  # a broken config or database must not break the user's shell
            return []
        return [CompletionItem(c.text, help=c.meta) for c in candidates]


JOBSPEC = SpecType()
FOLDER = SpecType(folders_only=True)


class KongGroup(click.Group):
    """A click group that also answers to the alias spellings in ``ALIASES``."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, ALIASES.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        # Help and error messages name the command, not the alias that was typed.
        return (cmd.name if cmd is not None else name), cmd, rest


class Confirmation:
    """The one way kill, rm and resubmit ask: the question with ``[y/N]`` first, the
    spinner only after a yes (it would draw over the question), and ``declined`` to
    say afterwards that nothing was done.

    Use it as State's ``confirm`` callback inside ``with``; ``yes`` (from -y) answers
    for the user, and without a terminal to ask on it refuses instead of guessing.
    """

    def __init__(self, yes: bool, spinning: str | None = None) -> None:
        self.yes = yes
        self.spinning = spinning
        self.declined = False
        self._stack = ExitStack()

    def __call__(self, question: str) -> bool:
        if not self.yes:
            if not sys.stdin.isatty():
                raise KongError(
                    f"{question} Refusing without a terminal to ask; pass -y to confirm"
                )
            if not click.confirm(question, default=False):
                self.declined = True
                return False
        if self.spinning is not None:
            from kong import ui

            self._stack.enter_context(ui.spinner(self.spinning))
        return True

    def __enter__(self) -> Confirmation:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def complete_profile(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Profile names from the config, for the shell's Tab."""
    try:
        from kong.config import Config

        profiles = Config().profiles
    except Exception:  # a broken config must not break the user's shell
        return []
    return [CompletionItem(name, help=prof.driver) for name, prof in profiles.items()
            if name.startswith(incomplete)]


@click.group(cls=KongGroup, context_settings=CONTEXT_SETTINGS, invoke_without_command=True)
@click.option("-p", "--profile", metavar="NAME", shell_complete=complete_profile,
              help="Profile (cluster) that new jobs go to; default: the config's default_profile.")
@click.version_option(__version__, "-V", "--version", prog_name="kong")
@click.pass_context
def cli(ctx: click.Context, profile: str | None) -> None:
    """kong: manage batch jobs on this machine and on Slurm, HTCondor and LSF clusters.

    Without a command, kong opens its interactive shell. Jobs are organised in
    folders; wherever a command takes JOBSPEC it accepts a job id (12), a range
    (10..20, or dir/10..20), a folder path (/runs/a, ../b), DIR/* for the jobs
    directly in DIR, or a glob on folder names (runs/2024-*).

    Aliases: create_job, submit_job, kill_job, resubmit_job (kong-batch's names),
    refresh (update), quit (exit). Shell completion for bash: eval "$(_KONG_COMPLETE=bash_source
    kong)" (zsh_source, fish_source for other shells).
    """
    if ctx.obj is None:
        ctx.obj = Context(profile=profile)
    if ctx.invoked_subcommand is None:
        from kong.repl import run_repl

        code = run_repl(ctx.obj)
        if code:
            raise SystemExit(code)


# -- the shell --------------------------------------------------------------------------


@cli.command("help")
@click.argument("command", required=False)
@click.pass_context
def help_command(ctx: click.Context, command: str | None) -> None:
    """Show the list of commands, or the help of COMMAND."""
    root = ctx.find_root()
    if command is None:
        click.echo(root.get_help())
        return
    cmd = cli.get_command(root, command)
    if cmd is None:
        raise click.UsageError(f"no such command: {command}")
    with click.Context(cmd, info_name=cmd.name, parent=root) as sub:
        click.echo(cmd.get_help(sub))


@cli.command("exit")
@pass_context
def exit_command(obj: Context) -> None:
    """Leave the interactive shell (as does Ctrl-D). Alias: quit."""
    obj.exit_requested = True


# -- entry point ------------------------------------------------------------------------


#: OS errors that are the machine's state, not kong's bug: one line, like a KongError
_USER_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _show_warning(message: Warning | str, category: type[Warning], *_: object,
                  **__: object) -> None:
    """A KongWarning is one ``kong: warning:`` line; others (a library's) keep their form."""
    if issubclass(category, KongWarning):
        click.echo(f"kong: warning: {message}", err=True)
    else:
        click.echo(warnings.formatwarning(message, category, "", 0).strip(), err=True)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"kong: error: {message}", err=True)
    raise SystemExit(code)


def run(args: Sequence[str] | None, obj: Context | None = None) -> int:
    """Run one command line; user errors become one line on stderr and an exit code."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", KongWarning)
            warnings.showwarning = _show_warning
            cli.main(args=list(args) if args is not None else None, prog_name="kong",
                     standalone_mode=False, obj=obj)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        hint = ""
        if exc.ctx:
            # Each surface names its own way to help: `ls --help` typed in the shell.
            words = exc.ctx.command_path.partition(" ")[2]
            interactive = obj is not None and obj.interactive
            if interactive:
                hint = f" (see: {words} --help)" if words else " (see: help)"
            else:
                hint = f" (see: kong {words} --help)" if words else " (see: kong --help)"
        click.echo(f"kong: error: {exc.format_message()}{hint}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"kong: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except KongError as exc:
        click.echo(f"kong: error: {exc}", err=True)
        return 1
    except TimeoutError as exc:
        click.echo(f"kong: timeout: {exc}", err=True)
        return 3
    except OSError as exc:
        if exc.errno not in _USER_OS_ERRORS:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"kong: error: {exc.strerror}{where}", err=True)
        return 1
    except (click.Abort, KeyboardInterrupt):
        click.echo("kong: interrupted", err=True)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def main() -> None:
    sys.exit(run(None))

