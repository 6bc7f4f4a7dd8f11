"""kong as a user installs it: the built wheel in a fresh virtualenv, and the README's
first command on a stock Debian bookworm with only the distribution's Python.

Both install kong's dependencies from the package index (PyPI, or the index pip is
configured with), as a user's install would.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT = 600.0
ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_])")
#: the REPL's prompt in the root folder on the local profile
PROMPT = "kong [local] / >"


def readme_install_block() -> list[str]:
    """The lines of the README's first ``sh`` block: the install command users copy."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```sh\n(.*?)```", text, re.S)
    assert match, "README.md has no ```sh block"
    return [line.split("#", 1)[0].strip() for line in match.group(1).splitlines()
            if line.split("#", 1)[0].strip()]


def readme_apt_packages() -> set[str]:
    """What the README's first block says to apt-install on Debian/Ubuntu."""
    for line in readme_install_block():
        words = line.split()
        if words[:3] == ["sudo", "apt", "install"]:
            return {w for w in words[3:] if not w.startswith("-")}
    raise AssertionError("the README's first block has no `sudo apt install` line")


def readme_install_command() -> str:
    """The README's first block without the apt line: what runs once pipx is there."""
    lines = [line for line in readme_install_block() if not line.startswith("sudo apt")]
    assert len(lines) == 1, lines
    return lines[0]


def plain_text(output: str) -> str:
    return ANSI.sub("", output).replace("\r", "")


def source_copy(dest: Path) -> Path:
    """The worktree as a user would have it after cloning: no venv, caches or builds."""
    shutil.copytree(
        REPO,
        dest,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".build", "__pycache__", "*.egg-info", "build", "dist",
            ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "out",
        ),
    )
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build`` of a clean copy of the tree: an sdist, then the wheel from it."""
    src = source_copy(tmp_path_factory.mktemp("src") / "kong")
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(src)],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    wheels = list(dist.glob("kong-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_every_file_of_the_package(wheel: Path) -> None:
    """Data files the code reads at run time (alembic's migrations, the local runner
    sent to hosts, shell scripts) are in the wheel, and so is any file added later."""
    in_tree = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "kong").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {name for name in archive.namelist() if name.startswith("kong/")}
        entry_points = next(
            archive.read(n).decode() for n in archive.namelist() if n.endswith("entry_points.txt")
        )
    assert {"kong/migrations/env.py", "kong/migrations/script.py.mako",
            "kong/drivers/local_runner.py", "kong/py.typed"} <= in_wheel
    assert any(name.startswith("kong/migrations/versions/") for name in in_wheel)
    assert in_wheel == in_tree
    assert "kong = kong.cli:main" in entry_points


def repl_transcript(command: str, keys: str, env: dict[str, str], cwd: Path) -> str:
    """Run ``command`` (a shell line starting kong's REPL) on a terminal, typing ``keys``.

    util-linux ``script`` gives it the pseudo-terminal a person's shell would: without
    one, kong reads commands from stdin instead of starting the prompt-toolkit shell.
    """
    result = subprocess.run(
        ["script", "-qec", command, "/dev/null"], input=keys, capture_output=True, text=True,
        env=env, cwd=cwd, timeout=120, check=False,
    )
    assert result.returncode == 0, plain_text(result.stdout + result.stderr)
    return plain_text(result.stdout)


def test_built_wheel_works_in_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "-c", str(REPO / "constraints.txt"),
         str(wheel)],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KONG_CONFIG_DIR")}
    env["KONG_HOME"] = str(home)
    kong = str(venv / "bin" / "kong")

    def run(*words: str) -> str:
        result = subprocess.run([kong, *words], capture_output=True, text=True, env=env,
                                cwd=tmp_path, timeout=120, check=False)
        assert result.returncode == 0, (words, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return result.stdout

    # The kong that runs is the installed one, not this source tree.
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import kong; print(kong.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env=env, check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv)

    from kong import __version__

    assert run("--version").strip() == f"kong, version {__version__}"
    assert run("ls") == "/ is empty: no folders, no jobs\n"
    assert run("create-job", "--", "echo hello from the wheel").strip() == "created job 1"
    run("submit", "1")
    assert "1 completed" in run("wait", "-q", "-t", "120", "1")
    assert run("tail", "1").strip() == "hello from the wheel"

    screen = repl_transcript(shlex.quote(kong), "ls\nexit\n", env, tmp_path)
    assert PROMPT in screen
    assert re.search(r"^\s*1\s.*COMPLETED\s.*echo hello from the wheel", screen, re.M), screen


def test_readme_names_pipx_from_debian() -> None:
    """The README's first block: apt-install pipx, then a `pipx install .` that starts kong."""
    assert readme_apt_packages() == {"pipx"}
    command = readme_install_command()
    assert command.startswith("pipx install . && ")


@pytest.mark.cluster
@pytest.mark.slow
def test_readme_first_command_on_stock_debian(tmp_path: Path) -> None:
    """The README's install command, run as is in a debootstrapped bookworm that has only
    the distribution's python3 and what the README says to apt-install; dependencies
    come from PyPI over the host's network, as on a user's machine.

    The container trusts the host's CA bundle (mounted over its own, read-only): where
    the network intercepts TLS with a local CA, as on the machines these tests run on,
    the host's bundle holds that CA and Debian's stock one does not."""
    from deploy.images import SPECS, build_image

    spec = SPECS["debian-python"]
    assert set(spec.packages) == {"python3"} | readme_apt_packages()
    ref = build_image("debian-python", log=lambda line: print(f"[kong images] {line}")).ref
    src = source_copy(tmp_path / "kong")
    command = readme_install_command()
    # The same keys a person would type into the shell the README's command starts.
    script = "\n".join([
        "set -e",
        "test ! -e /usr/local/bin/python3  # only the distribution's Python",
        "/usr/bin/python3 --version",
        f"printf 'ls\\nexit\\n' | script -qec {shlex.quote(command)} /dev/null",
        "echo KONG-VERSION; ~/.local/bin/kong --version",
        "echo KONG-LS; ~/.local/bin/kong ls; echo KONG-LS-RC=$?",
        "echo KONG-PYTHON; ~/.local/pipx/venvs/kong/bin/python -c"
        " 'import sys; print(sys._base_executable)'",
    ])
    host_ca = Path("/etc/ssl/certs/ca-certificates.crt")
    trust = ["-v", f"{host_ca}:{host_ca}:ro"] if host_ca.is_file() else []
    name = f"kong-install-{uuid.uuid4().hex[:8]}"
    try:
        result = subprocess.run(
            ["docker", "run", "--rm", "--name", name, "--network", "host",
             "-v", f"{src}:/src", "-w", "/src", "-e", "HOME=/root", "-e", "TERM=xterm",
             *trust, ref, "/bin/bash", "-c", script],
            capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False,
        )
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    out = plain_text(result.stdout)
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    assert PROMPT in out, out[-4000:]
    from kong import __version__

    after_version = out.split("KONG-VERSION\n", 1)[1]
    assert after_version.startswith(f"kong, version {__version__}\n")
    assert "KONG-LS\n/ is empty: no folders, no jobs\nKONG-LS-RC=0\n" in out
    assert out.split("KONG-PYTHON\n", 1)[1].strip().startswith("/usr/bin/python3")

