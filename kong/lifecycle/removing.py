"""The lifecycle's last end: remove. The rows are claimed first, then the jobs are
stopped, then their files deleted, then their rows.

The claim (``data["removing"]``, one short write, only on jobs still on the attempt
this rm saw) is what keeps another kong process from starting a new attempt of a
job whose files this one is about to delete: submit, resubmit and retry refuse a
claimed job (``attempt.removal_refusal``). A claim outlives a kill -9 of its rm; the
next ``rm`` of the job takes it over and finishes the work (every step is one that
may be done twice: a kill of what ended, an ``rm -rf`` of what is gone).

A job array's dir on the host (its dispatcher, map and the scheduler's files of its
elements) goes in the same round trip as the job dirs when the last kong job that
ever belonged to the array is removed (``data["arrays"]``, written with the submit
intent).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, cast, or_, select

from kong import db
from kong.lifecycle.attempt import (
    ACTIVE_REMOVALS,
    REMOVING,
    Attempt,
    attempts_of,
    raise_problems,
    reload_rows,
    removal_mark,
)
from kong.lifecycle.stopping import KILL_CONFIRM_TIMEOUT, await_end, may_rerun, stop
from kong.model.job import Job

if TYPE_CHECKING:
    from kong.drivers.base import DriverBase


def remove(driver: DriverBase, jobs: Sequence[Job]) -> None:
    """Claim the jobs, stop what may still run, delete their files, cached logs and
    rows. A job that could not be stopped keeps its row, unclaimed (and the error says
    so); so does one another kong process submitted again before the claim."""
    problems: list[str] = []
    mark = removal_mark()
    ACTIVE_REMOVALS.add(mark["since"])
    try:
        _remove(driver, jobs, mark, problems)
    finally:
        ACTIVE_REMOVALS.discard(mark["since"])
    raise_problems(problems, "could not be removed", len(jobs))


def _remove(driver: DriverBase, jobs: Sequence[Job], mark: dict[str, Any],
            problems: list[str]) -> None:
    try:
        claimed = claim(jobs, attempts_of(jobs), mark, problems)
    except db.DiskFull:
        # A full disk cannot take the claim, and rm is how a user frees it: remove
        # unclaimed, as before claims; the attempt check of the last write still keeps
        # a job another kong process submitted again meanwhile.
        claimed = list(jobs)
    if driver.reachable:
        killed, check, stop_problems = stop(driver, claimed)
        problems.extend(stop_problems)
        stopped = {j.job_id for j in [*killed, *check]}
        gone = [j for j in claimed if j.job_id in stopped or may_rerun(j)]
        # A kill is asynchronous: a job the scheduler is still starting or stopping
        # (Grid Engine's shepherd, HTCondor's starter, the job's own mkdir) writes
        # into its dirs after they are deleted, so the files go once the scheduler
        # shows it ended (as for resubmit; after the timeout they go anyway).
        await_end(driver, [*killed, *check], KILL_CONFIRM_TIMEOUT)
    else:  # nobody to ask or to stop: the rows go, the driver says where the files stay
        gone = list(claimed)
    ending = attempts_of(gone)
    driver.remove_files(gone, last_of_arrays(gone))
    driver.forget_logs(gone)
    going = {j.job_id for j in gone}
    with db.write() as s:
        left = reload_rows(claimed)
        for job in claimed:
            if job.job_id not in left:
                continue  # another kong's rm finished it meanwhile
            if job.job_id in going and ending[job.job_id].same(Attempt.of(job)):
                s.delete(job)
                continue
            if job.job_id in going:  # only a kong without claims can get here
                problems.append(f"job {job.job_id}: another kong process submitted it "
                                "again meanwhile; not removed")
            _unclaim(job, mark)  # kept: it may be stopped, run again, removed later


def claim(jobs: Sequence[Job], seen: dict[int, Attempt], mark: dict[str, Any],
           problems: list[str]) -> list[Job]:
    """Mark the jobs still on the attempt this rm saw as being removed, in one write;
    those. A claim of another rm (running, or cut short) is taken over: both would do
    the same, and a cut-short one has nobody else to finish it."""
    claimed: list[Job] = []
    with db.write():
        left = reload_rows(jobs)
        for job in jobs:
            if job.job_id not in left:
                continue  # removed by another kong meanwhile
            if not seen[job.job_id].same(Attempt.of(job)):
                problems.append(f"job {job.job_id}: another kong process submitted it "
                                "again meanwhile; not removed")
                continue
            job.set_data(**{REMOVING: mark})
            claimed.append(job)
    return claimed


def _unclaim(job: Job, mark: dict[str, Any]) -> None:
    data = job.data or {}
    if data.get(REMOVING) == mark:  # not another rm's, which still works on it
        job.data = {k: v for k, v in data.items() if k != REMOVING}


def last_of_arrays(jobs: Sequence[Job]) -> list[str]:
    """The job arrays (names) that no kong job but these belongs to any more: their
    dirs on the host go with these jobs. One query per 100 arrays, on the text of
    ``data`` (a name is unique to one submit; ``data["arrays"]`` confirms a match)."""
    names = sorted({str(name) for job in jobs
                    for name in (job.data or {}).get("arrays") or ()})
    if not names:
        return []
    going = {j.job_id for j in jobs}
    kept: set[str] = set()
    text = cast(Job.data, String)
    for start in range(0, len(names), 100):
        chunk = names[start:start + 100]
        query = select(Job.job_id, Job.data).where(
            or_(*(text.like(f'%"{_like_escaped(name)}"%', escape="\\") for name in chunk)))
        for job_id, data in db.session().execute(query):
            if job_id not in going:
                kept.update((data or {}).get("arrays") or ())
    return [name for name in names if name not in kept]


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
