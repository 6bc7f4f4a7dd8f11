"""The State API of the seed, every method, on a fresh KONG_HOME with the local driver.

Real SQLite file, real job processes. Bad input must raise a KongError and leave the
database exactly as it was.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kong import db
from kong.errors import ConfigError, DriverError, FolderError, JobSpecError, KongError
from kong.model import Folder, Job, JobStatus
from kong.state import State
from tests.kongcmd import KONG

# -- helpers ---------------------------------------------------------------------------


def ids(jobs: Any) -> list[int]:
    return [j.job_id for j in jobs]


def paths(folders: Any) -> list[str]:
    return [f.path for f in folders]


def snapshot(home: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read through a connection of its own."""
    conn = sqlite3.connect(home / "kong.sqlite")
    try:
        return {
            table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in ("folders", "jobs", "kong_meta", "alembic_version")
        }
    finally:
        conn.close()


def finish(state: State, jobs: list[Job], timeout: float = 30) -> None:
    state.wait(jobs, notify=False, timeout=int(timeout), poll_interval=0.05)


@pytest.fixture
def tree(state: State) -> dict[str, Any]:
    """/a (jobs 1, 2), /a/sub (3), /b (4), /runs/2024-01 (5), /runs/2024-02 (6),
    /runs/2025-01 (7), / (8)."""
    state.mkdir("/a/sub", create_parent=True)
    state.mkdir("/b")
    for name in ("2024-01", "2024-02", "2025-01"):
        state.mkdir(f"/runs/{name}", create_parent=True)
    layout = ["/a", "/a", "/a/sub", "/b", "/runs/2024-01", "/runs/2024-02", "/runs/2025-01", "/"]
    jobs = [state.create_job(command=f"echo {i}", folder=f) for i, f in enumerate(layout, 1)]
    assert ids(jobs) == list(range(1, 9))
    return {"state": state, "jobs": jobs}


# -- cd / pushd ------------------------------------------------------------------------


def test_cd_relative_absolute_dotdot_and_root(tree: dict[str, Any]) -> None:
    state: State = tree["state"]
    assert state.cwd.path == "/"
    state.cd("a")
    assert state.cwd.path == "/a"
    state.cd("sub")
    assert state.cwd.path == "/a/sub"
    state.cd("..")
    assert state.cwd.path == "/a"
    state.cd("../b")
    assert state.cwd.path == "/b"
    state.cd("/runs/2024-01")
    assert state.cwd.path == "/runs/2024-01"
    state.cd()
    assert state.cwd.path == "/runs/2024-01"  # "." stays
    state.cd("/")
    assert state.cwd.path == "/"
    state.cd("..")
    assert state.cwd.path == "/"  # the root's parent is the root
    state.cd(Folder.find_by_path("/a/sub"))  # type: ignore[arg-type]
    assert state.cwd.path == "/a/sub"


def test_cd_to_missing_folder_keeps_cwd(tree: dict[str, Any]) -> None:
    state: State = tree["state"]
    state.cd("/a")
    with pytest.raises(FolderError, match="no such folder: nope"):
        state.cd("nope")
    assert state.cwd.path == "/a"


def test_pushd_restores_cwd_even_on_error(tree: dict[str, Any]) -> None:
    state: State = tree["state"]
    state.cd("/b")
    with state.pushd("/a/sub"):
        assert state.cwd.path == "/a/sub"
        assert ids(state.ls()[1]) == [3]
    assert state.cwd.path == "/b"
    with pytest.raises(RuntimeError), state.pushd("../a"):
        assert state.cwd.path == "/a"
        raise RuntimeError("boom")
    assert state.cwd.path == "/b"
    with pytest.raises(FolderError), state.pushd("/missing"):
        pass
    assert state.cwd.path == "/b"


# -- ls --------------------------------------------------------------------------------


def test_ls(tree: dict[str, Any]) -> None:
    state: State = tree["state"]
    folders, jobs = state.ls()
    assert paths(folders) == ["/a", "/b", "/runs"]
    assert ids(jobs) == [8]
    folders, jobs = state.ls("/a")
    assert paths(folders) == ["/a/sub"]
    assert ids(jobs) == [1, 2]
    assert all(isinstance(j, Job) for j in jobs)
    assert [j.command for j in jobs] == ["echo 1", "echo 2"]
    _, jobs = state.ls("/a", recursive=True)
    assert ids(jobs) == [1, 2, 3]
    _, jobs = state.ls(recursive=True)
    assert ids(jobs) == list(range(1, 9))
    with state.pushd("/a/sub"):
        assert paths(state.ls("..")[0]) == ["/a/sub"]
    # a JobSpec lists only jobs
    folders, jobs = state.ls("2..4")
    assert folders == []
    assert ids(jobs) == [2, 3, 4]
    assert ids(state.ls("runs/2024-*")[1]) == [5, 6]


def test_ls_missing_path(tree: dict[str, Any], kong_home: Path) -> None:
    state: State = tree["state"]
    before = snapshot(kong_home)
    with pytest.raises(KongError, match="nope"):
        state.ls("/nope")
    assert snapshot(kong_home) == before


def test_ls_refresh_updates_status(state: State) -> None:
    job = state.create_job(command="true")
    state.submit_job(job.job_id)
    deadline = 50
    for _ in range(deadline):
        _, jobs = state.ls(refresh=True)
        if jobs[0].status == JobStatus.COMPLETED:
            break
        import time

        time.sleep(0.1)
    _, jobs = state.ls()
    assert jobs[0].status == JobStatus.COMPLETED
    assert jobs.rows[0].status == JobStatus.COMPLETED  # type: ignore[attr-defined]


# -- mkdir -----------------------------------------------------------------------------


def test_mkdir(state: State) -> None:
    a = state.mkdir("a")
    assert a is not None and a.path == "/a"
    with pytest.raises(FolderError, match="exists"):
        state.mkdir("/a")
    again = state.mkdir("a", exist_ok=True)
    assert again is not None and again.folder_id == a.folder_id
    with state.pushd("a"):
        b = state.mkdir("b")
        assert b is not None and b.path == "/a/b"
        c = state.mkdir("../c")
        assert c is not None and c.path == "/c"
    deep = state.mkdir("/x/y/z", create_parent=True)
    assert deep is not None and deep.path == "/x/y/z"
    assert paths(state.get_folders("/x/y")) == ["/x/y"]
    assert state.mkdir("/x/y/z", exist_ok=True, create_parent=True) is not None


def test_mkdir_missing_parent_creates_nothing(state: State, kong_home: Path) -> None:
    before = snapshot(kong_home)
    with pytest.raises(FolderError, match="no such folder"):
        state.mkdir("p/q")
    assert snapshot(kong_home) == before
    assert state.get_folders("p") == []


@pytest.mark.parametrize("name", ["123", "0", "7..9", "a*", "b?", "[c]"])
def test_mkdir_refuses_names_that_read_as_jobspecs(
    state: State, kong_home: Path, name: str
) -> None:
    state.mkdir("/ok")
    before = snapshot(kong_home)
    with pytest.raises(FolderError):
        state.mkdir(f"/ok/{name}")
    with pytest.raises(FolderError):
        state.mkdir(f"/new/{name}", create_parent=True)
    assert snapshot(kong_home) == before


def test_mkdir_allows_names_with_digits(state: State) -> None:
    for name in ("run1", "2024-01", "1e5", "v1.2"):
        folder = state.mkdir(name)
        assert folder is not None and folder.name == name


# -- mv --------------------------------------------------------------------------------


def test_mv_jobs_into_folder(tree: dict[str, Any]) -> None:
    state: State = tree["state"]
    moved = state.mv("1..2", "/b")
    assert sorted(ids(moved)) == [1, 2]
    assert ids(state.ls("/b")[1]) == [1, 2, 4]
    assert ids(state.ls("/a")[1]) == []
    moved = state.mv(tree["jobs"][7], "runs")
    assert ids(state.ls("/runs")[1]) == [8]
    state.mv("3", "/")
    assert ids(state.ls("/")[1]) == [3]
    assert state.get_jobs(3)[0].folder.path == "/"
    with state.pushd("/b"):
        state.mv("*", "../a")
    assert ids(state.ls("/a")[1]) == [1, 2, 4]


def test_mv_folder_into_folder(tree: dict[str, Any]) -> None:
    state: State = tree["state"]
    moved = state.mv("/a", "/b")
    assert paths(moved) == ["/b/a"]
    assert paths(state.ls("/b")[0]) == ["/b/a"]
    assert ids(state.ls("/b/a/sub")[1]) == [3]
    assert state.get_jobs(3)[0].folder.path == "/b/a/sub"
    assert paths(state.ls("/")[0]) == ["/b", "/runs"]


def test_mv_renames_when_dest_does_not_exist(tree: dict[str, Any]) -> None:
    state: State = tree["state"]
    moved = state.mv("a", "c")
    assert paths(moved) == ["/c"]
    assert ids(state.ls("/c", recursive=True)[1]) == [1, 2, 3]
    state.mv("/c/sub", "/b/renamed")
    assert ids(state.ls("/b/renamed")[1]) == [3]
    folder = state.get_folders("/b")[0]
    state.mv(folder, "bee")
    assert paths(state.ls("/")[0]) == ["/bee", "/c", "/runs"]


def test_mv_refused_cases_change_nothing(tree: dict[str, Any], kong_home: Path) -> None:
    state: State = tree["state"]
    state.mkdir("/b/a")
    before = snapshot(kong_home)
    cases: list[tuple[str | Folder, str]] = [
        ("/a", "/a/sub"),  # into itself
        ("/a", "/a"),
        ("/a", "/a/sub/deeper"),  # rename into itself
        ("/a", "/b"),  # /b/a exists
        ("1..2", "/nope"),  # jobs into a missing folder
        ("/a", "/nope/x"),  # rename into a missing parent
        ("/a", "/123"),  # rename to a job id
        ("/missing", "/b"),
        ("5..2", "/b"),
        (Folder.get_root(), "/b"),
    ]
    for source, dest in cases:
        with pytest.raises(KongError):
            state.mv(source, dest)
        assert snapshot(kong_home) == before, (source, dest)


# -- rm --------------------------------------------------------------------------------


def test_rm_job_removes_row_and_files(state: State) -> None:
    job = state.create_job(command="echo out > $KONG_JOB_OUTPUT_DIR/f")
    state.submit_job(job.job_id)
    finish(state, [job])
    job_dir = Path(job.output_dir).parent
    assert (Path(job.output_dir) / "f").is_file()
    assert state.rm(str(job.job_id)) is True
    assert not job_dir.exists()
    with pytest.raises(JobSpecError):
        state.get_jobs(job.job_id)


def test_rm_running_job_kills_it(state: State) -> None:
    job = state.create_job(command="sleep 30")
    state.submit_job(job)
    finish_running(state, job)
    pid = _job_pid(job)
    job_dir = Path(job.log_dir).parent
    assert state.rm(job) is True
    assert not job_dir.exists()
    _wait_gone(pid)


def test_rm_folder_needs_recursive(tree: dict[str, Any], kong_home: Path) -> None:
    state: State = tree["state"]
    state.submit_job("/a", recursive=True)
    finish(state, state.get_jobs("/a", recursive=True))
    job_dirs = [Path(j.log_dir).parent for j in state.get_jobs("/a", recursive=True)]
    assert all(d.is_dir() for d in job_dirs)
    before = snapshot(kong_home)
    with pytest.raises(FolderError, match="recursive"):
        state.rm("/a")
    assert snapshot(kong_home) == before
    state.cd("/a/sub")
    assert state.rm("/a", recursive=True) is True
    assert state.cwd.path == "/"  # the cwd went with the folder
    assert paths(state.ls()[0]) == ["/b", "/runs"]
    assert not any(d.exists() for d in job_dirs)
    for job_id in (1, 2, 3):
        with pytest.raises(JobSpecError):
            state.get_jobs(job_id)
    assert ids(state.ls(recursive=True)[1]) == [4, 5, 6, 7, 8]
    conn = sqlite3.connect(kong_home / "kong.sqlite")
    assert conn.execute("SELECT count(*) FROM folders WHERE name='sub'").fetchone() == (0,)
    conn.close()


def test_rm_empty_folder_and_ranges(tree: dict[str, Any]) -> None:
    state: State = tree["state"]
    state.mkdir("/empty")
    with pytest.raises(FolderError):
        state.rm("/empty")
    assert state.rm("/empty", recursive=True)
    assert state.rm("5..6")
    assert ids(state.ls("/runs", recursive=True)[1]) == [7]
    assert state.rm("/a/*")
    assert ids(state.ls("/a", recursive=True)[1]) == [3]


def test_rm_refusals_change_nothing(tree: dict[str, Any], kong_home: Path) -> None:
    state: State = tree["state"]
    before = snapshot(kong_home)
    for spec in ("/", "//", "99", "5..2", "/missing", "/a/50..60"):
        with pytest.raises(KongError):
            state.rm(spec, recursive=True)
        assert snapshot(kong_home) == before, spec
    with pytest.raises(FolderError, match="root"):
        state.rm(Folder.get_root(), recursive=True)
    assert state.rm("/a", recursive=True, confirm=lambda _: False) is False
    assert snapshot(kong_home) == before


# -- create / submit / kill / resubmit / refresh / wait ------------------------------


def test_create_job(state: State) -> None:
    state.mkdir("/x")
    with state.pushd("/x"):
        job = state.create_job(command="echo hi", cores=2, memory=100)
    assert job.status == JobStatus.CREATED
    assert (job.profile, job.driver, job.cores, job.memory) == ("local", "local", 2, 100)
    assert job.folder.path == "/x"
    assert job.batch_job_id is None
    other = state.create_job(command="true", folder="/")
    assert other.folder.path == "/"
    assert other.job_id == job.job_id + 1


def test_create_job_bad_input_changes_nothing(state: State, kong_home: Path) -> None:
    state.create_job(command="true")
    before = snapshot(kong_home)
    with pytest.raises(ConfigError, match="no profile named 'gpu'"):
        state.create_job(command="true", profile="gpu")
    with pytest.raises(DriverError, match="unknown option 'bogus'"):
        state.create_job(command="true", bogus=1)
    with pytest.raises(DriverError, match="max_parallel"):
        state.create_job(command="true", max_parallel="x")
    with pytest.raises(DriverError, match="non-empty command"):
        state.create_job(command="  ")
    with pytest.raises(DriverError, match="cores"):
        state.create_job(command="true", cores=0)
    with pytest.raises(FolderError):
        state.create_job(command="true", folder="/missing")
    assert snapshot(kong_home) == before


def test_submit_wait_completed_and_failed(state: State) -> None:
    ok = state.create_job(command="exit 0")
    bad = state.create_job(command="exit 3")
    submitted = state.submit_job([ok.job_id, bad.job_id])
    assert ids(submitted) == [ok.job_id, bad.job_id]
    assert ok.status == JobStatus.SUBMITTED and ok.batch_job_id
    finish(state, [ok, bad])
    assert ok.status == JobStatus.COMPLETED
    assert bad.status == JobStatus.FAILED
    assert state.job_data([ok.job_id, bad.job_id], ["exit_code"]) == {
        ok.job_id: {"exit_code": 0}, bad.job_id: {"exit_code": 3}
    }
    # submit only takes CREATED jobs
    assert state.submit_job([ok.job_id, bad.job_id]) == []
    assert state.submit_job("/", confirm=lambda _: False) == []


def test_submit_recursive_folder(tree: dict[str, Any]) -> None:
    state: State = tree["state"]
    assert ids(state.submit_job("/a")) == [1, 2]
    assert ids(state.submit_job("/a", recursive=True)) == [3]
    statuses = {j.job_id: j.status for j in state.ls(recursive=True)[1]}
    assert {k for k, v in statuses.items() if v != JobStatus.CREATED} == {1, 2, 3}


def finish_running(state: State, job: Job, timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    while job.status != JobStatus.RUNNING:
        assert time.monotonic() < deadline, f"job {job.job_id} never ran: {job.status}"
        time.sleep(0.05)
        state.refresh_jobs([job])


def _job_pid(job: Job) -> int:
    state_file = Path(job.log_dir).parent / "state"
    word, pid, *_ = state_file.read_text().split()
    assert word == "RUNNING"
    return int(pid)


def _wait_gone(pid: int, timeout: float = 10) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still alive")


def test_kill_makes_running_and_queued_jobs_failed(state: State) -> None:
    running = state.create_job(command="sleep 30")
    done = state.create_job(command="true")
    state.submit_job([running.job_id, done.job_id])
    finish_running(state, running)
    finish(state, [done])
    pid = _job_pid(running)
    killed = state.kill_job([running.job_id, done.job_id])
    assert ids(killed) == [running.job_id]  # a finished job is not killed
    assert running.status == JobStatus.FAILED
    _wait_gone(pid)
    state.refresh_jobs([running])
    assert running.status == JobStatus.FAILED
    assert done.status == JobStatus.COMPLETED
    assert state.kill_job(running.job_id) == []
    created = state.create_job(command="true")
    assert state.kill_job(created.job_id) == []
    assert created.status == JobStatus.CREATED


def test_resubmit_failed_only(state: State, tmp_path: Path) -> None:
    ok = state.create_job(command='echo ran >> "$KONG_JOB_OUTPUT_DIR/ran"')
    # fails on its first run, succeeds on the second (the counter lives outside the job)
    counter = tmp_path / "runs"
    flaky = state.create_job(
        command='echo run >> "$COUNTER"; n=$(wc -l < "$COUNTER"); echo out-$n; '
        "echo err-$n >&2; test $n -ge 2",
        env={"COUNTER": str(counter)},
    )
    state.submit_job([ok.job_id, flaky.job_id])
    finish(state, [ok, flaky])
    assert (ok.status, flaky.status) == (JobStatus.COMPLETED, JobStatus.FAILED)
    with flaky.stderr() as fh:
        assert fh.read().split() == ["err-1"]
    resubmitted = state.resubmit_job([ok.job_id, flaky.job_id], failed_only=True)
    assert ids(resubmitted) == [flaky.job_id]
    assert flaky.status == JobStatus.SUBMITTED
    finish(state, [flaky])
    assert flaky.status == JobStatus.COMPLETED
    with flaky.stdout() as fh:
        assert fh.read().split() == ["out-2"]  # the log of the first run is gone
    assert ok.status == JobStatus.COMPLETED
    assert (Path(ok.output_dir) / "ran").read_text() == "ran\n"  # ok ran once
    # without failed_only a completed job runs again, in a fresh output dir
    assert ids(state.resubmit_job(ok.job_id)) == [ok.job_id]
    finish(state, [ok])
    assert ok.status == JobStatus.COMPLETED
    assert (Path(ok.output_dir) / "ran").read_text() == "ran\n"
    history = state.job_data([ok.job_id], ["history"])[ok.job_id]["history"]
    assert [h["status"] for h in history] == ["COMPLETED"]
    assert state.resubmit_job(ok.job_id, confirm=lambda _: False) == []


def test_refresh_jobs_returns_the_jobs(state: State) -> None:
    jobs = [state.create_job(command="true") for _ in range(3)]
    assert list(state.refresh_jobs(jobs)) == jobs  # CREATED: nothing to ask
    state.submit_job(jobs[0].job_id)
    finish(state, [jobs[0]])
    refreshed = state.refresh_jobs(jobs)
    assert [j.status for j in refreshed] == [
        JobStatus.COMPLETED, JobStatus.CREATED, JobStatus.CREATED
    ]


def test_wait_timeout_and_progress(state: State) -> None:
    slow = state.create_job(command="sleep 30")
    state.submit_job(slow)
    with pytest.raises(TimeoutError):
        state.wait(slow.job_id, notify=False, timeout=1, poll_interval=0.1)
    state.kill_job(slow)

    # long enough that a loaded machine's first poll still sees them unfinished
    jobs = [state.create_job(command=f"sleep {i}") for i in range(1, 4)]
    state.submit_job(ids(jobs))
    progress = state.wait(ids(jobs), notify=False, poll_interval=0.05, progress=True)
    assert progress is not None
    snapshots = [[j.status for j in step] for step in progress]
    assert len(snapshots) >= 2
    assert all(len(s) == 3 for s in snapshots)
    assert snapshots[-1] == [JobStatus.COMPLETED] * 3
    assert any(s != snapshots[-1] for s in snapshots)  # it saw them unfinished first
    assert state.wait(ids(jobs), notify=False, poll_interval=0.05) is None


def test_wait_with_folder_spec_and_recursive(tree: dict[str, Any]) -> None:
    state: State = tree["state"]
    state.submit_job("/a", recursive=True)
    state.wait("/a", recursive=True, notify=False, poll_interval=0.05, timeout=30)
    assert {j.status for j in state.get_jobs("/a", recursive=True)} == {JobStatus.COMPLETED}
    assert {j.status for j in state.get_jobs("/b")} == {JobStatus.CREATED}


# -- get_jobs / get_folders ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cwd", "spec", "recursive", "expected"),
    [
        ("/", 3, False, [3]),
        ("/b", "3", False, [3]),  # an id is an id anywhere
        ("/", " 7 ", False, [7]),
        ("/", "2..5", False, [2, 3, 4, 5]),
        ("/", "5..5", False, [5]),
        ("/", "6..100", False, [6, 7, 8]),
        ("/", "/a/1..3", False, [1, 2]),
        ("/", "/a/1..3", True, [1, 2, 3]),
        ("/a", "sub/1..9", False, [3]),
        ("/", "a", False, [1, 2]),
        ("/", "/a", True, [1, 2, 3]),
        ("/a/sub", "..", False, [1, 2]),
        ("/a/sub", "../../b", False, [4]),
        ("/a", ".", True, [1, 2, 3]),
        ("/", "a/*", False, [1, 2]),
        ("/a", "*", False, [1, 2]),
        ("/", "/*", False, [8]),
        ("/", "runs/2024-*", False, [5, 6]),
        ("/runs", "20?5-01", False, [7]),
        ("/", "/runs/*-01", False, [5, 7]),
        ("/", "runs/2024-0[2]", False, [6]),
        ("/", "/*/sub", False, [3]),
        ("/", "runs", False, []),
        ("/", "runs", True, [5, 6, 7]),
        ("/", "/", True, [1, 2, 3, 4, 5, 6, 7, 8]),
    ],
)
def test_get_jobs(
    tree: dict[str, Any], cwd: str, spec: str | int, recursive: bool, expected: list[int]
) -> None:
    state: State = tree["state"]
    state.cd(cwd)
    assert ids(state.get_jobs(spec, recursive=recursive)) == expected


def test_get_jobs_with_job_instance(tree: dict[str, Any]) -> None:
    state: State = tree["state"]
    job = tree["jobs"][0]
    assert state.get_jobs(job) == [job]


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        (99, JobSpecError, "no job with id 99"),
        ("99", JobSpecError, "no job with id 99"),
        ("5..2", JobSpecError, "bad range 5..2"),
        ("50..60", JobSpecError, "no jobs in range 50..60"),
        ("/b/1..3", JobSpecError, "no jobs in range /b/1..3"),
        ("/missing/1..3", FolderError, "no such folder: /missing"),
        ("/missing", JobSpecError, "no such folder or job: /missing"),
        ("a/nope", JobSpecError, "no such folder or job: a/nope"),
        ("missing/*", FolderError, "no such folder: missing"),
        ("nomatch-*", JobSpecError, "nomatch-"),
        ("1..", JobSpecError, "no such folder or job: 1.."),
    ],
)
def test_get_jobs_bad_specs(
    tree: dict[str, Any], kong_home: Path, spec: str | int, error: type[Exception],
    message: str,
) -> None:
    state: State = tree["state"]
    before = snapshot(kong_home)
    with pytest.raises(error, match=message.replace(".", r"\.")):
        state.get_jobs(spec)
    assert snapshot(kong_home) == before


def test_get_folders(tree: dict[str, Any]) -> None:
    state: State = tree["state"]
    assert paths(state.get_folders("/a")) == ["/a"]
    assert paths(state.get_folders("a/sub")) == ["/a/sub"]
    assert paths(state.get_folders("/nope")) == []
    assert paths(state.get_folders("/runs/2024-*")) == ["/runs/2024-01", "/runs/2024-02"]
    assert sorted(paths(state.get_folders("/*"))) == ["/a", "/b", "/runs"]
    assert paths(state.get_folders("/*/sub")) == ["/a/sub"]
    with state.pushd("/runs/2024-01"):
        assert sorted(paths(state.get_folders("../*-0[12]"))) == [
            "/runs/2024-01", "/runs/2024-02", "/runs/2025-01"
        ]
        assert paths(state.get_folders("../../a/..")) == ["/"]


def test_status_and_folder_counts(tree: dict[str, Any]) -> None:
    state: State = tree["state"]
    state.submit_job(1)
    finish(state, state.get_jobs(1))
    counts = state.status_counts("/a")
    assert counts[JobStatus.COMPLETED] == 1
    assert counts[JobStatus.CREATED] == 2
    assert sum(counts.values()) == 3
    assert sum(state.status_counts("/a", recursive=False).values()) == 2
    assert sum(state.status_counts("/").values()) == 8
    folders = state.ls("/")[0]
    by_path = {f.path: c for f, c in zip(folders, state.folder_counts(folders).values(),
                                         strict=True)}
    assert sum(by_path["/a"].values()) == 3
    assert sum(by_path["/runs"].values()) == 3
    with pytest.raises(FolderError):
        state.status_counts("/nope")


def test_bad_job_ids_for_every_method_change_nothing(
    tree: dict[str, Any], kong_home: Path
) -> None:
    state: State = tree["state"]
    before = snapshot(kong_home)
    calls: list[Callable[[], Any]] = [
        lambda: state.submit_job(99),
        lambda: state.submit_job([1, 99]),  # one bad spec: nothing is submitted
        lambda: state.kill_job("5..2"),
        lambda: state.resubmit_job("/missing"),
        lambda: state.wait(99, notify=False),
        lambda: state.rm("99"),
        lambda: state.mv("99", "/b"),
        lambda: state.ls("/missing/*"),
        lambda: state.cd("/missing"),
    ]
    for call in calls:
        with pytest.raises(KongError):
            call()
        assert snapshot(kong_home) == before
    assert state.get_jobs(1)[0].status == JobStatus.CREATED


def test_other_process_changes_are_seen(state: State, kong_home: Path) -> None:
    """A State that already loaded a job sees what another kong process did to it."""
    job = state.create_job(command="true")
    assert state.get_jobs(job.job_id)[0].status == JobStatus.CREATED
    proc = subprocess.run(
        [*KONG, "submit", str(job.job_id)], capture_output=True, text=True, timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr
    again = state.get_jobs(job.job_id)[0]
    assert again.status != JobStatus.CREATED
    assert state.submit_job(job.job_id) == []  # never submitted twice
    proc = subprocess.run(
        [*KONG, "mkdir", "/made-elsewhere"], capture_output=True, text=True, timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr
    assert paths(state.ls()[0]) == ["/made-elsewhere"]


# -- the CLI on bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["ls", "/missing"],
        ["ls", "5..2"],
        ["submit", "99"],
        ["kill", "-y", "5..2"],
        ["resubmit", "-y", "/missing"],
        ["wait", "99"],
        ["rm", "-y", "99"],
        ["rm", "-y", "/a"],
        ["rm", "-r", "-y", "/"],
        ["mkdir", "/a"],
        ["mkdir", "123"],
        ["mkdir", "/x/y"],
        ["mv", "/a", "/a/sub"],
        ["mv", "1", "/missing"],
        ["create-job", "-f", "/missing", "true"],
        ["create-job", "--profile", "gpu", "true"],
    ],
)
def test_cli_bad_input_is_one_line_and_changes_nothing(
    tree: dict[str, Any], kong_home: Path, argv: list[str]
) -> None:
    db.dispose()
    before = snapshot(kong_home)
    proc = subprocess.run(
        [*KONG, *argv], capture_output=True, text=True, timeout=60, env={**os.environ},
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kong: error: ")
    assert snapshot(kong_home) == before


def test_module_level_get_instance(kong_home: Path) -> None:
    import kong

    state = kong.get_instance()
    assert isinstance(state, State)
    assert state.cwd.path == "/"
    assert state.profile == "local"
    with pytest.raises(ConfigError):
        kong.get_instance(profile="nope")


def test_jobs_removed_by_another_process_while_refreshing_and_waiting(
    state: State, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    keep = state.create_job(command=f"while [ ! -e {gate} ]; do sleep 0.05; done")
    drop = state.create_job(command="sleep 30")
    state.submit_job([keep.job_id, drop.job_id])
    state.refresh_jobs([keep, drop])
    progress = state.wait([keep.job_id, drop.job_id], notify=False, poll_interval=0.05,
                          timeout=30, progress=True)
    assert progress is not None
    steps = iter(progress)
    assert ids(next(steps)) == [keep.job_id, drop.job_id]
    proc = subprocess.run(
        [*KONG, "rm", "-y", str(drop.job_id)], capture_output=True, text=True, timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr
    # refreshing a job that is gone is no error, and writes nothing back
    state.refresh_jobs([keep, drop])
    # the wait stops waiting for the removed job and ends when the other one does
    assert ids(next(steps)) == [keep.job_id]
    gate.touch()
    last = list(steps)[-1]
    assert ids(last) == [keep.job_id]
    assert keep.status == JobStatus.COMPLETED
    assert ids(state.ls()[1]) == [keep.job_id]
