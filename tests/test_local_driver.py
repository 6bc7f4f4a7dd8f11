"""The local driver: real background processes on this machine.

What a user notices: the job's environment, its logs and output size, exit codes,
kill, jobs that outlive the kong process that started them, ``max_parallel``, and
that a bulk operation costs the same few commands whatever the number of jobs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kong.remote
from kong.config import Config
from kong.model import Job, JobStatus
from kong.state import State
from tests.fixtures_state import write_config
from tests.kongcmd import KONG


def finish(state: State, jobs: list[Job], timeout: int = 30) -> None:
    state.wait([j.job_id for j in jobs], notify=False, timeout=timeout, poll_interval=0.05)


def until(state: State, job: Job, status: JobStatus, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while job.status != status:
        assert time.monotonic() < deadline, f"job {job.job_id} is {job.status}, not {status}"
        time.sleep(0.05)
        state.refresh_jobs([job])


def round_trips(state: State, profile: str = "local") -> int:
    return kong.remote.transport_for(state.config.profile(profile)).stats.round_trips


# -- what a job sees ---------------------------------------------------------------------


def test_job_environment(state: State, tmp_path: Path) -> None:
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    job = state.create_job(
        command='env | grep "^KONG_JOB_\\|^MY_VAR=" | sort > "$KONG_JOB_OUTPUT_DIR/env"; '
        'test -d "$KONG_JOB_SCRATCHDIR" && echo "$KONG_JOB_SCRATCHDIR" > '
        '"$KONG_JOB_OUTPUT_DIR/scratch"; pwd > "$KONG_JOB_OUTPUT_DIR/pwd"',
        cores=3,
        cwd=str(workdir),
        env={"MY_VAR": "a 'quoted' $value"},
    )
    state.submit_job(job.job_id)
    finish(state, [job])
    assert job.status == JobStatus.COMPLETED
    out = Path(job.output_dir)
    env = dict(line.split("=", 1) for line in (out / "env").read_text().splitlines())
    assert env["KONG_JOB_ID"] == str(job.job_id)
    assert env["KONG_JOB_OUTPUT_DIR"] == job.output_dir
    assert env["KONG_JOB_LOG_DIR"] == job.log_dir
    assert env["KONG_JOB_NPROC"] == "3"
    assert env["MY_VAR"] == "a 'quoted' $value"
    scratch = (out / "scratch").read_text().strip()
    assert scratch == env["KONG_JOB_SCRATCHDIR"]
    assert not Path(scratch).exists()  # scratch is cleaned up when the job ends
    assert (out / "pwd").read_text().strip() == str(workdir)


def test_job_runs_in_the_directory_it_was_created_from(
    state: State, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    job = state.create_job(command="pwd")
    state.submit_job(job)
    finish(state, [job])
    with job.stdout() as fh:
        assert fh.read().strip() == str(tmp_path)


def test_stdout_stderr_and_size(state: State) -> None:
    job = state.create_job(
        command='echo "hello out"; echo "hello err" >&2; '
        'head -c 10000 /dev/zero > "$KONG_JOB_OUTPUT_DIR/blob"'
    )
    with job.stdout() as fh:
        assert fh.read() == ""  # nothing yet, and no error
    state.submit_job(job)
    finish(state, [job])
    with job.stdout() as out, job.stderr() as err:
        assert out.read() == "hello out\n"
        assert err.read() == "hello err\n"
    assert Path(job.log_dir, "stdout.txt").is_file()
    assert Path(job.output_dir, "blob").stat().st_size == 10000
    size = job.size()
    assert 10000 <= size < 10000 + 16384  # the file, plus the directory entry itself
    assert state.sizes([job]) == {job.job_id: size}


def test_log_and_output_dirs_are_per_job(state: State, kong_home: Path) -> None:
    a = state.create_job(command="true")
    b = state.create_job(command="true")
    assert a.log_dir != b.log_dir and a.output_dir != b.output_dir
    for job in (a, b):
        assert job.log_dir.startswith(str(kong_home))
        assert Path(job.log_dir).parent == Path(job.output_dir).parent


# -- exit codes and kill ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "status", "exit_code"),
    [
        ("true", JobStatus.COMPLETED, 0),
        ("exit 1", JobStatus.FAILED, 1),
        ("exit 42", JobStatus.FAILED, 42),
        ("false; echo still-ok", JobStatus.COMPLETED, 0),
        ("no-such-command-kong", JobStatus.FAILED, 127),
        ("kill -9 $$", JobStatus.FAILED, 137),
    ],
)
def test_exit_codes(state: State, command: str, status: JobStatus, exit_code: int) -> None:
    job = state.create_job(command=command)
    state.submit_job(job)
    finish(state, [job])
    assert job.status == status
    assert state.job_data([job.job_id], ["exit_code"])[job.job_id]["exit_code"] == exit_code


def test_status_goes_submitted_running_completed(state: State, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    job = state.create_job(command=f"while [ ! -e {gate} ]; do sleep 0.05; done")
    assert job.status == JobStatus.CREATED
    state.submit_job(job)
    assert job.status == JobStatus.SUBMITTED
    until(state, job, JobStatus.RUNNING)
    gate.touch()
    until(state, job, JobStatus.COMPLETED)


def test_kill_running_and_queued(kong_home: Path, tmp_path: Path) -> None:
    write_config(kong_home, "profiles:\n  local:\n    driver: local\n    max_parallel: 1\n")
    state = State.get_instance()
    marker = tmp_path / "queued-ran"
    running = state.create_job(command="sleep 30")
    queued = state.create_job(command=f"touch {marker}")
    state.submit_job([running.job_id, queued.job_id])
    until(state, running, JobStatus.RUNNING)
    state.refresh_jobs([queued])
    assert queued.status == JobStatus.SUBMITTED  # waits for the one slot
    killed = state.kill_job([running.job_id, queued.job_id])
    assert {j.job_id for j in killed} == {running.job_id, queued.job_id}
    assert running.status == JobStatus.FAILED and queued.status == JobStatus.FAILED
    time.sleep(0.5)
    state.refresh_jobs([running, queued])
    assert running.status == JobStatus.FAILED and queued.status == JobStatus.FAILED
    assert not marker.exists()  # the queued job never ran


# -- jobs outlive kong --------------------------------------------------------------------


SUBMITTER = """
import sys, time, kong
state = kong.get_instance()
job = state.create_job(command=sys.argv[1])
state.submit_job(job)
print(job.job_id, flush=True)
time.sleep(60)
"""


def test_job_outlives_the_kong_process_that_submitted_it(kong_home: Path, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    command = f'while [ ! -e {gate} ]; do sleep 0.05; done; echo "survived"'
    proc = subprocess.Popen(
        [sys.executable, "-c", SUBMITTER, command],
        stdout=subprocess.PIPE, text=True, env={**os.environ}, start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        job_id = int(proc.stdout.readline())
    finally:
        # as if its terminal closed: the whole process group dies at once
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # a new kong process finds the job again, still running
    state = State.get_instance()
    job = state.get_jobs(job_id)[0]
    until(state, job, JobStatus.RUNNING)
    gate.touch()
    cli = subprocess.run(
        [*KONG, "wait", str(job_id)], capture_output=True, text=True, timeout=60,
        env={**os.environ},
    )
    assert cli.returncode == 0, cli.stderr
    state.refresh_jobs([job])
    assert job.status == JobStatus.COMPLETED
    with job.stdout() as fh:
        assert fh.read() == "survived\n"


# -- max_parallel ------------------------------------------------------------------------


def _intervals(jobs: list[Job]) -> list[tuple[float, float]]:
    out = []
    for job in jobs:
        start, end = Path(job.output_dir, "t").read_text().split()
        out.append((float(start), float(end)))
    return out


def test_max_parallel(kong_home: Path) -> None:
    write_config(kong_home, "profiles:\n  local:\n    driver: local\n    max_parallel: 2\n")
    state = State.get_instance()
    command = (
        's=$(date +%s.%N); sleep 0.4; echo "$s $(date +%s.%N)" > "$KONG_JOB_OUTPUT_DIR/t"'
    )
    first = [state.create_job(command=command) for _ in range(4)]
    second = [state.create_job(command=command) for _ in range(3)]
    # two separate submits (two runners): the limit holds across them
    state.submit_job([j.job_id for j in first])
    state.submit_job([j.job_id for j in second])
    jobs = first + second
    finish(state, jobs)
    assert {j.status for j in jobs} == {JobStatus.COMPLETED}
    intervals = _intervals(jobs)
    overlap = max(
        sum(1 for s, e in intervals if s <= start < e) for start, _ in intervals
    )
    assert overlap == 2, intervals  # never more than 2, and 2 were used
    span = max(e for _, e in intervals) - min(s for s, _ in intervals)
    assert span >= 0.4 * 7 / 2 - 0.05  # at least ceil(7/2)*0.4 s of work in 2 lanes


# -- bulk: a few commands whatever the number of jobs --------------------------------------


def test_bulk_operations_cost_the_same_round_trips_for_2_or_50_jobs(state: State) -> None:
    cost: dict[int, dict[str, int]] = {}
    for n in (2, 50):
        folder = state.mkdir(f"/n{n}")
        assert folder is not None
        jobs = [state.create_job(command="sleep 30", folder=folder) for _ in range(n)]
        costs: dict[str, int] = {}
        before = round_trips(state)
        state.submit_job(folder.path)
        costs["submit"] = round_trips(state) - before
        before = round_trips(state)
        state.refresh_jobs(jobs)
        costs["refresh"] = round_trips(state) - before
        before = round_trips(state)
        state.sizes(jobs)
        costs["sizes"] = round_trips(state) - before
        before = round_trips(state)
        state.kill_job(folder.path)
        costs["kill"] = round_trips(state) - before
        before = round_trips(state)
        state.resubmit_job(folder.path)
        costs["resubmit"] = round_trips(state) - before
        state.kill_job(folder.path)
        before = round_trips(state)
        state.rm(folder.path, recursive=True)
        costs["rm"] = round_trips(state) - before
        cost[n] = costs
    assert cost[2] == cost[50], cost
    assert cost[50]["submit"] <= 2 and cost[50]["refresh"] == 1 and cost[50]["kill"] == 1


def test_jobs_of_two_profiles_go_to_each_driver_once(kong_home: Path) -> None:
    write_config(
        kong_home,
        "profiles:\n  one:\n    driver: local\n  two:\n    driver: local\n"
        "    max_parallel: 4\n",
    )
    state = State.get_instance(profile="one")
    jobs = [state.create_job(command="true", profile=p) for p in ["one", "two"] * 10]
    assert {j.profile for j in jobs} == {"one", "two"}
    # both profiles run on this machine, so they share the one local transport
    assert kong.remote.transport_for(state.config.profile("one")) is kong.remote.transport_for(
        state.config.profile("two")
    )
    before = round_trips(state, "one")
    state.submit_job("/")
    submit_cost = round_trips(state, "one") - before
    finish(state, jobs)
    assert {j.status for j in jobs} == {JobStatus.COMPLETED}

    solo = State.get_instance(profile="one")
    solo_jobs = [solo.create_job(command="true", folder="/") for _ in range(3)]
    before = round_trips(state, "one")
    solo.submit_job([j.job_id for j in solo_jobs])
    one_profile_cost = round_trips(state, "one") - before
    assert submit_cost == 2 * one_profile_cost


def test_driver_options_are_checked_per_job(state: State) -> None:
    job = state.create_job(command="true", max_parallel=1)
    assert state.default_driver.job_options(job) == {"max_parallel": 1}
    assert Config(data={}).profile().options == {}


def test_vanished_runner_means_unknown_not_completed(kong_home: Path) -> None:
    """Absence is not completion: jobs whose runner died (a reboot) become UNKNOWN."""
    write_config(kong_home, "profiles:\n  local:\n    driver: local\n    max_parallel: 1\n")
    state = State.get_instance()
    running = state.create_job(command="sleep 30")
    queued = state.create_job(command="true")
    state.submit_job([running.job_id, queued.job_id])
    until(state, running, JobStatus.RUNNING)
    job_dir = Path(running.log_dir).parent
    runner_pid = int(Path(queued.log_dir).parent.joinpath("state").read_text().split()[1])
    job_pid = int(job_dir.joinpath("state").read_text().split()[1])
    os.kill(runner_pid, signal.SIGKILL)
    os.killpg(job_pid, signal.SIGKILL)  # the job's whole session, before its trap runs
    deadline = time.monotonic() + 10
    while {running.status, queued.status} != {JobStatus.UNKNOWN}:
        assert time.monotonic() < deadline, (running.status, queued.status)
        time.sleep(0.1)
        state.refresh_jobs([running, queued])
    assert not job_dir.joinpath("exit_code").exists()


def test_several_local_profiles_submitted_at_once(kong_home: Path) -> None:
    """Profiles run concurrently (one thread each); on one host they share the runner."""
    names = ["p1", "p2", "p3", "p4"]
    write_config(kong_home, "profiles:\n" + "".join(f"  {n}:\n    driver: local\n" for n in names))
    state = State.get_instance(profile="p1")
    for attempt in range(3):
        folder = f"/try{attempt}"
        state.mkdir(folder)
        jobs = [state.create_job(command="true", profile=p, folder=folder) for p in names * 5]
        state.submit_job(folder)
        finish(state, jobs)
        assert {j.status for j in jobs} == {JobStatus.COMPLETED}
