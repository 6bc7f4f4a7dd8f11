"""``kong completion install|show``: the script it installs really completes in bash."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from kong.cli import cli
from tests.kongcmd import KONG


def user_env(tmp_path: Path) -> dict[str, str]:
    """A user with an empty home: no XDG overrides, kong's home inside it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "BASH_COMPLETION_USER_DIR",
                        "ZDOTDIR", "KONG_CONFIG_DIR", "PYTHONPATH")}
    home = tmp_path / "user"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), KONG_HOME=str(home / "kong"))
    return env


def kong(env: dict[str, str], *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KONG, *words], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def kong_on_path(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """PATH with a ``kong`` that is the interpreter under test (the completion script
    calls ``kong`` by name at every Tab, as it does for a user)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "kong"
    wrapper.write_text(f"#!/bin/sh\nexec {shlex.join(KONG)} \"$@\"\n")
    wrapper.chmod(0o755)
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}


def bash_complete(env: dict[str, str], script: Path, words: list[str]) -> list[str]:
    """What bash offers after ``words`` (the last one being completed), the way bash
    calls a ``complete -F`` function: COMP_WORDS, COMP_CWORD, the command name as $1."""
    program = "\n".join([
        f"source {shlex.quote(str(script))}",
        "complete -p kong",
        f"COMP_WORDS=({shlex.join(words)})",
        f"COMP_CWORD={len(words) - 1}",
        "COMPREPLY=()",
        "_kong_completion kong",
        "printf 'reply:%s\\n' \"${COMPREPLY[@]}\"",
    ])
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("complete ") and lines[0].endswith("_kong_completion kong")
    return [line.removeprefix("reply:") for line in lines[1:] if line != "reply:"]


def visible_commands(prefix: str) -> set[str]:
    ctx = click.Context(cli)
    return {name for name in cli.list_commands(ctx)
            if name.startswith(prefix) and not cli.commands[name].hidden}


def test_installed_bash_script_completes_kong_l_tab(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    result = kong(env, "completion", "install", "bash")
    assert result.returncode == 0, result.stderr
    script = Path(env["HOME"]) / ".local/share/bash-completion/completions/kong"
    assert f"wrote {script}" in result.stdout
    assert script.is_file()

    offered = bash_complete(kong_on_path(tmp_path, env), script, ["kong", "l"])
    assert "ls" in offered
    assert set(offered) == visible_commands("l")


def test_bash_script_honours_bash_completion_user_dir(tmp_path: Path) -> None:
    env = {**user_env(tmp_path), "BASH_COMPLETION_USER_DIR": str(tmp_path / "bc")}
    assert kong(env, "completion", "install", "bash").returncode == 0
    assert (tmp_path / "bc" / "completions" / "kong").is_file()
    assert not (Path(env["HOME"]) / ".local").exists()


def test_show_prints_what_the_eval_line_of_click_prints(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    shown = kong(env, "completion", "show", "bash")
    assert shown.returncode == 0
    clicks = subprocess.run(KONG, env={**env, "_KONG_COMPLETE": "bash_source"},
                            capture_output=True, text=True, timeout=60, check=False)
    assert shown.stdout == clicks.stdout
    assert "_kong_completion" in shown.stdout


def test_zsh_install_adds_one_source_line_to_zshrc(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    zshrc = Path(env["HOME"]) / ".zshrc"
    zshrc.write_text("autoload -Uz compinit && compinit")  # no final newline
    for _ in range(2):
        result = kong(env, "completion", "install", "zsh")
        assert result.returncode == 0, result.stderr
    script = Path(env["HOME"]) / ".local/share/kong/completion.zsh"
    assert "compdef _kong_completion kong" in script.read_text()
    lines = zshrc.read_text().splitlines()
    assert lines[0] == "autoload -Uz compinit && compinit"
    sourcing = [line for line in lines if str(script) in line]
    assert len(sourcing) == 1
    assert sourcing[0].startswith(f"[ -f '{script}' ] && . '{script}'")


def test_fish_install_goes_to_fish_autoload_dir(tmp_path: Path) -> None:
    env = {**user_env(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    assert kong(env, "completion", "install", "fish").returncode == 0
    script = tmp_path / "cfg" / "fish" / "completions" / "kong.fish"
    assert "complete --no-files --command kong" in script.read_text()


@pytest.mark.parametrize(
    ("words", "shell_var", "message"),
    [
        (["tcsh"], "/bin/bash", "kong: error: Invalid value for '[SHELL]': 'tcsh' is not one of"),
        ([], "/bin/tcsh", "kong: error: cannot tell your shell from SHELL='/bin/tcsh'"),
    ],
)
def test_unknown_shell_is_one_line_and_writes_nothing(
    tmp_path: Path, words: list[str], shell_var: str, message: str
) -> None:
    env = {**user_env(tmp_path), "SHELL": shell_var}
    result = kong(env, "completion", "install", *words)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    assert list(Path(env["HOME"]).iterdir()) == []



def test_installed_bash_script_completes_folders_from_the_database(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    assert kong(env, "mkdir", "/runs").returncode == 0
    assert kong(env, "mkdir", "/results").returncode == 0
    assert kong(env, "completion", "install", "bash").returncode == 0
    script = Path(env["HOME"]) / ".local/share/bash-completion/completions/kong"

    offered = bash_complete(kong_on_path(tmp_path, env), script, ["kong", "cd", "/ru"])
    assert [o.rstrip("/") for o in offered] == ["/runs"]


@pytest.fixture(scope="module")
def bash_completion_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real bash-completion (Debian's package): the installed one, else its .deb."""
    installed = Path("/usr/share/bash-completion/bash_completion")
    if installed.is_file():
        return installed
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("bash-completion is not installed and apt-get cannot fetch it here")
    where = tmp_path_factory.mktemp("bash-completion")
    subprocess.run(["apt-get", "download", "bash-completion"], cwd=where, check=True,
                   capture_output=True, timeout=120)
    deb = next(where.glob("bash-completion_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(where / "root")], check=True, timeout=60)
    return where / "root" / "usr/share/bash-completion/bash_completion"


def test_bash_completion_loads_the_installed_script_on_first_tab(
    tmp_path: Path, bash_completion_package: Path
) -> None:
    """What makes `install bash` permanent: bash-completion, as Debian's ~/.bashrc starts
    it, finds the script in the user dir the first time `kong <Tab>` is pressed."""
    env = kong_on_path(tmp_path, user_env(tmp_path))
    assert kong(env, "completion", "install", "bash").returncode == 0
    program = "\n".join([
        f"source {shlex.quote(str(bash_completion_package))}",
        "complete -p kong 2>/dev/null && exit 3  # nothing knows kong before the first Tab",
        # bash calls the default (-D) completion for a command without its own: this one.
        "complete -p -D",
        "_completion_loader kong",
        "complete -p kong",
        "COMP_WORDS=(kong l); COMP_CWORD=1; COMPREPLY=()",
        "_kong_completion kong",
        "printf 'reply:%s\\n' \"${COMPREPLY[@]}\"",
    ])
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "complete -F _completion_loader -D"
    assert lines[1].endswith("-F _kong_completion kong")
    offered = {line.removeprefix("reply:") for line in lines[2:]}
    assert offered == visible_commands("l")
