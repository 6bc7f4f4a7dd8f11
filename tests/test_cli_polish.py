"""The everyday commands, as a person at a terminal meets them: confirmations, the
words of hints, listings without raw Python, several arguments, colour."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from kong.cli import Context, run
from kong.errors import ConfigError, FolderError, KongWarning
from kong.model.job import JobStatus
from kong.state import State
from tests.fixtures_state import write_config
from tests.oneline import kong, ok, refused
from tests.ptyrun import PtyKong, pty_kong

TWO_PROFILES = "profiles:\n  local:\n    driver: local\n  serial:\n    driver: local\n"
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def _running(state: State, command: str = "sleep 120") -> int:
    job = state.create_job(command=command)
    state.submit_job(job)
    deadline = time.monotonic() + 30
    while job.status != JobStatus.RUNNING:
        assert time.monotonic() < deadline, job.status
        state.refresh_jobs([job])
        time.sleep(0.05)
    return job.job_id


def _finished(state: State, command: str) -> int:
    job = state.create_job(command=command)
    state.submit_job(job)
    state.wait(job, notify=False, timeout=60)
    return job.job_id


# -- confirmation -------------------------------------------------------------------------


@pytest.mark.parametrize(("words", "nothing"), [
    (["kill"], "nothing killed (not confirmed)"),
    (["rm"], "nothing removed (not confirmed)"),
    (["resubmit"], "nothing resubmitted (not confirmed)"),
])
def test_no_asks_first_and_says_nothing_was_done(
    kong_home: Path, words: list[str], nothing: str
) -> None:
    state = State.get_instance()
    job_id = _running(state)
    try:
        session = PtyKong([*words, str(job_id)])
        asked = session.expect("[y/N]")
        assert not any(c in asked for c in SPINNER), asked  # no spinner before the answer
        session.send("n\r")
        code, out = session.finish()
        assert code == 0
        assert nothing in out
        assert "killed 0" not in out and "resubmitted 0" not in out
        state.refresh_jobs(state.get_jobs(job_id))
        assert state.get_jobs(job_id)[0].status == JobStatus.RUNNING  # nothing changed
    finally:
        state.kill_job(job_id)


def test_yes_at_the_prompt_kills(kong_home: Path) -> None:
    state = State.get_instance()
    job_id = _running(state)
    session = PtyKong(["kill", str(job_id)])
    session.expect("Kill 1 job(s)? [y/N]")
    session.send("y\r")
    code, out = session.finish()
    assert code == 0 and "killed 1 job(s)" in out
    assert state.get_jobs(job_id)[0].status == JobStatus.FAILED


def test_kill_of_finished_jobs_says_so(kong_home: Path) -> None:
    state = State.get_instance()
    job_id = _finished(state, "true")
    assert "no jobs to kill" in ok(kong("kill", "-y", str(job_id)))


# -- several arguments --------------------------------------------------------------------


def test_rm_takes_several_folders_and_jobs(kong_home: Path) -> None:
    state = State.get_instance()
    for path in ("/a/x", "/b", "/c"):
        state.mkdir(path, create_parent=True)
    job = state.create_job(command="true", folder="/c")
    other = state.create_job(command="true", folder="/c")
    assert ok(kong("rm", "-r", "-y", "/a", "/b", "/a/x", str(job.job_id))).strip() == "removed"
    assert [f.name for f in state.ls("/")[0]] == ["c"]
    assert [j.job_id for j in state.get_jobs("/c")] == [other.job_id]
    assert state.rm(["/c", str(other.job_id)], recursive=True) is True
    assert state.ls("/") == ([], [])


def test_rm_of_several_asks_once(kong_home: Path) -> None:
    state = State.get_instance()
    state.mkdir("/a")
    state.mkdir("/b")
    questions: list[str] = []
    assert state.rm(["/a", "/b"], recursive=True,
                    confirm=lambda q: questions.append(q) or False) is False
    assert questions == ["Remove 2 folder(s) and 0 job(s)?"]
    assert [f.name for f in state.ls("/")[0]] == ["a", "b"]


def test_ls_takes_several_paths(kong_home: Path) -> None:
    state = State.get_instance()
    state.mkdir("/a/sub", create_parent=True)
    state.mkdir("/b")
    job = state.create_job(command="echo in-b", folder="/b")
    out = ok(kong("ls", "/a", "/b")).splitlines()
    assert out[:3] == ["/a:", "sub/  no jobs", ""]
    assert out[3] == "/b:"
    assert out[5].split()[0] == str(job.job_id) and out[5].endswith("echo in-b")
    listing = json.loads(ok(kong("ls", "--json", "/a", "/b")))
    assert [x["path"] for x in listing] == ["/a", "/b"]
    assert [f["name"] for f in listing[0]["folders"]] == ["sub"]
    assert [j["job_id"] for j in listing[1]["jobs"]] == [job.job_id]
    assert json.loads(ok(kong("ls", "--json", "/b")))["jobs"][0]["job_id"] == job.job_id


def test_mv_takes_several_sources(kong_home: Path) -> None:
    state = State.get_instance()
    for path in ("/a", "/b", "/dest"):
        state.mkdir(path)
    job = state.create_job(command="true")
    assert "moved 3 item(s)" in ok(kong("mv", "/a", "/b", str(job.job_id), "/dest"))
    assert [f.name for f in state.ls("/dest")[0]] == ["a", "b"]
    assert [j.job_id for j in state.get_jobs("/dest")] == [job.job_id]
    refused(kong("mv", "/dest/a", "/dest/b", "/nowhere"), "no such folder: /nowhere")


# -- wait, cd -----------------------------------------------------------------------------


def test_wait_timeout_counts_and_names_only_unfinished_jobs(kong_home: Path) -> None:
    state = State.get_instance()
    failed = _finished(state, "false")
    running = _running(state)
    try:
        proc = kong("wait", str(failed), str(running), "-t", "1")
        assert proc.returncode == 3
        assert proc.stderr.strip() == (
            f"kong: timeout: 1 job(s) not finished after 1 s: {running} (RUNNING)")
        with pytest.raises(TimeoutError, match=rf"^1 job\(s\) not finished after 0.5 s: "
                                               rf"{running} \(RUNNING\)$"):
            state.wait([failed, running], notify=False, timeout=0.5)
    finally:
        state.kill_job(running)


def test_cd_from_a_terminal_says_it_is_for_the_shell(kong_home: Path) -> None:
    State.get_instance().mkdir("/runs")
    refused(kong("cd", "/runs"), "cd changes the folder of kong's interactive shell",
            "kong ls /runs")
    refused(kong("cd", "/nope"), "no such folder: /nope")
    # in the shell, cd works (and so does a script fed to it)
    out = ok(kong(stdin="cd /runs\npwd\n"))
    assert out == "/runs\n"


# -- listings -----------------------------------------------------------------------------


def test_no_raw_python_in_ls_extra_and_info(kong_home: Path) -> None:
    state = State.get_instance()
    created = state.create_job(command="true").job_id
    failed = _finished(state, "false")
    first_batch = state.get_jobs(failed)[0].batch_job_id
    state.resubmit_job(failed)
    state.wait(failed, notify=False, timeout=60)
    out = ok(kong("ls", "-x", "exit_code", "/"))
    assert "None" not in out
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert rows[str(created)].split()[3] != "None"
    info = ok(kong("info", str(failed)))
    assert "[{" not in info and "None" not in info and "{'" not in info
    lines = info.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("earlier runs"))
    # each earlier attempt: its batch id and status first, then what it ran with
    assert lines[at + 1].split()[:3] == ["batch", "id", "status"]
    assert lines[at + 2].split()[:2] == [str(first_batch), "FAILED"]


def test_ls_says_what_is_there(kong_home: Path) -> None:
    state = State.get_instance()
    state.mkdir("/only/sub", create_parent=True)
    state.mkdir("/empty")
    assert ok(kong("ls", "/empty")) == "/empty is empty: no folders, no jobs\n"
    assert ok(kong("ls", "/")).splitlines() == ["empty/  no jobs", "only/   1 folder, no jobs"]
    state.create_job(command="true", folder="/empty")
    assert ok(kong("ls", "-s", "FAILED", "/empty")).strip() == (
        "no jobs with status FAILED in /empty")


def test_ls_recursive_keeps_the_folder_column(kong_home: Path) -> None:
    state = State.get_instance()
    state.mkdir("/runs/a", create_parent=True)
    state.create_job(command="true", folder="/runs/a")
    out = ok(kong("ls", "-R", "/runs"))
    header = out.splitlines()[1].split()
    assert "folder" in header
    assert "/runs/a" in out.splitlines()[2]


def test_info_of_many_jobs_costs_what_json_costs(kong_home: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``info`` as a table reads the database as ``--json`` does, not once per job (2,000
    jobs took 22 s as a table, 1.9 s as JSON): the statements are counted, since wall
    clock on a busy machine proves nothing (benchmarks time things)."""
    from sqlalchemy import event

    from kong import db

    state = State.get_instance()
    state.mkdir("/big")
    for i in range(400):
        state.create_job(command=f"echo {i}", folder="/big")

    def statements(*words: str) -> int:
        count = 0

        def counted(*_: object) -> None:
            nonlocal count
            count += 1

        engine = db.engine()
        event.listen(engine, "before_cursor_execute", counted)
        try:
            assert run(list(words), obj=Context()) == 0
        finally:
            event.remove(engine, "before_cursor_execute", counted)
        capsys.readouterr()
        return count

    as_json = statements("info", "--json", "-r", "/big")
    as_table = statements("info", "-r", "/big")
    assert as_table <= as_json + 5, (as_table, as_json)
    assert as_table < 50, as_table  # a few bulk queries, not one per job


# -- words of each surface ----------------------------------------------------------------


def test_hints_speak_the_words_of_their_surface(kong_home: Path) -> None:
    refused(kong("mkdir", "/x/y"), "no such folder: /x (use mkdir -p to create it too)")
    with pytest.raises(FolderError, match=r"pass create_parent=True"):
        State.get_instance().mkdir("/x/y")
    refused(kong("ls", "--bogus"), "(see: kong ls --help)", code=2)
    out = kong(stdin="ls --bogus\n")
    assert out.returncode == 2
    assert "(see: ls --help)" in out.stderr and "kong ls --help" not in out.stderr
    assert "seed" not in ok(kong("--help"))
    State.get_instance().mkdir("/f")
    refused(kong("rm", "-y", "/f"), "/f is a folder: use rm -r to remove it")
    with pytest.raises(FolderError, match=r"/f is a folder: pass recursive=True"):
        State.get_instance().rm("/f")


def test_profile_use_from_a_terminal_says_it_is_for_the_shell(kong_home: Path) -> None:
    refused(kong("profile", "use", "local"), "profile use changes the profile of kong's "
            "interactive shell", "kong -p local COMMAND")
    refused(kong("profile", "use", "nope"), "no profile named 'nope'")
    assert ok(kong(stdin="profile use local\nprofile show\n")) == "profile: local\nlocal\n"


# -- colour -------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "coloured"), [
    ({"TERM": "xterm-256color"}, True),
    ({"TERM": "dumb"}, False),
    ({"TERM": "xterm-256color", "NO_COLOR": "1"}, False),
])
def test_colour_only_where_the_terminal_shows_it(
    kong_home: Path, env: dict[str, str], coloured: bool
) -> None:
    state = State.get_instance()
    state.mkdir("/runs")
    state.create_job(command="true", folder="/runs")
    for words in (["ls", "/"], ["ls", "/runs"], ["info", "1"]):
        code, out = pty_kong(*words, env=env)
        assert code == 0, out
        assert ("\x1b[" in out) is coloured, (words, out)


# -- completion of profiles ---------------------------------------------------------------


@pytest.mark.parametrize("line", ["kong -p l", "kong profile use l", "kong profile test l",
                                  "kong create-job --profile l"])
def test_shell_completes_profiles(kong_home: Path, line: str) -> None:
    write_config(kong_home, "profiles:\n  local:\n    driver: local\n  lab:\n    driver: local\n"
                 "  other:\n    driver: local\n")
    words = line.split()
    proc = kong(env={"_KONG_COMPLETE": "bash_complete", "COMP_WORDS": line,
                     "COMP_CWORD": str(len(words) - 1)})
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == ["plain,lab", "plain,local"]


# -- a profile that left the config -------------------------------------------------------


def test_jobs_of_a_removed_profile_list_show_and_remove(kong_home: Path) -> None:
    write_config(kong_home, TWO_PROFILES)
    state = State.get_instance()
    state.mkdir("/runs")
    done = _finished_on(state, "serial")
    waiting = state.create_job(command="true", profile="serial", folder="/runs").job_id
    state.create_job(command="true", folder="/runs")  # of a profile still there
    job_dir = Path(state.get_jobs(done)[0].log_dir).parent
    write_config(kong_home, "profiles:\n  local:\n    driver: local\n")

    listing = ok(kong("ls", "-u", "/runs"))
    assert len(listing.splitlines()) == 4 and "serial" in listing
    assert "serial" in ok(kong("info", str(done)))
    refused(kong("submit", str(waiting)), "profile 'serial' is no longer in the config")
    proc = kong("rm", "-y", str(done))
    assert proc.returncode == 0 and proc.stdout.strip() == "removed"
    assert proc.stderr.strip() == (
        f"kong: warning: the files of 1 removed job(s) of profile 'serial' (no longer in the "
        f"config) could not be cleaned on its local host; they are in {job_dir}")
    assert job_dir.exists()  # left where it is, as said
    proc = kong("rm", "-r", "-y", "/runs")
    assert proc.returncode == 0 and "could not be cleaned" in proc.stderr
    assert ok(kong("ls", "/")) == "/ is empty: no folders, no jobs\n"


def test_api_removal_of_a_removed_profile_warns(kong_home: Path) -> None:
    write_config(kong_home, TWO_PROFILES)
    job_id = State.get_instance().create_job(command="true", profile="serial").job_id
    from kong import db

    db.dispose()
    write_config(kong_home, "profiles:\n  local:\n    driver: local\n")
    state = State.get_instance()
    assert state.get_jobs(job_id)[0].profile == "serial"
    with pytest.raises(ConfigError, match="profile 'serial' is no longer in the config"):
        state.submit_job(job_id)
    with pytest.warns(KongWarning, match="could not be cleaned"):
        assert state.rm(str(job_id)) is True
    assert state.ls("/") == ([], [])


def _finished_on(state: State, profile: str) -> int:
    job = state.create_job(command="true", profile=profile, folder="/runs")
    state.submit_job(job)
    state.wait(job, notify=False, timeout=60)
    return job.job_id
