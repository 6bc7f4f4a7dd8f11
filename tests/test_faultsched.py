"""Issue 15's faults, each hit on cue by the fault-injecting Slurm (tests/faultsched.py),
in seconds and without containers. Each docstring names the bullet of the issue's
first list it covers; tests/test_driver_contract.py runs the same behaviour on the
real Slurm test cluster."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from kong.drivers import batch, lsf
from kong.errors import DriverError, NoSuchFolder
from kong.model.job import Job, JobStatus
from kong.state import State
from tests.faultsched import SCRIPTS, FaultScheduler, await_condition, crash_mid_submit
from tests.kongcmd import KONG


@pytest.fixture
def state(fault_slurm: FaultScheduler) -> State:
    return State.get_instance()


def appending_jobs(state: State, runs: Path, n: int, folder: str = "/f") -> list[Job]:
    """Jobs that each append their KONG_JOB_ID to ``runs``."""
    state.mkdir(folder, exist_ok=True)
    return [state.create_job(command=f'echo "$KONG_JOB_ID" >> {runs}', folder=folder)
            for _ in range(n)]


def ran(runs: Path) -> list[int]:
    return sorted(int(x) for x in runs.read_text().split()) if runs.exists() else []


def test_crash_mid_submit_then_rm_leaves_nothing_on_the_cluster(
    fault_slurm: FaultScheduler, state: State, tmp_path: Path
) -> None:
    """Bullet "Orphans": kill -9 of a bulk submit once some jobs reached the cluster,
    then rm -r of the folder from a new process: nothing of it left on the cluster."""
    fault_slurm.control(hang_at=4)
    state.mkdir("/f")
    for _ in range(8):
        state.create_job(command="sleep 60", folder="/f")
    crash_mid_submit(fault_slurm)
    assert len(fault_slurm.live()) == 3
    fault_slurm.release()  # the orphaned loop submits one more, then dies writing
    state.rm("/f", recursive=True)
    assert fault_slurm.jobs()  # something had reached the cluster ...
    assert fault_slurm.live() == []  # ... and nothing of it is left
    with pytest.raises(NoSuchFolder):  # the folder is gone
        state.get_folders("/f")


def test_crash_then_submit_again_runs_every_job_exactly_once(
    fault_slurm: FaultScheduler, state: State, tmp_path: Path
) -> None:
    """Bullet "Double submit window": after a crash mid-submit, submitting again adopts
    what reached the cluster and submits the rest: every job runs exactly once."""
    runs = tmp_path / "runs.txt"
    fault_slurm.control(hang_at=4)
    jobs = appending_jobs(state, runs, 8)
    crash_mid_submit(fault_slurm)
    fault_slurm.release()
    state.submit_job("/f", recursive=True)
    state.wait("/f", recursive=True, notify=False, timeout=60, poll_interval=0.1)
    assert all(j.status == JobStatus.COMPLETED for j in jobs)
    assert ran(runs) == sorted(j.job_id for j in jobs)
    assert len(fault_slurm.jobs()) == 8


def test_sbatch_exit_0_without_an_id_is_not_submitted_again(
    fault_slurm: FaultScheduler, state: State
) -> None:
    """Bullet "Double submit window" (sbatch exit 0 with unparseable output): kong says
    it cannot know, submits nothing again, wait does not take the job for done, and
    submit --force submits it as a new attempt."""
    fault_slurm.control(noise=1, noise_defer=1)
    job = state.create_job(command="true")
    with pytest.raises(DriverError, match="cannot tell whether it was submitted"):
        state.submit_job(job)
    assert job.status == JobStatus.CREATED and job.data["submitting"]
    assert "600 seconds" in job.data["submit_unclear"]
    with pytest.raises(DriverError, match="cannot tell whether it was submitted"):
        state.submit_job(job)
    assert fault_slurm.submits == 1
    with pytest.raises(DriverError, match="cannot be waited for"):
        state.wait(job, notify=False, timeout=10, poll_interval=0.1)
    fault_slurm.control(noise=0, noise_defer=0)
    state.submit_job(job, force=True)
    assert job.status == JobStatus.SUBMITTED and fault_slurm.submits == 2
    assert job.data["history"][-1]["status"] == "UNCLEAR"


def test_sbatch_exit_0_with_noise_and_the_job_queued_is_adopted_by_its_token(
    fault_slurm: FaultScheduler, state: State
) -> None:
    """Bullet "Double submit window": the job a noisy sbatch did queue is found by its
    token, not submitted again."""
    fault_slurm.control(noise=1)
    job = state.create_job(command="true")
    state.submit_job(job)
    assert job.status == JobStatus.SUBMITTED and job.data.get("reconciled")
    assert job.batch_job_id in fault_slurm.jobs()
    assert fault_slurm.submits == 1


def test_failed_submits_after_n_are_not_lost(
    fault_slurm: FaultScheduler, state: State, tmp_path: Path
) -> None:
    """Bullet "Double submit window": sbatch refusing the jobs after the 3rd leaves
    those CREATED (nothing in flight); submitting again runs each job once."""
    runs = tmp_path / "runs.txt"
    fault_slurm.control(fail_after=3)
    jobs = appending_jobs(state, runs, 5)
    with pytest.raises(DriverError, match=r"2 of 5 job\(s\) could not be submitted"):
        state.submit_job("/f")
    assert [j.status for j in jobs].count(JobStatus.CREATED) == 2
    assert not any(j.data.get("submitting") for j in jobs)
    fault_slurm.control(fail_after=0)
    state.submit_job("/f")
    state.wait("/f", notify=False, timeout=60, poll_interval=0.1)
    assert ran(runs) == sorted(j.job_id for j in jobs)


def test_forgotten_history_is_not_taken_for_never_submitted(
    fault_slurm: FaultScheduler, state: State, tmp_path: Path
) -> None:
    """Bullet "Double submit window" (a token the scheduler has forgotten: Slurm
    without accounting after MinJobAge): kong says it cannot know, does not submit
    again; the job ran once."""
    runs = tmp_path / "runs.txt"
    fault_slurm.control(hang_at=1)
    (job,) = appending_jobs(state, runs, 1)
    crash_mid_submit(fault_slurm)
    fault_slurm.control(forget=1, sacct="off", min_job_age=0)
    fault_slurm.release()
    await_condition(lambda: ran(runs) == [job.job_id], what="the job to run")
    await_condition(lambda: fault_slurm.live() == [], what="the job to end")
    with pytest.raises(DriverError, match="cannot tell whether it was submitted"):
        state.submit_job(job)
    db_job = state.get_jobs(job.job_id)[0]
    assert db_job.status == JobStatus.CREATED and db_job.data["submit_unclear"]
    assert fault_slurm.submits == 1 and ran(runs) == [job.job_id]


def test_scancel_permission_denied_keeps_the_job_and_says_why(
    fault_slurm: FaultScheduler, state: State
) -> None:
    """Bullet "Kill trusts itself": scancel refused (permission denied): the job keeps
    running and its status; one error line says which job and why."""
    job = state.create_job(command="sleep 60")
    state.submit_job(job)
    state.refresh_jobs([job])
    assert job.status == JobStatus.RUNNING
    fault_slurm.control(denied=1)
    with pytest.raises(DriverError, match=rf"job {job.job_id}: .*refused.*permission denied"):
        state.kill_job(job)
    assert job.status == JobStatus.RUNNING
    state.refresh_jobs([job])
    assert job.status == JobStatus.RUNNING and fault_slurm.live() == [job.batch_job_id]


def test_kill_of_a_job_that_already_finished_keeps_completed(
    fault_slurm: FaultScheduler, state: State
) -> None:
    """Bullet "Kill trusts itself": killing a job that already ended (kong had not
    seen it yet) keeps COMPLETED and its exit code."""
    job = state.create_job(command="true")
    state.submit_job(job)
    assert job.batch_job_id is not None
    batch_id = job.batch_job_id
    await_condition(lambda: fault_slurm.state(batch_id) == "COMPLETED", what="the job to end")
    assert job.status == JobStatus.SUBMITTED
    state.kill_job(job)
    assert job.status == JobStatus.COMPLETED and job.data["exit_code"] == 0


def test_a_kill_of_more_ids_than_a_chunk_is_one_scancel_per_chunk(
    fault_slurm: FaultScheduler, state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill names at most KILL_CHUNK ids per scancel (here 2: 5 jobs, 3 scancels, one
    round trip), each job answered by its chunk's words."""
    monkeypatch.setattr(batch, "KILL_CHUNK", 2)
    jobs = [state.create_job(command="sleep 60") for _ in range(5)]
    state.submit_job(jobs)
    log = fault_slurm.dir / "scancel.log"
    before = log.read_text().splitlines() if log.exists() else []
    driver = state.default_driver
    trips = driver.transport.stats.round_trips
    answers = driver.kill(jobs)
    assert driver.transport.stats.round_trips - trips == 1
    calls = log.read_text().splitlines()[len(before):]
    assert [len(c.split()) for c in calls] == [3, 3, 2], calls  # -v and the ids
    assert {a.outcome.value for a in answers.values()} == {"killed"}
    assert len(answers) == 5


def test_an_end_seen_before_its_exit_code_takes_the_code_from_the_job(
    fault_slurm: FaultScheduler, state: State
) -> None:
    """A scheduler view that has a job's end but not yet its exit code (accounting
    answers 0:0 for a job that exited 3) must not settle it without one: a finished
    job is never asked again. The code comes from the job's own exit_code file."""
    fault_slurm.control(exitcode_lag=1)
    jobs = [state.create_job(command=f"exit {code}") for code in (0, 3)]
    state.submit_job(jobs)
    state.wait(jobs, notify=False, timeout=60)
    assert [j.data["exit_code"] for j in jobs] == [0, 3]
    assert [j.status for j in jobs] == [JobStatus.COMPLETED, JobStatus.FAILED]
    assert [j.data["end_reason"] for j in jobs] == ["EXIT(0)", "EXIT(3)"]


def test_killed_job_reads_failed_at_once_and_after_refresh(
    fault_slurm: FaultScheduler, state: State
) -> None:
    """Bullet "Kill trusts itself": a job the scheduler killed is FAILED when kill_job
    returns (as in kong-batch), and stays FAILED."""
    job = state.create_job(command="sleep 60")
    state.submit_job(job)
    state.kill_job(job)
    assert job.status == JobStatus.FAILED and job.data["killed"]
    assert job.batch_job_id is not None
    assert fault_slurm.state(job.batch_job_id) == "CANCELLED"
    state.refresh_jobs([job])
    assert job.status == JobStatus.FAILED and job.data["reason"] == "killed by kong"
    assert job.data["end_reason"] == "CANCELLED"


def test_resubmit_of_a_running_job_is_a_clean_new_attempt(
    fault_slurm: FaultScheduler, state: State, tmp_path: Path
) -> None:
    """Bullet "Stale rerun": resubmit of a running job whose rerun prints something
    else: the old attempt is killed and confirmed ended, the rerun exits 0 and is
    COMPLETED (no stale `killed` flag), stdout() is the rerun's, the old attempt is in
    the history."""
    marker = tmp_path / "first-ran"
    job = state.create_job(
        command=f"if [ -e {marker} ]; then echo second; else touch {marker}; echo first; "
                "sleep 60; fi")
    state.submit_job(job)
    await_condition(lambda: marker.exists(), what="the first attempt to start")
    first = job.batch_job_id
    assert first is not None
    state.resubmit_job(job)
    assert fault_slurm.state(first) == "CANCELLED"
    state.wait(job, notify=False, timeout=60, poll_interval=0.1)
    assert job.status == JobStatus.COMPLETED and job.data["exit_code"] == 0
    assert "killed" not in job.data
    with job.stdout() as fh:
        assert fh.read() == "second\n"
    assert [h["batch_job_id"] for h in job.data["history"]] == [first]
    assert job.data["history"][0]["status"] == "FAILED"


# -- LSF: a busy mbatchd, and a status script linear in the number of jobs -----------


@pytest.fixture
def lsf_state(kong_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> State:
    """The lsf driver over the local transport, the fault-injecting bjobs on PATH."""
    sched_dir = tmp_path / "faultsched-lsf"
    sched_dir.mkdir()
    monkeypatch.setenv("FAULTSCHED_DIR", str(sched_dir))
    monkeypatch.setenv("PATH", f"{SCRIPTS / 'lsf'}{os.pathsep}{os.environ['PATH']}")
    config = {"default_profile": "l", "profiles": {"l": {
        "driver": "lsf", "remote_dir": str(tmp_path / "cluster")}}}
    (kong_home / "config.yml").write_text(yaml.safe_dump(config))
    return State.get_instance()


def lsf_jobs(n: int, first: int = 1) -> list[Job]:
    return [Job(job_id=i, batch_job_id=str(1000 + i), profile="l", command="true", cores=1,
                status=JobStatus.SUBMITTED, data={"attempt": 1})
            for i in range(first, first + n)]


def test_lsf_cannot_connect_please_wait_is_retried(
    lsf_state: State, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15, "while there": LSF's "Cannot connect to LSF. Please wait ..." is
    retried, not a failed refresh; the noise before an answer is skipped."""
    monkeypatch.setattr(lsf, "NOT_READY_RETRIES", (0.05, 0.05, 0.05))
    (tmp_path / "faultsched-lsf" / "control").write_text("not_ready=2\n")
    infos = lsf_state.driver("l").query(lsf_jobs(3))
    assert sorted(infos) == ["1001", "1002", "1003"]
    assert all(i.status == JobStatus.COMPLETED for i in infos.values())
    assert (tmp_path / "faultsched-lsf" / "bjobs_calls").read_text().strip() == "3"


def test_lsf_status_script_is_linear_in_the_number_of_jobs(lsf_state: State) -> None:
    """Issue 15, "while there": 1,000 / 2,000 / 4,000 jobs (it was 0.86 / 2.6 / 15.8 s:
    quadratic). Four times the jobs may take at most about four times as long."""
    driver = lsf_state.driver("l")
    times = {}
    for n in (1000, 2000, 4000):
        jobs = lsf_jobs(n)
        best = float("inf")
        for _ in range(3):  # the best of three: the machine is shared
            start = time.perf_counter()
            infos = driver.query(jobs)
            best = min(best, time.perf_counter() - start)
            assert len(infos) == n
        times[n] = best
    print("LSF status script:", {n: round(t, 2) for n, t in times.items()})
    assert times[4000] < 7 * times[1000], times


@pytest.mark.parametrize("fault_slurm", [{"submit_lock_wait": 1}], indirect=True)
def test_a_submit_loop_still_running_keeps_its_jobs_in_flight(
    fault_slurm: FaultScheduler, state: State, tmp_path: Path
) -> None:
    """Bullet "Double submit window" (the earlier loop lives on after its client is
    gone, sbatch still running): kong does not look for tokens as if the loop were
    over; the jobs stay in flight, are not submitted again, wait does not count them
    as done. Once the loop ends, submitting again runs every job exactly once."""
    runs = tmp_path / "runs.txt"
    fault_slurm.control(hang_at=3)
    jobs = appending_jobs(state, runs, 5)
    crash_mid_submit(fault_slurm)
    state.refresh_jobs(jobs)
    # what the scheduler has is adopted; the rest stays in flight, not "never submitted"
    assert all(j.batch_job_id and j.status != JobStatus.CREATED for j in jobs[:2])
    assert all(j.status == JobStatus.CREATED and j.data.get("submitting") for j in jobs[2:])
    with pytest.raises(DriverError, match="still in flight"):
        state.submit_job("/f")
    assert fault_slurm.submits == 3
    with pytest.raises(TimeoutError):
        state.wait("/f", notify=False, timeout=1, poll_interval=0.1)
    fault_slurm.release()  # sbatch returns; the orphaned loop dies at its next write
    await_condition(lambda: fault_slurm.submits == 3 and len(fault_slurm.jobs()) == 3,
                    what="the orphaned loop's last submit")

    def settled() -> bool:
        try:
            state.submit_job("/f")
        except DriverError:
            return False  # the loop had not quite ended yet: still in flight
        return True

    await_condition(settled, what="the earlier loop to end")
    state.wait("/f", notify=False, timeout=60, poll_interval=0.1)
    assert ran(runs) == sorted(j.job_id for j in jobs)
    assert len(fault_slurm.jobs()) == 5


def test_rm_of_a_job_kong_cannot_settle_cancels_it_by_its_token(
    fault_slurm: FaultScheduler, state: State
) -> None:
    """Bullet "Orphans": a job whose submission kong cannot settle (sbatch said 0 with
    no id) may be on the cluster: rm cancels whatever carries its token there (no
    batch id known), then removes it."""
    fault_slurm.control(noise=1, noise_defer=1)
    job = state.create_job(command="sleep 60")
    with pytest.raises(DriverError, match="cannot tell"):
        state.submit_job(job)
    token = job.data["submitting"]
    state.rm(str(job.job_id))
    assert f"--me --name={token}" in (fault_slurm.dir / "scancel.log").read_text()
    with pytest.raises(Job.DoesNotExist):
        state.get_jobs(job.job_id)


def test_kill_by_token_cancels_whatever_carries_it(
    fault_slurm: FaultScheduler, state: State
) -> None:
    """The driver half of the above: a job queued under the token after kong looked
    (a site wrapper that queues later) is cancelled by ``kill_tokens``."""
    fault_slurm.control(noise=1, noise_defer=1, hold=1)
    job = state.create_job(command="sleep 60")
    with pytest.raises(DriverError, match="cannot tell"):
        state.submit_job(job)
    token = job.data["submitting"]
    fault_slurm.control(noise=0, noise_defer=0)
    driver = state.driver("fake")
    late = subprocess.run(["sbatch", "--parsable", driver.job_paths(job).script],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert fault_slurm.jobs() == {late: token} and fault_slurm.live() == [late]
    assert driver.kill_tokens([token])[token].outcome.name == "KILLED"
    assert fault_slurm.state(late) == "CANCELLED"


def test_kong_submit_says_it_cannot_know_in_one_line_and_force_submits(
    fault_slurm: FaultScheduler, state: State
) -> None:
    """The CLI face of "cannot know": one `kong: error:` line, no traceback, nothing
    submitted again; `kong submit --force` submits a new attempt."""
    fault_slurm.control(noise=1, noise_defer=1)
    job = state.create_job(command="true")
    first = subprocess.run([*KONG, "submit", str(job.job_id)], env=fault_slurm.env(),
                           capture_output=True, text=True, timeout=120)
    assert first.returncode != 0
    lines = first.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kong: error: "), first.stderr
    assert "cannot tell whether it was submitted" in lines[0]
    assert "Traceback" not in first.stderr
    again = subprocess.run([*KONG, "submit", str(job.job_id)], env=fault_slurm.env(),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "submit --force" in again.stderr
    assert fault_slurm.submits == 1
    fault_slurm.control(noise=0, noise_defer=0)
    forced = subprocess.run([*KONG, "submit", "--force", str(job.job_id)],
                            env=fault_slurm.env(), capture_output=True, text=True, timeout=120)
    assert forced.returncode == 0, forced.stderr
    assert fault_slurm.submits == 2 and len(fault_slurm.jobs()) == 1
