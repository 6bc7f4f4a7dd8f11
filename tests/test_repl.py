"""The interactive shell, driven for real: prompt-toolkit's pipe input for keystrokes
in-process, and tmux for a real terminal (Ctrl-C as a signal, start-up, Tab)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from kong.cli import Context, run
from kong.repl.completion import complete_spec
from kong.repl.shell import KongCompleter, run_repl
from tests.kongcmd import KONG, KONG_SHELL

Step = str | Callable[[Any], bool]


def wait_until(check: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.02)


def drive(steps: Sequence[Step], obj: Context | None = None, timeout: float = 30) -> int:
    """Run the REPL on a pipe; each step is keys to type, or a condition on the
    prompt session to wait for before the next keys."""
    session_box: list[Any] = []
    errors: list[BaseException] = []
    with create_pipe_input() as pipe:

        def feed() -> None:
            try:
                wait_until(lambda: bool(session_box), what="the prompt session")
                session = session_box[0]
                for step in steps:
                    if isinstance(step, str):
                        wait_until(lambda: session.app.is_running, what="a prompt")
                        pipe.send_text(step)
                    else:
                        what = getattr(step, "__name__", "")
                        wait_until(lambda s=step: s(session), timeout, what=what)
            except BaseException as exc:
                errors.append(exc)
                while not done.is_set():  # end the shell so the test sees the error
                    pipe.send_text("\x03")
                    time.sleep(0.1)
                    pipe.send_text("\x04")
                    time.sleep(0.1)

        done = threading.Event()
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            code = run_repl(obj or Context(), input=pipe, output=DummyOutput(),
                            on_session=session_box.append)
        finally:
            done.set()
        feeder.join(timeout)
    if errors:
        raise errors[0]
    return code


def buffer_is(text: str) -> Callable[[Any], bool]:
    def check(session: Any) -> bool:
        return bool(session.default_buffer.text == text)

    check.__name__ = f"buffer == {text!r}"
    return check


def suggested(text: str) -> Callable[[Any], bool]:
    def check(session: Any) -> bool:
        suggestion = session.default_buffer.suggestion
        return suggestion is not None and bool(suggestion.text == text)

    check.__name__ = f"suggestion {text!r}"
    return check


def history_loaded(n: int) -> Callable[[Any], bool]:
    """prompt-toolkit loads the history file in the background after start-up."""

    def check(session: Any) -> bool:
        return len(session.history.get_strings()) >= n

    check.__name__ = f"history has {n} entries"
    return check


@pytest.fixture
def tree(kong_home: Path) -> Path:
    assert run(["mkdir", "-p", "/runs/alpha/x", "/runs/beta", "/rome"], obj=Context()) == 0
    return kong_home


# -- keystrokes through a pipe ----------------------------------------------------------


def test_tab_completes_a_partial_path(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = drive([
        "cd /runs/al", "\t", buffer_is("cd /runs/alpha/"), "\r",
        "pwd\r",
        "cd ../b", "\t", buffer_is("cd ../beta/"), "\r",
        "pwd\r",
        "exit\r",
    ])
    assert code == 0
    assert capsys.readouterr().out == "/runs/alpha\n/runs/beta\n"


def test_history_survives_a_restart(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert drive(["cd /runs/beta\r", "pwd\r", "exit\r"]) == 0
    assert capsys.readouterr().out == "/runs/beta\n"
    assert (tree / "history").exists()
    # A new shell: Up three times brings back `cd /runs/beta`.
    up = "\x1b[A"
    assert drive([history_loaded(3), up, buffer_is("exit"), up, buffer_is("pwd"), up,
                  buffer_is("cd /runs/beta"), "\r", "pwd\r", "exit\r"]) == 0
    assert capsys.readouterr().out == "/runs/beta\n"


def test_auto_suggest_from_history(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert drive(["cd /runs/alpha/x\r", "exit\r"]) == 0
    right = "\x1b[C"  # accepts the grey suggestion
    assert drive([history_loaded(2), "cd /runs/a", suggested("lpha/x"), right,
                  buffer_is("cd /runs/alpha/x"), "\r", "pwd\r", "exit\r"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "/runs/alpha/x"


def test_ctrl_c_at_the_prompt_does_not_exit(tree: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = drive(["cd /ru", "\x03", buffer_is(""), "pwd\r", "\x03", "\x03", "pwd\r", "\x04"])
    assert code == 0
    assert capsys.readouterr().out == "/\n/\n"


def test_errors_do_not_end_the_shell(tree: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code = drive(["cd /nope\r", "ls --bogus\r", "frobnicate\r", "cd 'unclosed\r", "pwd\r",
                  "quit\r"])
    assert code == 0
    out, err = capfd.readouterr()
    assert out == "/\n"
    lines = err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("kong: error: ") for line in lines)


def test_aliases_and_help(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = drive([
        "cd /runs\r",
        "create_job -- echo from-the-repl\r",
        "submit_job 1\r",
        "wait -q 1\r",
        "tail 1\r",
        "help tail\r",
        "exit\r",
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "created job 1" in out and "submitted 1 job(s)" in out
    assert "from-the-repl\n" in out
    assert "Usage: kong tail [OPTIONS] SPEC" in out


# -- the completer itself ---------------------------------------------------------------


def completions(obj: Context, text: str) -> list[str]:
    completer = KongCompleter(obj)
    return [c.text for c in completer.get_completions(Document(text), CompleteEvent())]


def test_completer(tree: Path) -> None:
    obj = Context()
    assert completions(obj, "ls /r") == ["/rome/", "/runs/"]
    assert completions(obj, "ls /runs/") == ["/runs/alpha/", "/runs/beta/"]
    assert completions(obj, "cd runs/b") == ["runs/beta/"]
    assert completions(obj, "sub") == ["submit", "submit-job", "submit_job"]
    assert completions(obj, "ls --st") == ["--status"]
    assert completions(obj, "profile u") == ["use"]
    assert completions(obj, "profile use l") == ["local"]
    assert completions(obj, "create-job -- ls /r") == []
    run(["cd", "/runs/alpha"], obj=obj)
    assert completions(obj, "cd ..") == ["../"]
    assert completions(obj, "cd ../") == ["../alpha/", "../beta/"]
    assert completions(obj, "mv x ../../ro") == ["../../rome/"]
    for _ in range(12):
        run(["create-job", "--", "true"], obj=obj)
    assert completions(obj, "info 1") == ["1", "10", "11", "12"]
    assert completions(obj, "cd 1") == []  # folders only
    assert completions(obj, "info /runs/alpha/2") == ["/runs/alpha/2"]


def test_completion_asks_only_about_one_folder(tree: Path) -> None:
    """A folder of many jobs: completing a job id returns a bounded list quickly."""
    from datetime import UTC, datetime

    from kong import db
    from kong.model.job import Job

    obj = Context()
    folder = obj.state.mkdir("/many")
    now = datetime.now(UTC)
    rows = [{"driver": "local", "profile": "local", "folder_id": folder.folder_id,
             "command": "true", "data": {}, "status": "CREATED", "created_at": now,
             "updated_at": now, "cores": 1, "memory": None} for _ in range(20000)]
    with db.write() as sess:
        sess.execute(Job.__table__.insert(), rows)
    # What completion costs is how many rows it reads, not a time on a busy machine:
    # every query of the job table it makes is bounded.
    from sqlalchemy import event

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = db.engine()
    event.listen(engine, "before_cursor_execute", record)
    try:
        found = complete_spec(obj.state, "/many/1")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert 0 < len(found) <= 50
    assert found[0].text == "/many/1"
    job_queries = [s for s in statements if "FROM job" in s]
    assert job_queries and all("LIMIT" in s for s in job_queries), job_queries


# -- a real terminal --------------------------------------------------------------------


class Tmux:
    """A kong shell in a tmux pane of its own tmux server (its own socket)."""

    def __init__(self, home: Path) -> None:
        self.socket = f"kongtest-{uuid.uuid4().hex[:8]}"
        shell = (f"env KONG_HOME={home} TERM=xterm-256color {KONG_SHELL}; "
                 "echo kong-exited-$?; sleep 60")
        self.cmd(["new-session", "-d", "-s", "k", "-x", "120", "-y", "40", shell])

    def cmd(self, args: list[str]) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, check=True).stdout

    def keys(self, *keys: str) -> None:
        self.cmd(["send-keys", "-t", "k", *keys])

    def screen(self) -> str:
        return self.cmd(["capture-pane", "-p", "-t", "k", "-S", "-200"])

    def wait_for(self, text: str, timeout: float = 90) -> str:
        # Generous: on a loaded CI machine a first prompt can take many seconds; the
        # wait ends as soon as the text shows.
        wait_until(lambda: text in self.screen(), timeout, what=repr(text))
        return self.screen()

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       check=False)


@pytest.fixture
def tmux(tree: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    session = Tmux(tree)
    try:
        yield session
    finally:
        session.close()


def test_real_terminal_tab_and_ctrl_c_during_a_command(tmux: Tmux) -> None:
    tmux.wait_for("kong [local] / >")
    tmux.keys("cd /runs/be", "Tab")
    tmux.wait_for("cd /runs/beta/")
    tmux.keys("Enter")
    tmux.wait_for("kong [local] /runs/beta >")
    tmux.keys("create-job --submit -- sleep 60", "Enter")
    tmux.wait_for("created job 1 (submitted)")
    tmux.keys("wait 1", "Enter")
    tmux.wait_for("Waiting")
    tmux.keys("C-c")  # a SIGINT, sent by the terminal, in the middle of the command
    tmux.wait_for("kong: interrupted")
    tmux.keys("pwd", "Enter")
    # pwd's answer, then the prompt again: awaited together, since the prompt is drawn
    # a moment after the answer.
    tmux.wait_for("\n/runs/beta\nkong [local] /runs/beta >")
    tmux.keys("kill -y 1", "Enter")
    tmux.wait_for("killed 1 job(s)")
    tmux.keys("exit", "Enter")
    tmux.wait_for("kong-exited-0")


def test_commands_from_a_pipe(tree: Path) -> None:
    proc = subprocess.run(KONG, env={**os.environ, "KONG_HOME": str(tree)},
                          input="cd /runs\n# a comment\nls\npwd\ncd /nope\npwd\n",
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1  # stops at the first failing command
    assert proc.stdout == "alpha/  1 folder, no jobs\nbeta/   no jobs\n/runs\n"
    assert proc.stderr == "kong: error: no such folder: /nope\n"


def test_bad_config_is_one_line_before_anything_runs(kong_home: Path) -> None:
    (kong_home / "config.yml").write_text("profiles: [1, 2]\n")
    proc = subprocess.run(KONG, env={**os.environ, "KONG_HOME": str(kong_home)},
                          input="pwd\n", capture_output=True, text=True, timeout=30,
                          check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kong: error: ") and "profiles" in lines[0]


def test_bad_config_ends_the_terminal_shell(kong_home: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    (kong_home / "config.yml").write_text("profiles: [1, 2]\n")
    session = Tmux(kong_home)
    try:
        screen = session.wait_for("kong-exited-1")
        assert "kong: error: " in screen and "profiles" in screen
    finally:
        session.close()


def test_history_is_trimmed_to_history_size(kong_home: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (kong_home / "config.yml").write_text("history_size: 3\n")
    assert drive(["pwd\r", "cd /\r", "pwd\r", "mkdir -p /h\r", "cd /h\r", "exit\r"]) == 0
    up = "\x1b[A"
    assert drive([history_loaded(3), up, up, up, buffer_is("mkdir -p /h"), up,
                  buffer_is("mkdir -p /h"), "\r", "pwd\r", "exit\r"]) == 0
    from prompt_toolkit.history import FileHistory

    entries = list(FileHistory(str(kong_home / "history")).load_history_strings())
    assert list(reversed(entries)) == ["mkdir -p /h", "pwd", "exit"]
