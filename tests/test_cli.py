"""The ``kong`` command line, run for real: in-process through ``kong.cli.run`` (the
REPL's own entry) and as a subprocess where the process boundary matters."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import click
import pytest

from kong.cli import ALIASES, Context, cli, run
from tests.fixtures_state import write_config
from tests.kongcmd import KONG


def kong(*words: str) -> int:
    """One command line on a fresh Context (as a separate ``kong`` invocation would be)."""
    return run(list(words), obj=Context())


def kong_proc(home: Path, *words: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KONG_HOME": str(home)}
    env.pop("KONG_CONFIG_DIR", None)
    return subprocess.run([*KONG, *words], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def all_command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(group: click.Group, prefix: list[str]) -> None:
        for name, cmd in group.commands.items():
            paths.append([*prefix, name])
            if isinstance(cmd, click.Group):
                walk(cmd, [*prefix, name])

    walk(cli, [])
    return paths


# -- help and errors --------------------------------------------------------------------


@pytest.mark.parametrize("words", [[], *all_command_paths(), *[[a] for a in ALIASES]],
                         ids=lambda w: " ".join(w) or "kong")
def test_every_command_has_help(kong_home: Path, capsys: pytest.CaptureFixture[str],
                                words: list[str]) -> None:
    assert kong(*words, "--help") == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: kong")
    cmd: click.Command = cli
    for word in words:
        assert isinstance(cmd, click.Group)
        found = cmd.get_command(click.Context(cmd), word)
        assert found is not None
        cmd = found
    assert cmd.help, f"{words} has no help text"
    for param in cmd.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"{words}: option {param.opts} has no help"
            assert param.opts[-1] in out


@pytest.mark.parametrize(
    "words",
    [
        ["bogus"],
        ["ls", "--bogus"],
        ["ls", "-s", "NOPE"],
        ["ls", "/no/such/folder"],
        ["tail"],
        ["tail", "999"],
        ["mkdir"],
        ["mkdir", "/a/b/c"],
        ["info", "999"],
        ["info", "5..2"],
        ["cd", "/nope"],
        ["rm", "/"],
        ["mv", "/nope", "/x"],
        ["profile", "use", "nope"],
        ["profile", "test", "nope"],
        ["create-job", "--arg", "novalue", "--", "true"],
        ["create-job", "--arg", "bogus_option=1", "--", "true"],
        ["create-job", "-c", "0", "--", "true"],
        ["wait", "--timeout", "-1", "1"],
        ["help", "nope"],
    ],
    ids=" ".join,
)
def test_bad_arguments_give_one_line(kong_home: Path, capfd: pytest.CaptureFixture[str],
                                     words: list[str]) -> None:
    code = kong(*words)
    out, err = capfd.readouterr()
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kong: error: ")
    assert "Traceback" not in out + err


def test_bad_arguments_in_a_real_process(kong_home: Path) -> None:
    proc = kong_proc(kong_home, "ls", "--no-such-option")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("kong: error: No such option")
    assert lines[0].endswith("(see: kong ls --help)")


def test_bad_config_is_one_line(kong_home: Path) -> None:
    write_config(kong_home, "profiles:\n  x:\n    driver: nosuch\n")
    proc = kong_proc(kong_home, "ls")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "config.yml:3" in lines[0] and "nosuch" in lines[0]


# -- folders ----------------------------------------------------------------------------


def test_folders(kong_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kong("mkdir", "-p", "/runs/a/deep", "/runs/b") == 0
    assert kong("mkdir", "-p", "/runs/a") == 0  # exists: fine with -p
    assert kong("mkdir", "/runs/a") == 1
    capsys.readouterr()
    assert kong("ls", "/runs") == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["a/  1 folder, no jobs", "b/  no jobs"]
    assert kong("mv", "/runs/b", "/runs/c") == 0  # rename
    assert kong("mv", "/runs/c", "/runs/a") == 0  # move into
    capsys.readouterr()
    assert kong("ls", "--json", "/runs/a") == 0
    listing = json.loads(capsys.readouterr().out)
    assert [f["path"] for f in listing["folders"]] == ["/runs/a/c", "/runs/a/deep"]
    assert kong("rm", "/runs/a") == 1  # a folder needs -r
    assert kong("rm", "-r", "-y", "/runs/a") == 0
    capsys.readouterr()
    assert kong("ls", "/runs") == 0
    assert capsys.readouterr().out == "/runs is empty: no folders, no jobs\n"


def test_rm_without_terminal_refuses_to_guess(kong_home: Path) -> None:
    assert kong("mkdir", "/x") == 0
    proc = kong_proc(kong_home, "rm", "-r", "/x")
    assert proc.returncode == 1
    assert "pass -y" in proc.stderr
    assert kong_proc(kong_home, "ls", "/x").returncode == 0  # still there


def test_cd_pwd_share_one_context(kong_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    obj = Context(interactive=True)  # as the shell runs its commands
    assert run(["mkdir", "-p", "/a/b"], obj=obj) == 0
    assert run(["cd", "/a/b"], obj=obj) == 0
    assert run(["cd", ".."], obj=obj) == 0
    assert run(["pwd"], obj=obj) == 0
    assert capsys.readouterr().out == "/a\n"


# -- jobs -------------------------------------------------------------------------------


def _wait_all(*specs: str) -> None:
    assert kong("wait", "-q", "--timeout", "60", "--poll-interval", "0.1", *specs) in (0, 1)


def test_job_lifecycle(kong_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kong("mkdir", "/j") == 0
    assert kong("create-job", "-f", "/j", "--", "echo", "hello world") == 0
    assert kong("create_job", "-f", "/j", "--arg", "max_parallel=2", "--",
                "echo oops >&2; exit 3") == 0
    assert capsys.readouterr().out == "created job 1\ncreated job 2\n"
    assert kong("submit_job", "/j") == 0
    assert "submitted 2 job(s)" in capsys.readouterr().out
    assert kong("submit", "/j") == 0
    assert "no jobs to submit" in capsys.readouterr().out
    code = kong("wait", "--timeout", "60", "-i", "0.1", "/j")
    assert code == 1  # one failed
    assert capsys.readouterr().out.strip() == "done: 1 completed, 1 failed"

    assert kong("ls", "/j") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "batch", "id", "status", "reason", "age", "runtime",
                                "command"]
    assert lines[1].split()[2] == "COMPLETED" and lines[2].split()[2] == "FAILED"
    assert kong("ls", "-s", "failed", "-x", "exit_code", "-S", "/j") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "exit_code" in lines[0] and "size" in lines[0]
    assert lines[1].split()[2:3] == ["FAILED"] and " 3 " in lines[1]

    assert kong("ls", "--json", "-x", "exit_code", "/j") == 0
    jobs = json.loads(capsys.readouterr().out)["jobs"]
    assert [(j["job_id"], j["status"], j["exit_code"]) for j in jobs] == [
        (1, "COMPLETED", 0), (2, "FAILED", 3)]

    assert kong("info", "--json", "1..2") == 0
    info = json.loads(capsys.readouterr().out)
    assert info[0]["command"] == "echo 'hello world'" and info[1]["data"]["exit_code"] == 3
    assert info[1]["data"]["options"] == {"max_parallel": 2}
    assert kong("info", "2") == 0
    out = capsys.readouterr().out
    assert "FAILED" in out and "data.exit_code" in out and "log dir" in out

    assert kong("tail", "1") == 0
    assert capsys.readouterr().out == "hello world\n"
    assert kong("tail", "--stderr", "2") == 0
    assert capsys.readouterr().out == "oops\n"
    assert kong("less", "1") == 0  # not a terminal: the log is printed
    assert capsys.readouterr().out == "hello world\n"

    assert kong("resubmit_job", "--failed", "-y", "/j") == 0
    assert capsys.readouterr().out.strip() == "resubmitted 1 job(s)"
    assert kong("info", "--json", "2") == 0
    history = json.loads(capsys.readouterr().out)[0]["data"]["history"]
    assert history and history[0]["status"] == "FAILED"
    _wait_all("/j")
    capsys.readouterr()
    assert kong("refresh", "/j") == 0
    assert capsys.readouterr().out.strip() == "1 completed, 1 failed"


def test_tail_lines_and_follow(kong_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kong("create-job", "-s", "--", "seq 1 200; sleep 2; echo last") == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the job is in its sleep
        capsys.readouterr()
        kong("tail", "-n", "1", "1")
        if capsys.readouterr().out == "200\n":
            break
        time.sleep(0.05)
    assert kong("tail", "-f", "-n", "3", "1") == 0  # a local job: follows until it ends
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "last"
    assert "198" in out and "200" in out and "1" not in out
    assert kong("tail", "-n", "2", "1") == 0
    assert capsys.readouterr().out == "200\nlast\n"
    assert kong("tail", "-n", "0", "1") == 0
    assert capsys.readouterr().out == ""


def test_tail_needs_one_job(kong_home: Path, capfd: pytest.CaptureFixture[str]) -> None:
    kong("create-job", "--", "true")
    kong("create-job", "--", "true")
    capfd.readouterr()
    assert kong("tail", "1..2") == 1
    assert capfd.readouterr().err.strip() == "kong: error: 1..2 selects 2 jobs; give one job id"


def test_kill(kong_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kong("create-job", "--submit", "--", "sleep 60") == 0
    assert kong("kill_job", "-y", "1") == 0
    assert "killed 1 job(s)" in capsys.readouterr().out
    assert kong("wait", "-q", "-t", "30", "1") == 1
    capsys.readouterr()
    assert kong("ls", "--json") == 0
    assert json.loads(capsys.readouterr().out)["jobs"][0]["status"] == "FAILED"


def test_wait_timeout_exit_code(kong_home: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert kong("create-job", "--submit", "--", "sleep 30") == 0
    start = time.monotonic()
    assert kong("wait", "-q", "--timeout", "0.5", "-i", "0.1", "1") == 3
    assert time.monotonic() - start < 10
    assert capfd.readouterr().err.startswith("kong: timeout:")
    kong("kill", "-y", "1")


def test_folder_counts(kong_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kong("mkdir", "-p", "/p/q")
    kong("create-job", "-f", "/p/q", "--", "true")
    kong("create-job", "-f", "/p", "--", "false")
    kong("create-job", "-f", "/p", "--", "true")
    kong("submit", "-r", "/p")
    _wait_all("-r", "/p")
    kong("create-job", "-f", "/p/q", "--", "true")
    capsys.readouterr()
    assert kong("ls", "/") == 0
    assert capsys.readouterr().out == "p/  1 created  1 failed  2 completed\n"
    assert kong("ls", "--json", "/") == 0
    counts = json.loads(capsys.readouterr().out)["folders"][0]["counts"]
    assert counts["COMPLETED"] == 2 and counts["FAILED"] == 1 and counts["CREATED"] == 1


# -- profiles ---------------------------------------------------------------------------


def test_profiles(kong_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(kong_home, "default_profile: here\nprofiles:\n  here:\n    driver: local\n"
                 "  there:\n    driver: local\n    max_parallel: 2\n")
    obj = Context(interactive=True)  # profile use is the shell's
    assert run(["profile"], obj=obj) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["profile", "driver", "host", "remote", "dir"]
    assert out[1].split()[:3] == ["*", "here", "local"] and "(this machine)" in out[1]
    assert out[2].split()[:2] == ["there", "local"]
    assert run(["profile", "use", "there"], obj=obj) == 0
    assert run(["profile", "show"], obj=obj) == 0
    assert capsys.readouterr().out == "profile: there\nthere\n"
    assert run(["create-job", "--", "true"], obj=obj) == 0
    assert run(["create-job", "--profile", "here", "--", "true"], obj=obj) == 0
    capsys.readouterr()
    assert run(["ls", "--json"], obj=obj) == 0
    jobs = json.loads(capsys.readouterr().out)["jobs"]
    assert [j["profile"] for j in jobs] == ["there", "here"]
    assert run(["ls"], obj=obj) == 0  # two profiles: the listing shows the column
    assert "profile" in capsys.readouterr().out.splitlines()[0]
    assert run(["profile", "test", "there"], obj=obj) == 0
    out = capsys.readouterr().out
    assert out.startswith("there: ok via local") and "round trip" in out


# -- shell completion -------------------------------------------------------------------


def test_click_shell_completion(kong_home: Path) -> None:
    assert kong("mkdir", "-p", "/runs/alpha", "/runs/beta", "/rome") == 0
    env = {**os.environ, "KONG_HOME": str(kong_home), "_KONG_COMPLETE": "bash_complete",
           "COMP_WORDS": "kong ls /r", "COMP_CWORD": "2"}
    proc = subprocess.run(KONG, env=env, capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["plain,/rome/", "plain,/runs/"]
    env["COMP_WORDS"] = "kong cd /runs/a"
    proc = subprocess.run(KONG, env=env, capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["plain,/runs/alpha/"]
    env["_KONG_COMPLETE"] = "bash_source"
    proc = subprocess.run(KONG, env=env, capture_output=True, text=True, check=True)
    assert "_kong_completion" in proc.stdout


# -- over SSH (a real sshd in a container) ----------------------------------------------


@pytest.mark.cluster
def test_profile_test_and_logs_over_ssh(kong_home: Path, sshd_server: Any,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    block = {"driver": "local", **sshd_server.profile()}
    write_config(kong_home, yaml.safe_dump({"profiles": {"here": {"driver": "local"},
                                                         "remote": block}}))
    obj = Context()
    assert run(["profile", "test", "remote", "-c", "2"], obj=obj) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"remote: ok via {sshd_server.user}@") and "round trip" in out
    assert run(["create-job", "--profile", "remote", "--submit", "--",
                "seq 1 5000; echo end; echo warn >&2"], obj=obj) == 0
    assert run(["wait", "-q", "-t", "120", "-i", "0.2", "1"], obj=obj) == 0
    capsys.readouterr()
    assert run(["tail", "-n", "2", "1"], obj=obj) == 0
    assert capsys.readouterr().out == "5000\nend\n"
    assert run(["tail", "-e", "1"], obj=obj) == 0
    assert capsys.readouterr().out == "warn\n"
    assert run(["less", "1"], obj=obj) == 0  # synced into the local log cache, then shown
    out = capsys.readouterr().out
    assert out.startswith("1\n2\n3\n") and out.endswith("4999\n5000\nend\n")
    assert list((kong_home / "logcache").rglob("stdout"))


def test_recursive_listing_shows_folders_and_colours(kong_home: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import re

    from kong import ui

    kong("mkdir", "-p", "/r/s")
    kong("create-job", "-f", "/r", "--", "true")
    kong("create-job", "-f", "/r/s", "--", "true")
    capsys.readouterr()
    assert kong("ls", "-R", "/r") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("s/")
    assert lines[1].split()[:4] == ["id", "batch", "id", "folder"]
    assert lines[2].split()[2] == "/r" and lines[3].split()[2] == "/r/s"
    assert kong("ls", "--json", "-R", "/r") == 0
    assert [j["folder"] for j in json.loads(capsys.readouterr().out)["jobs"]] == ["/r", "/r/s"]

    obj = Context()
    folders, jobs = obj.state.ls("/r", recursive=True)
    out = io.StringIO()
    ui.render_listing(folders, obj.state.folder_counts(folders), jobs.rows, out=out, color=True)
    coloured = out.getvalue()
    start, _ = ui._ansi(ui.STATUS_STYLE[jobs.rows[0].status])
    assert f"{start}CREATED" in coloured
    plain = re.sub(r"\x1b\[[0-9;]*m", "", coloured)
    out = io.StringIO()
    ui.render_listing(folders, obj.state.folder_counts(folders), jobs.rows, out=out, color=False)
    assert plain == out.getvalue()  # colour changes nothing in the alignment
