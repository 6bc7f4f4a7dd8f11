"""The lifecycle's reading of the scheduler's status answers: what they, and the
scheduler's silence, mean for a job (absence is not completion), written only over
the attempt they are about; the same for the agent's shared view and for usage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import undefer

from kong import db, retry
from kong.drivers.base import Absent, SchedulerInfo, StatusResult, exit_reason
from kong.errors import DriverError, TransportError
from kong.lifecycle.attempt import Attempt, attempts_of, is_current, reload_rows
from kong.lifecycle.submitting import reconcile
from kong.model.job import Job, JobStatus
from kong.remote.statusview import ViewAnswer

if TYPE_CHECKING:
    from kong.drivers.base import DriverBase
    from kong.model.job import JobRow

def _apply(job: Job, result: StatusResult) -> None:
    if isinstance(result, Absent):
        if result.exit_code is None:
            if not job.status.finished:
                job.status = JobStatus.UNKNOWN  # absence is not completion
            return
        code = result.exit_code
        result = SchedulerInfo(JobStatus.COMPLETED if code == 0 else JobStatus.FAILED,
                               "FORGOTTEN", exit_code=code,
                               reason="scheduler has no record; exit code from job")
    info = result
    killed = bool((job.data or {}).get("killed"))
    if killed and info.status == JobStatus.COMPLETED:
        info.status = JobStatus.FAILED
    if killed and info.status.finished and not info.reason:
        info.reason = "killed by kong"
    end_reason = None
    if info.status.finished:
        end_reason = ("CANCELLED" if killed else info.end_reason) or exit_reason(info.exit_code)
    if job.status != info.status:
        job.status = info.status
    job.set_data(scheduler_state=info.state, exit_code=info.exit_code, reason=info.reason,
                 end_reason=end_reason, **info.extra)


def refresh_status(driver: DriverBase, jobs: Sequence[Job], force: bool = False) -> list[Job]:
    """In-flight submissions first, then one scheduler query for the live and UNKNOWN
    jobs (a finished job stays finished), its answers written; the jobs that just
    ended (``kong.lifecycle.refresh`` retries them as their policy says). With the
    kong agent that query is the agent's shared one, whose answer may be a moment old
    (younger than its interval); ``force`` wants one that starts now."""
    reconcile(driver, jobs)
    asked = [j for j in jobs if j.batch_job_id and j.status != JobStatus.CREATED
             and not j.status.finished]
    if not asked:
        return []
    before = attempts_of(asked)
    results = driver.status_forced(asked) if force else driver.status(asked)
    applied = _write_results(asked, results, before)
    return [j for j in asked if j.job_id in applied and j.status.finished]


def refresh_from_view(
    driver: DriverBase, rows: Sequence[JobRow | Job]
) -> ViewAnswer | None:
    """For a listing: apply what the kong agent's shared status view says of the
    live jobs among ``rows`` (no reconcile, no query of this process's own; only
    jobs whose status changed are loaded and written); the view's answer (its age,
    why it failed), or None without one. A listing never fails for it: a scheduler
    or connection error leaves the rows as they are."""
    live = {r.job_id: r for r in rows if r.batch_job_id and r.status != JobStatus.CREATED
            and not r.status.finished}
    if not live:
        return None
    batch_ids = {i: str(r.batch_job_id) for i, r in live.items()}  # before: rows may be Jobs
    try:
        seen = driver.status_view(batch_ids)
    except (DriverError, TransportError) as exc:
        return ViewAnswer(1, b"", b"", 0.0, 0.0, str(exc) or type(exc).__name__, True)
    if seen is None:
        return None
    results, answer = seen
    changed = {i: res for i, res in results.items()
               if isinstance(res, SchedulerInfo) and res.status != live[i].status}
    if changed:
        ids = sorted(changed)
        jobs: list[Job] = []
        for start in range(0, len(ids), 1000):
            jobs += db.session().scalars(select(Job).where(
                Job.job_id.in_(ids[start:start + 1000])).options(undefer(Job.data))
                .execution_options(populate_existing=True))
        # the view answered for the batch ids of ``rows``: a job resubmitted since then
        # is on another attempt
        asked = {j.job_id: a._replace(batch_job_id=batch_ids[j.job_id])
                 for j in jobs if not (a := Attempt.of(j)).finished}
        # The end of a job with a retry policy is left to refresh/wait, which act on
        # it when they see it: written here, no one would retry the job.
        _write_results([j for j in jobs if j.job_id in asked and not (
            changed[j.job_id].status.finished and retry.policy_of(driver, j))], changed, asked)
    return answer


def _write_results(jobs: Sequence[Job], results: Mapping[int, StatusResult],
                   asked: Mapping[int, Attempt]) -> set[int]:
    """Apply the answers about the attempts ``asked``; the ids of the jobs they were
    applied to. A job another kong process removed, resubmitted or settled while the
    scheduler was asked keeps what that process wrote."""
    applied: set[int] = set()
    with db.write():
        left = reload_rows(jobs)
        for job in jobs:
            result = results.get(job.job_id)
            if result is not None and job.job_id in left and is_current(job, asked):
                _apply(job, result)
                applied.add(job.job_id)
    return applied


def backfill_usage(driver: DriverBase, jobs: Sequence[Job]) -> None:
    """Ask the scheduler once for the usage of finished jobs that have none stored
    (they ended before kong kept usage, or the accounting lagged behind the end),
    and keep it with their times; their status and end stay as they are."""
    asked = [j for j in jobs if j.batch_job_id and j.status.finished
             and not (j.data or {}).get("usage") and driver.reachable]
    if not asked:
        return
    before = attempts_of(asked)
    results = driver.status(asked)
    with db.write():
        left = reload_rows(asked)
        for job in asked:
            result = results.get(job.job_id)
            if (job.job_id not in left or not is_current(job, before)
                    or not isinstance(result, SchedulerInfo)):
                continue
            if result.status.finished and result.extra.get("usage"):
                keep = ("usage", "submit_time", "start_time", "end_time")
                job.set_data(**{k: result.extra[k] for k in keep
                                if result.extra.get(k) is not None})

