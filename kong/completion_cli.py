"""``kong completion show|install SHELL``: completion of kong's command line in bash,
zsh and fish.

The scripts are click's own (``_KONG_COMPLETE=bash_source kong`` prints the same):
a small shell function that asks ``kong`` for the candidates at each Tab, so an
installed script stays right when kong is upgraded. ``install`` puts it where the
shell loads it at every start:

- bash: the user completion dir of bash-completion (on by default in Debian's and
  Ubuntu's interactive shells), loaded the first time ``kong <Tab>`` is pressed;
- zsh: a file in kong's data dir, sourced from ``~/.zshrc`` by one line added once;
- fish: ``~/.config/fish/completions/kong.fish``, which fish autoloads.

This module registers the ``completion`` group on ``kong.cli.cli`` when imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import click
from click.shell_completion import get_completion_class

from kong.errors import KongError

PROG_NAME = "kong"
COMPLETE_VAR = "_KONG_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
# Marks the line `install zsh` adds to ~/.zshrc, so a second install finds it.
RC_MARKER = "# kong shell completion"
# click's zsh script calls compdef, which exists only once compinit has run.
ZSH_PREAMBLE = "(( $+functions[compdef] )) || { autoload -Uz compinit && compinit }\n"


@dataclass(frozen=True)
class InstallPlan:
    """Where ``install`` writes the script, and the rc file that must source it (if any)."""

    script: Path
    rc_file: Path | None = None


def _dir_from_env(env: dict[str, str], name: str, default: Path) -> Path:
    value = env.get(name, "")
    # The XDG spec: a relative or empty value is ignored.
    return Path(value) if os.path.isabs(value) else default


def install_plan(shell: str, env: dict[str, str] | None = None) -> InstallPlan:
    """The files ``kong completion install SHELL`` writes, from ``HOME`` and the XDG dirs."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("HOME") or Path.home())
    data = _dir_from_env(env, "XDG_DATA_HOME", home / ".local" / "share")
    if shell == "bash":
        user_dir = _dir_from_env(env, "BASH_COMPLETION_USER_DIR", data / "bash-completion")
        return InstallPlan(user_dir / "completions" / PROG_NAME)
    if shell == "zsh":
        zdotdir = _dir_from_env(env, "ZDOTDIR", home)
        return InstallPlan(data / "kong" / "completion.zsh", zdotdir / ".zshrc")
    if shell == "fish":
        config = _dir_from_env(env, "XDG_CONFIG_HOME", home / ".config")
        return InstallPlan(config / "fish" / "completions" / f"{PROG_NAME}.fish")
    raise KongError(f"no completion for shell {shell!r}; kong completes {', '.join(SHELLS)}")


def completion_script(command: click.Command, shell: str) -> str:
    """click's completion script of ``command`` (the kong group) for ``shell``."""
    cls = get_completion_class(shell)
    if cls is None:
        raise KongError(f"no completion for shell {shell!r}; kong completes {', '.join(SHELLS)}")
    script = cls(command, {}, PROG_NAME, COMPLETE_VAR).source()
    return (ZSH_PREAMBLE + script) if shell == "zsh" else script


def _rc_line(script: Path) -> str:
    quoted = "'" + str(script).replace("'", "'\\''") + "'"
    return f"[ -f {quoted} ] && . {quoted}  {RC_MARKER}\n"


def install(command: click.Command, shell: str, env: dict[str, str] | None = None) -> list[str]:
    """Write the completion script for ``shell`` (and the rc line zsh needs, once).

    Returns one line per file written, for the user to read.
    """
    plan = install_plan(shell, env)
    done = []
    plan.script.parent.mkdir(parents=True, exist_ok=True)
    plan.script.write_text(completion_script(command, shell), encoding="utf-8")
    done.append(f"wrote {plan.script}")
    if plan.rc_file is not None:
        existing = plan.rc_file.read_text(encoding="utf-8") if plan.rc_file.exists() else ""
        if RC_MARKER not in existing:
            separator = "" if existing.endswith("\n") or not existing else "\n"
            with plan.rc_file.open("a", encoding="utf-8") as rc:
                rc.write(separator + _rc_line(plan.script))
            done.append(f"added a line to {plan.rc_file} that sources it")
    return done


def _default_shell() -> str:
    name = Path(os.environ.get("SHELL", "")).name
    if name not in SHELLS:
        raise KongError(f"cannot tell your shell from SHELL={os.environ.get('SHELL', '')!r}; "
                        f"name it: kong completion install {'|'.join(SHELLS)}")
    return name


@click.group("completion", context_settings={"help_option_names": ["-h", "--help"]})
def completion() -> None:
    """Shell completion of kong's commands, options, folders and jobs (bash, zsh, fish).

    `kong completion install` sets it up for good (open a new shell afterwards);
    `eval "$(kong completion show bash)"` turns it on in the running shell only.
    """


@completion.command("show")
@click.argument("shell", type=click.Choice(SHELLS), metavar="SHELL")
@click.pass_context
def show(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL."""
    click.echo(completion_script(ctx.find_root().command, shell), nl=False)


@completion.command("install")
@click.argument("shell", type=click.Choice(SHELLS), required=False, metavar="[SHELL]")
@click.pass_context
def install_command(ctx: click.Context, shell: str | None) -> None:
    """Install completion for SHELL (default: the shell in $SHELL) for every new shell.

    bash: ~/.local/share/bash-completion/completions/kong (needs the bash-completion
    package, there by default on Debian and Ubuntu); zsh: ~/.local/share/kong/completion.zsh
    and one line in ~/.zshrc; fish: ~/.config/fish/completions/kong.fish.
    """
    for line in install(ctx.find_root().command, shell or _default_shell()):
        click.echo(line)
    click.echo("completion is on in new shells")


def _register() -> None:
    from kong.cli import cli

    cli.add_command(completion)


_register()
