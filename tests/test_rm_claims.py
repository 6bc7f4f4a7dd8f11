"""An ``rm`` claims its jobs before it stops them and deletes their files: another
kong process cannot start a new attempt of a claimed job (whose files the rm is about
to delete), and an rm cut short by kill -9 is finished by the next ``rm``.

Two OS processes on one real SQLite file: ``kong rm`` (process A), its kill held in
flight by the fault-injecting Slurm stand-in (tests/faultsched.py, ``hang_kill``: a
real scheduler cannot be made to answer a kill late on cue); the test process (B)
tries to run the job again meanwhile.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from kong.errors import DriverError
from kong.lifecycle.attempt import Attempt
from kong.model.job import Job, JobStatus
from kong.state import State
from tests.faultsched import FaultScheduler, await_condition
from tests.kongcmd import KONG


@pytest.fixture
def state(fault_slurm: FaultScheduler) -> State:
    return State.get_instance()


def kong(sched: FaultScheduler, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KONG, *args], env=sched.env(), text=True, capture_output=True,
                          timeout=60)


def held_rm(sched: FaultScheduler, job: Job) -> subprocess.Popen[str]:
    """``kong rm -y JOB`` in its own process, held in its kill (scancel)."""
    sched.control(hang_kill=1)
    proc = subprocess.Popen([*KONG, "rm", "-y", str(job.job_id)], env=sched.env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    await_condition(lambda: sched.kill_hanging or proc.poll() is not None,
                    what="kong rm's kill to hang")
    assert proc.poll() is None, proc.communicate()
    return proc


def running_job(sched: FaultScheduler, state: State) -> Job:
    job = state.create_job(command="sleep 60")
    state.submit_job(job)
    batch_id = job.batch_job_id
    assert batch_id is not None


    def started() -> bool:
        state.refresh_jobs([job])  # the stand-in starts its pending jobs in squeue
        return sched.state(batch_id) == "RUNNING"

    await_condition(started, what="the job to run")
    return job


def assert_gone(sched: FaultScheduler, state: State, job: Job, job_dir: Path) -> None:
    with pytest.raises(Job.DoesNotExist):
        state.get_jobs(job.job_id)
    assert not job_dir.exists()
    await_condition(lambda: sched.live() == [], what="nothing left running")
    assert len(sched.jobs()) == 1  # no second attempt ever reached the scheduler


def test_no_new_attempt_of_a_job_another_process_is_removing(
    fault_slurm: FaultScheduler, state: State
) -> None:
    """B's resubmit of a job A's rm has claimed is refused with one line; ls and info
    say "removing"; A then removes everything: row, files, the job on the cluster."""
    job = running_job(fault_slurm, state)
    job_dir = Path(job.log_dir).parent
    remover = held_rm(fault_slurm, job)
    with pytest.raises(DriverError, match=f"job {job.job_id}: being removed by another "
                                          "kong process"):
        state.resubmit_job(job)
    listing = kong(fault_slurm, "ls")
    assert "removing" in listing.stdout, listing
    info = kong(fault_slurm, "info", str(job.job_id))
    assert "being removed by another kong process" in info.stdout, info
    fault_slurm.release_kill()
    _out, err = remover.communicate(timeout=60)
    assert remover.returncode == 0, err
    assert_gone(fault_slurm, state, job, job_dir)


def test_an_rm_killed_mid_way_is_finished_by_the_next_rm(
    fault_slurm: FaultScheduler, state: State
) -> None:
    """kill -9 of rm while it stops the job: the job is left claimed (resubmit and
    submit say to run rm again, in one line), and the next rm removes it all."""
    job = running_job(fault_slurm, state)
    job_dir = Path(job.log_dir).parent
    remover = held_rm(fault_slurm, job)
    os.kill(remover.pid, signal.SIGKILL)
    remover.wait()
    again = kong(fault_slurm, "resubmit", "-y", str(job.job_id))
    assert again.returncode != 0
    assert again.stderr.strip().splitlines() == [
        f"kong: error: 1 of 1 job(s) could not be resubmitted: an earlier rm of job {job.job_id} "
        "was cut short: run rm again"], again.stderr
    assert "removing" in kong(fault_slurm, "ls").stdout
    (seen,) = state.get_jobs(job.job_id)
    assert seen.status in (JobStatus.SUBMITTED, JobStatus.RUNNING)  # still claimed, unkilled
    finish = kong(fault_slurm, "rm", "-y", str(job.job_id))  # its scancel is not held
    assert finish.returncode == 0, finish.stderr
    assert_gone(fault_slurm, state, job, job_dir)
    fault_slurm.release_kill()  # the killed rm's scancel, left waiting: nothing left to do


def claimed_by_this_process(job: Job) -> None:
    """Claim the job as an rm does first (this test process standing for an rm
    between its claim and its end), for the kong processes the test starts."""
    from kong.lifecycle.attempt import removal_mark
    from kong.lifecycle.removing import claim

    problems: list[str] = []
    assert claim([job], {job.job_id: Attempt.of(job)}, removal_mark(), problems) == [job]
    assert problems == []


def test_a_claimed_job_is_not_submitted_and_rm_takes_the_claim_over(
    fault_slurm: FaultScheduler, state: State
) -> None:
    job = state.create_job(command="true")
    job_dir = Path(job.log_dir).parent
    claimed_by_this_process(job)
    refused = kong(fault_slurm, "submit", str(job.job_id))
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        f"kong: error: 1 of 1 job(s) could not be submitted: job {job.job_id}: being "
        "removed by another kong process"], refused.stderr
    assert fault_slurm.submits == 0
    removed = kong(fault_slurm, "rm", "-y", str(job.job_id))
    assert removed.returncode == 0, removed.stderr
    with pytest.raises(Job.DoesNotExist):
        state.get_jobs(job.job_id)
    assert not job_dir.exists()


def test_a_claimed_job_that_ends_is_not_retried(
    fault_slurm: FaultScheduler, state: State
) -> None:
    """A retry policy does not run a job again once an rm has claimed it."""
    job = state.create_job(command="exit 3", retry={"on": ["EXIT(3)"], "max": 2})
    state.submit_job(job)
    batch_id = job.batch_job_id
    assert batch_id is not None
    claimed_by_this_process(job)
    updated = kong(fault_slurm, "wait", str(job.job_id))
    # not retried, and not a retry refused either: the claim is simply respected
    assert "Traceback" not in updated.stderr and "resubmit" not in updated.stderr, updated
    (seen,) = state.get_jobs(job.job_id)
    state.load_data([seen])
    assert seen.status == JobStatus.FAILED and seen.batch_job_id == batch_id
    assert seen.data["attempt"] == 1 and not seen.data.get("history")
    assert len(fault_slurm.jobs()) == 1


def test_an_rm_of_this_process_cut_short_says_so_here_too(
    fault_slurm: FaultScheduler, state: State
) -> None:
    """A claim this very process left (an rm stopped by Ctrl-C in the shell) is an rm
    cut short, not "another kong process"; rm finishes it."""
    job = state.create_job(command="true")
    claimed_by_this_process(job)  # made, as by an rm, but no rm of this process runs
    with pytest.raises(DriverError, match=f"an earlier rm of job {job.job_id} was cut "
                                          "short: run rm again"):
        state.submit_job(job)
    assert fault_slurm.submits == 0
    state.rm(job)
    with pytest.raises(Job.DoesNotExist):
        state.get_jobs(job.job_id)
