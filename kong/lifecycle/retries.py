"""The lifecycle's retry hook: jobs that just ended for a reason their policy answers
(``kong.retry`` works out the plan) are claimed once, whichever kong process saw the
end, and run again through ``stopping.resubmit``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from kong import db, retry
from kong.lifecycle.attempt import (
    Attempt,
    attempts_of,
    is_current,
    reload_rows,
    removal_refusal,
)
from kong.lifecycle.stopping import resubmit
from kong.model.job import Job

if TYPE_CHECKING:
    from kong.drivers.base import DriverBase

def auto_retry(driver: DriverBase, ended: Sequence[Job]) -> None:
    """Run again, with more of what they lacked, the jobs that just ended for a reason
    their retry policy answers (kong.retry); say in their data why not where not."""
    ended_attempts = attempts_of(ended)
    plans: dict[int, retry.Plan] = {}
    notes: dict[int, str] = {}
    for job in ended:
        decision = retry.auto_plan(driver, job)
        if isinstance(decision, retry.Plan):
            plans[job.job_id] = decision
        elif decision is not None:
            notes[job.job_id] = decision
    if notes:
        with db.write():
            left = reload_rows([j for j in ended if j.job_id in notes])
            for job in ended:
                if job.job_id in notes and job.job_id in left and is_current(
                        job, ended_attempts):
                    job.set_data(retry_note=notes[job.job_id])
    claimed = claim_retries([j for j in ended if j.job_id in plans], ended_attempts)
    if claimed:
        resubmit(driver, claimed, plans=plans, auto=True)


def claim_retries(jobs: Sequence[Job], ended: Mapping[int, Attempt] | None = None
                   ) -> list[Job]:
    """The jobs whose ended attempt (``ended``; by default as this process saw it last)
    no other kong process has taken up for a retry yet, marked as taken in one write
    (two `kong wait` of one folder retry a job once)."""
    ended = attempts_of(jobs) if ended is None else ended
    claimed: list[Job] = []
    with db.write():
        left = reload_rows(jobs)
        for job in jobs:
            if (job.job_id in left and is_current(job, ended) and job.status.finished
                    and not (job.data or {}).get("retry_claimed")
                    and not removal_refusal(job)):  # an rm claimed it: it runs no more
                job.set_data(retry_claimed=True)
                claimed.append(job)
    return claimed

