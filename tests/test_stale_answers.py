"""A scheduler's answer is about one attempt of a job. Another kong process that
resubmits or removes the job while this one's status query is in flight must keep
what it wrote: the old attempt's end is not written over the new attempt.

Two OS processes on one real SQLite file: ``kong update`` (process A) refreshes, its
status query held in flight by the fault-injecting Slurm stand-in (tests/faultsched.py,
``hang_status``: a real scheduler cannot be made to answer late on cue); the test
process (B) changes the job meanwhile, then A is let go.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kong.model.job import Job, JobStatus
from kong.state import State
from tests.faultsched import FaultScheduler, await_condition
from tests.kongcmd import KONG


@pytest.fixture
def state(fault_slurm: FaultScheduler) -> State:
    return State.get_instance()


def held_update(sched: FaultScheduler, job: Job) -> subprocess.Popen[str]:
    """``kong update JOB`` in its own process, held in its status query."""
    sched.control(hang_status=1)
    proc = subprocess.Popen([*KONG, "update", str(job.job_id)], env=sched.env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    await_condition(lambda: sched.status_hanging or proc.poll() is not None,
                    what="kong update's status query to hang")
    assert proc.poll() is None, proc.communicate()
    return proc


def let_go(sched: FaultScheduler, proc: subprocess.Popen[str]) -> str:
    """Release the held query; what kong update printed (it must succeed)."""
    sched.release_status()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return out


def ended_first_attempt(sched: FaultScheduler, state: State, marker: Path) -> Job:
    """A submitted job whose first attempt failed (exit 3) on the cluster, unseen by
    kong; a later attempt sleeps."""
    job = state.create_job(
        command=f"if [ -e {marker} ]; then sleep 60; else touch {marker}; exit 3; fi")
    state.submit_job(job)
    first = job.batch_job_id
    assert first is not None
    await_condition(lambda: sched.state(first) == "FAILED", what="the first attempt to end")
    assert job.status == JobStatus.SUBMITTED
    return job


def test_a_refresh_in_flight_does_not_overwrite_another_process_resubmit(
    fault_slurm: FaultScheduler, state: State, tmp_path: Path
) -> None:
    """A asks the scheduler about attempt 1; B resubmits meanwhile; A's answer (attempt
    1 failed, exit 3) is not written over attempt 2: the job shows B's new batch id,
    not finished, no exit code, attempt 1 in its history, in the database and in A's
    own summary."""
    job = ended_first_attempt(fault_slurm, state, tmp_path / "first-ran")
    first = job.batch_job_id
    updater = held_update(fault_slurm, job)
    state.resubmit_job(job)
    second = job.batch_job_id
    assert second is not None and second != first
    printed = let_go(fault_slurm, updater)
    (seen,) = state.get_jobs(job.job_id)
    state.load_data([seen])
    assert seen.batch_job_id == second
    assert seen.status in (JobStatus.SUBMITTED, JobStatus.RUNNING)
    assert seen.data.get("exit_code") is None and seen.data.get("end_reason") is None
    assert seen.data["attempt"] == 2
    assert [h["batch_job_id"] for h in seen.data["history"]] == [first]
    assert "failed" not in printed and ("submitted" in printed or "running" in printed)


def test_a_refresh_in_flight_of_a_job_another_process_removed(
    fault_slurm: FaultScheduler, state: State, tmp_path: Path
) -> None:
    """B removes the job while A's query is in flight: A neither fails nor brings the
    row back."""
    job = ended_first_attempt(fault_slurm, state, tmp_path / "first-ran")
    job_id = job.job_id
    updater = held_update(fault_slurm, job)
    state.rm(str(job_id))
    let_go(fault_slurm, updater)
    with pytest.raises(Job.DoesNotExist):
        state.get_jobs(job_id)
