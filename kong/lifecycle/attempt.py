"""The lifecycle's ground: what a job's row says of its attempt, and reading rows again
inside a write.

An answer from the scheduler is about one attempt (``Attempt``: batch id, attempt
number, submit token); every part of ``kong.lifecycle`` that writes one reads the
rows again inside its ``db.write()`` (``reload_rows``) and applies it only to a job
still on that attempt (``is_current``), so that another kong process's resubmit,
kill or end is never written over.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import undefer

from kong import db
from kong.errors import DriverError
from kong.model.job import Job, JobStatus

#: data keys that belong to one attempt: a resubmit drops them
ATTEMPT_KEYS = (
    "submitting", "submitting_since", "submit_unclear", "submitted_at", "reconciled",
    "scheduler_state", "exit_code", "reason", "killed", "node", "submit_time",
    "start_time", "expected_start", "end_time", "pid", "lost", "end_reason",
    "usage", "retry_note", "retry_claimed",
)


LIVE = (JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.UNKNOWN)


def timestamp() -> str:
    return datetime.now(UTC).isoformat()


class Attempt(NamedTuple):
    """The attempt of a job an answer from the scheduler is about, as it was when kong
    asked: a resubmit changes its batch id and number, a submit its token."""

    batch_job_id: str | None
    number: Any
    token: Any
    finished: bool

    @classmethod
    def of(cls, job: Job) -> Attempt:
        data = job.data or {}
        return cls(job.batch_job_id, data.get("attempt"), data.get("submitting"),
                   job.status.finished)

    def same(self, other: Attempt) -> bool:
        return self[:3] == other[:3]


def attempts_of(jobs: Iterable[Job]) -> dict[int, Attempt]:
    """Each job's attempt now (before a question to the scheduler), by job id."""
    return {job.job_id: Attempt.of(job) for job in jobs}


def reload_rows(jobs: Sequence[Job]) -> set[int]:
    """Inside a ``db.write()``: read the jobs' rows again, ``data`` too, one SELECT per
    chunk, and return the ids of those still there. The write lock is held, so what is
    read is what the block writes over: an answer is applied to what another kong
    process wrote meanwhile (not to this process's older copy), or not at all.

    Rows another kong process removed are dropped from this session: writing to them
    would fail the whole transaction, and with it the jobs that are still there.
    """
    s = db.session()
    ids = [j.job_id for j in jobs]
    left: set[int] = set()
    for start in range(0, len(ids), 5000):
        chunk = ids[start:start + 5000]
        # populate_existing: kong.db's fresh reads are off inside a write
        left.update(job.job_id for job in s.scalars(
            select(Job).where(Job.job_id.in_(chunk)).options(undefer(Job.data))
            .execution_options(populate_existing=True)))
    for job in jobs:
        if job.job_id not in left and job in s:
            s.expunge(job)
    return left


def is_current(job: Job, asked: Mapping[int, Attempt]) -> bool:
    """After ``reload_rows``: whether the job is still on the attempt it was asked about and
    no other kong process settled it meanwhile (an answer about it may be applied)."""
    was = asked.get(job.job_id)
    now = Attempt.of(job)
    return was is not None and was.same(now) and (was.finished or not now.finished)


def in_flight(job: Job) -> bool:
    """Whether a submission of the job was started and its outcome is not known yet."""
    return job.status == JobStatus.CREATED and bool((job.data or {}).get("submitting"))


def settled(job: Job) -> bool:
    """Whether ``wait`` may stop waiting for the job: finished, or never submitted."""
    return job.status.finished or (job.status == JobStatus.CREATED and not in_flight(job))


def unclear_reason(job: Job) -> str | None:
    """Why kong cannot tell whether the job's last submission reached the scheduler."""
    if not in_flight(job):
        return None
    reason = (job.data or {}).get("submit_unclear")
    return str(reason) if reason else None


def undecided_line(job: Job, why: str) -> str:
    if unclear_reason(job):
        return (f"job {job.job_id}: kong cannot tell whether it was submitted ({why}); "
                "not submitted again: check the cluster, then submit --force (or rm)")
    return f"job {job.job_id}: its submission is still in flight ({why}); try again later"


def check_waitable(jobs: Sequence[Job]) -> None:
    """Raise for jobs no wait can see finish: kong cannot tell whether they were submitted."""
    stuck = [(j, why) for j in jobs if (why := unclear_reason(j))]
    if stuck:
        job, why = stuck[0]
        raise DriverError(f"{len(stuck)} job(s) cannot be waited for: {undecided_line(job, why)}")


#: the data key of a job an ``rm`` has claimed: ``{"since", "pid", "host"}`` of that rm
REMOVING = "removing"
#: a removal mark older than this is taken for one whose rm was cut short
REMOVING_STALE_SECONDS = 300.0


#: the marks (their "since") of the rms running in this process now
ACTIVE_REMOVALS: set[str] = set()


def removal_mark() -> dict[str, Any]:
    """The mark this process's ``rm`` puts on the jobs it claims."""
    return {"since": timestamp(), "pid": os.getpid(), "host": socket.gethostname()}


def _process_gone(mark: Mapping[str, Any]) -> bool:
    """Whether the rm that made ``mark`` surely no longer runs (only knowable on this
    host: another host's rm is judged by the mark's age alone)."""
    pid = mark.get("pid")
    if mark.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():  # this process: an rm cut short by Ctrl-C in the shell, say
        return mark.get("since") not in ACTIVE_REMOVALS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def removal_refusal(job: Job) -> str | None:
    """Why no new attempt of the job may start: an ``rm`` claimed it (one line), or
    None. A claim whose process is gone, or that is older than a few minutes, is an rm
    cut short (kill -9, a closed terminal): ``rm`` again finishes it."""
    mark = (job.data or {}).get(REMOVING)
    if not mark:
        return None
    if not isinstance(mark, dict):
        mark = {}
    try:
        age = datetime.now(UTC).timestamp() - datetime.fromisoformat(
            str(mark.get("since"))).timestamp()
    except ValueError:
        age = float("inf")
    if age > REMOVING_STALE_SECONDS or _process_gone(mark):
        return f"an earlier rm of job {job.job_id} was cut short: run rm again"
    return f"job {job.job_id}: being removed by another kong process"


def raise_problems(problems: Sequence[str], what: str, total: int) -> None:
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DriverError(f"{len(problems)} of {total} job(s) {what}: {problems[0]}{more}")

