"""No JobSpec, however odd, gets a traceback: issue 16's cases, then property-based tests.

First the cases found by hand (huge ids and ranges and ``-c`` counts, ``²``,
undecodable bytes, ``mkdir -p`` of 1,200 levels): each is one ``kong: error: ...``
line from a real ``kong`` process (the CLI and the REPL reading a script), a KongError
subclass from the API, a non-zero exit, and the same database dump before and after.

Then hypothesis feeds arbitrary text, numbers and bytes to every JobSpec-taking State
method, to every JobSpec-taking CLI command (in-process through ``kong.cli.run``, plus
a few real processes) and to ``create_job``'s arguments: the only exceptions allowed
are KongError subclasses (``ArgumentTypeError`` is also the ``TypeError`` of a wrong
argument type).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kong import db
from kong.cli import Context, run
from kong.errors import KongError
from kong.jobspec import MAX_ID
from kong.model.folder import Folder
from kong.state import State
from tests.dbdump import dump
from tests.kongcmd import KONG

HUGE = "99999999999999999999"
DEEP = "a/" * 1200

#: issue 16's JobSpec cases, as argv words (bytes for what no str can say)
CLI_CASES: list[list[str | bytes]] = [
    ["ls", HUGE],
    ["info", "1..99999999999999999999999"],
    ["create-job", "-c", HUGE, "true"],
    ["ls", "²"],
    ["ls", b"\xff"],
    ["mkdir", "-p", DEEP],
    ["ls", f"/f/{HUGE}"],
    ["rm", "-y", f"{MAX_ID + 1}..{MAX_ID + 2}"],
    ["info", b"/f/\xff\xfe"],
    ["mkdir", b"new\xff"],
    ["mv", "1", b"/\xff"],
    ["kill", "-y", "-" + HUGE],
]


@pytest.fixture
def small_tree(state: State) -> State:
    """/f (jobs 1, 2 finished), /g (job 3 created), / (job 4 created); /f/sub, /g/sub."""
    state.mkdir("/f/sub", create_parent=True)
    state.mkdir("/g/sub", create_parent=True)
    jobs = [state.create_job(command="true", folder=f) for f in ("/f", "/f", "/g", "/")]
    state.submit_job(jobs[:2])
    state.wait(jobs[:2], notify=False, timeout=60, poll_interval=0.05)
    return state


def kong_process(
    argv: list[str | bytes], stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*KONG, *argv], capture_output=True, timeout=120, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          env={**os.environ})


def assert_one_error_line(proc: subprocess.CompletedProcess[bytes]) -> None:
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode != 0, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kong: error: "), err


@pytest.mark.parametrize("argv", CLI_CASES, ids=lambda a: repr(a)[:40])
def test_issue16_jobspecs_are_one_line_on_the_cli(
    small_tree: State, kong_home: Path, argv: list[str | bytes]
) -> None:
    db.dispose()
    before = dump(kong_home)
    assert_one_error_line(kong_process(argv))
    assert dump(kong_home) == before


@pytest.mark.parametrize("argv", CLI_CASES[:6], ids=lambda a: repr(a)[:40])
def test_issue16_jobspecs_are_one_line_in_the_repl(
    small_tree: State, kong_home: Path, argv: list[str | bytes]
) -> None:
    """The REPL reading a script (``kong < commands``) says the same one line."""
    db.dispose()
    before = dump(kong_home)
    line = b" ".join(a if isinstance(a, bytes) else a.encode() for a in argv)
    assert_one_error_line(kong_process([], stdin=line + b"\n"))
    assert dump(kong_home) == before


def test_issue16_jobspecs_raise_kong_errors_from_the_api(
    small_tree: State, kong_home: Path
) -> None:
    state = small_tree
    db.end_read()
    before = dump(kong_home)
    calls: list[Callable[[], Any]] = [
        lambda: state.ls(HUGE),
        lambda: state.get_jobs(int(HUGE)),
        lambda: state.get_jobs(-int(HUGE)),
        lambda: state.ls("1..99999999999999999999999"),
        lambda: state.create_job(command="true", cores=int(HUGE)),
        lambda: state.create_job(command="true", memory=int(HUGE)),
        lambda: state.ls("²"),
        lambda: state.get_jobs("1..²"),
        lambda: state.ls("\udcff"),
        lambda: state.cd("/f/\udcff"),
        lambda: state.mkdir(DEEP, create_parent=True),
        lambda: state.mkdir("x\udcff"),
        lambda: state.create_job(command="echo \udcff"),
        lambda: state.mv("1", f"/{HUGE}"),
        lambda: state.rm(f"/f/{HUGE}"),
    ]
    for call in calls:
        with pytest.raises(KongError) as caught:
            call()
        assert "\n" not in str(caught.value)
        assert dump(kong_home) == before
    assert Folder.find_by_path("/a") is None  # nothing of the deep path was made


def test_deep_trees_up_to_the_limit_work(state: State) -> None:
    from kong.jobspec import MAX_DEPTH

    deepest = state.mkdir("d/" * MAX_DEPTH, create_parent=True)
    assert deepest is not None
    assert deepest.path == "/" + "/".join(["d"] * MAX_DEPTH)
    with pytest.raises(KongError, match=f"at most {MAX_DEPTH} levels"):
        state.mkdir(deepest.path + "/e")


# -- property-based -----------------------------------------------------------------------

_SPEC_WORDS = st.sampled_from(
    ["", ".", "..", "/", "*", "f", "g", "sub", "nope", "1", "3", "4", "²", "٣", "\udcff", "\x00",
     " ", "\n", "f*", "[", "?", HUGE, str(MAX_ID), str(MAX_ID + 1), "-1", "1..4", "4..1",
     "0..0", f"1..{HUGE}", "..5", "5..", "1...3"]
)
#: JobSpec-shaped text: words joined by "/" and "..", plus any text at all
SPEC_TEXT = st.one_of(
    st.lists(_SPEC_WORDS, min_size=1, max_size=4).map("/".join),
    st.tuples(_SPEC_WORDS, _SPEC_WORDS).map("..".join),
    st.text(max_size=20),
    st.binary(max_size=12).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
#: anything a caller might pass where a JobSpec goes
ANY_SPEC = st.one_of(
    SPEC_TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.none(),
    st.booleans(),
    st.binary(max_size=8),
    st.lists(SPEC_TEXT, max_size=3),
)

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

NO: Callable[[str], bool] = lambda _question: False  # noqa: E731 - select, then do nothing


def _state_calls(state: State, spec: Any, other: Any) -> Iterator[Callable[[], Any]]:
    yield lambda: state.get_jobs(spec)
    yield lambda: state.get_jobs(spec, recursive=True)
    yield lambda: state.select_jobs(spec, recursive=False)
    yield lambda: state.get_folders(spec)
    yield lambda: state.ls(spec)
    yield lambda: state.ls(spec, recursive=True)
    yield lambda: state.cd(spec)
    yield lambda: state.mkdir(spec, exist_ok=True)
    yield lambda: state.mkdir(spec, create_parent=True, exist_ok=True)
    yield lambda: state.submit_job(spec, confirm=NO)
    yield lambda: state.kill_job(spec, confirm=NO)
    yield lambda: state.resubmit_job(spec, confirm=NO)
    yield lambda: state.rm(spec, recursive=True, confirm=NO)
    yield lambda: state.wait(spec, notify=False, timeout=0)
    yield lambda: state.mv(spec, other)

    def pushd() -> None:
        with state.pushd(spec):
            pass

    yield pushd


def test_every_state_method_takes_any_jobspec(small_tree: State) -> None:
    state = small_tree

    @FUZZ
    @given(spec=ANY_SPEC, other=ANY_SPEC)
    def check(spec: Any, other: Any) -> None:
        for call in _state_calls(state, spec, other):
            state.cwd = Folder.get_root()
            with contextlib.suppress(KongError):
                call()

    check()


_CLI_COMMANDS: list[list[str]] = [
    ["ls"], ["ls", "-R"], ["info"], ["submit"], ["kill"], ["resubmit"], ["rm"], ["rm", "-r"],
    ["wait", "-t", "0"], ["update"], ["tail"], ["cd"], ["mkdir"], ["mkdir", "-p"],
]


def test_every_cli_command_takes_any_jobspec(
    small_tree: State, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process (``kong.cli.run`` with the CLI's own Context): no exception escapes,
    and a failure ends in one ``kong: error:`` line."""
    obj = Context(state=small_tree)
    small_tree.empty_range_is_error = True

    @FUZZ
    @given(command=st.sampled_from(_CLI_COMMANDS), spec=SPEC_TEXT, dest=SPEC_TEXT,
           mv=st.booleans())
    def check(command: list[str], spec: str, dest: str, mv: bool) -> None:
        small_tree.cwd = Folder.get_root()
        words = ["mv", "--", spec, dest] if mv else [*command, "--", spec]
        code = run(words, obj=obj)
        captured = capsys.readouterr()
        err = captured.err
        assert "Traceback" not in err
        if words[0] == "wait" and code == 1 and not err:
            # wait's own verdict, not an error: it ended and some jobs did not complete
            assert captured.out.startswith("done: "), captured.out
        elif code not in (0, 3):  # 3: wait's timeout, its own one line
            assert err.strip().splitlines()[-1].startswith("kong: error: "), (words, err)

    check()


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.tuples(st.sampled_from(["ls", "info", "rm", "mkdir", "kill"]),
                      # no NUL: exec cannot pass one in an argument
                      st.binary(min_size=1, max_size=10).map(lambda b: b.replace(b"\0", b"0"))))
def test_real_processes_take_any_bytes(kong_home: Path, argv: tuple[str, bytes]) -> None:
    db.dispose()
    command, word = argv
    if word.startswith(b"-"):
        word = b"./" + word
    proc = kong_process([command, word])
    err = proc.stderr.decode(errors="replace")
    assert "Traceback" not in err
    if proc.returncode != 0:
        assert_one_error_line(proc)


_TEXTY = st.one_of(st.text(max_size=12), st.binary(max_size=6).map(
    lambda b: b.decode("utf-8", "surrogateescape")))
_ANYTHING = st.one_of(
    _TEXTY, st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.none(),
    st.booleans(), st.lists(_TEXTY, max_size=2), st.dictionaries(_TEXTY, _TEXTY, max_size=2),
)


def test_create_job_takes_any_arguments(state: State) -> None:
    state.mkdir("/f")

    @FUZZ
    @given(
        args=st.lists(_ANYTHING, max_size=3),
        kwargs=st.dictionaries(
            st.sampled_from(["command", "cores", "memory", "cwd", "env", "folder", "profile",
                             "driver", "walltime", "max_parallel", "bogus"]),
            _ANYTHING, max_size=5,
        ),
    )
    def check(args: list[Any], kwargs: dict[str, Any]) -> None:
        try:
            job = state.create_job(*args, **kwargs)
        except KongError:
            return
        assert state.get_jobs(job.job_id) == [job]

    check()


_ARG_KEYS = st.sampled_from(["command", "cores", "folder", "profile", "driver", "cwd", "env",
                             "memory", "walltime", "max_parallel", "x", ""])


def test_cli_create_job_takes_any_words(
    small_tree: State, capsys: pytest.CaptureFixture[str]
) -> None:
    """``kong create-job`` in-process with arbitrary option values and ``-a`` keys."""
    obj = Context(state=small_tree)

    @FUZZ
    @given(
        cores=st.one_of(st.just("1"), SPEC_TEXT), folder=st.one_of(st.just("/f"), SPEC_TEXT),
        command=SPEC_TEXT,
        pairs=st.lists(st.tuples(_ARG_KEYS, SPEC_TEXT), max_size=2),
        env=st.lists(st.tuples(SPEC_TEXT, SPEC_TEXT), max_size=2),
    )
    def check(cores: str, folder: str, command: str, pairs: list[tuple[str, str]],
              env: list[tuple[str, str]]) -> None:
        small_tree.cwd = Folder.get_root()
        words = ["create-job", "-c", cores, "-f", folder]
        for key, value in pairs:
            words += ["-a", f"{key}={value}"]
        for key, value in env:
            words += ["-e", f"{key}={value}"]
        code = run([*words, "--", command], obj=obj)
        err = capsys.readouterr().err
        assert "Traceback" not in err
        if code != 0:
            assert err.strip().splitlines()[-1].startswith("kong: error: "), (words, err)

    check()
