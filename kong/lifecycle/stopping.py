"""The lifecycle's ends: kill and resubmit (stop, confirm the end, run again as a new
attempt); what the scheduler says of a kill decides what the row says. ``removing``
builds ``remove`` on the stop here."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kong import db, retry
from kong.drivers.base import Absent, KillOutcome, KillResult, StatusResult
from kong.lifecycle.answers import refresh_status
from kong.lifecycle.attempt import (
    ATTEMPT_KEYS,
    LIVE,
    Attempt,
    attempts_of,
    in_flight,
    raise_problems,
    reload_rows,
    removal_refusal,
    unclear_reason,
    undecided_line,
)
from kong.lifecycle.submitting import reconcile, submit_new
from kong.model.job import Job, JobStatus

if TYPE_CHECKING:
    from kong.drivers.base import DriverBase, ProgressCallback

#: how long a resubmit waits for the scheduler to confirm that a killed attempt ended
KILL_CONFIRM_TIMEOUT = 120.0


def _mark_killed(job: Job, reason: str = "killed by kong") -> None:
    job.status = JobStatus.FAILED
    data = {k: v for k, v in (job.data or {}).items()
            if k not in ("submitting", "submitting_since", "submit_unclear")}
    data.update(killed=True, reason=reason, end_reason="CANCELLED")
    job.data = data


def stop(driver: DriverBase, jobs: Sequence[Job]) -> tuple[list[Job], list[Job], list[str]]:
    """Stop every job of ``jobs`` that may be on the cluster: reconcile, kill by batch
    id, and by token what kong cannot settle. Returns (killed, to check, problems):
    killed jobs are FAILED already; "to check" said "finished" or gave no clear
    answer; a job the scheduler refused, or one still being submitted, is in neither
    (a problem line says which and why)."""
    undecided = reconcile(driver, jobs)
    problems: list[str] = []
    by_token: dict[str, Job] = {}
    for job in jobs:
        if job.job_id in undecided:
            if unclear_reason(job):
                by_token[str(job.data["submitting"])] = job
            else:
                problems.append(undecided_line(job, undecided[job.job_id]) + "; not stopped")
    live = [j for j in jobs if j.batch_job_id and j.status in LIVE]
    asked = attempts_of([*live, *by_token.values()])
    answers: dict[int, KillResult] = dict(driver.kill(live))
    for token, result in driver.kill_tokens(list(by_token)).items():
        answers[by_token[token].job_id] = result
    killed: list[Job] = []
    check: list[Job] = []
    with db.write():
        left = reload_rows([*live, *by_token.values()])
        for job in [*live, *by_token.values()]:
            if job.job_id not in left:
                continue  # removed by another kong meanwhile (it stopped the job too)
            if not asked[job.job_id].same(Attempt.of(job)):
                problems.append(f"job {job.job_id}: another kong process submitted it "
                                "again meanwhile; its new attempt was not stopped")
                continue
            if Attempt.of(job).finished:
                continue  # another kong saw it end (or killed it) meanwhile: its end stays
            result = answers.get(job.job_id, KillResult(KillOutcome.UNKNOWN))
            if result.outcome == KillOutcome.REFUSED:
                status = "in flight" if in_flight(job) else job.status.name
                problems.append(f"job {job.job_id}: the scheduler refused to kill it: "
                                f"{result.message} (still {status})")
            elif result.outcome == KillOutcome.KILLED or in_flight(job):
                # by token, "no such job" is as good as killed: nothing carries it
                _mark_killed(job)
                killed.append(job)
            else:
                check.append(job)
    return killed, check, problems


def kill(driver: DriverBase, jobs: Sequence[Job]) -> None:
    """Kill the jobs that are queued, running, UNKNOWN or being submitted. A killed job
    reads FAILED at once; one that had already ended keeps its end."""
    _killed, check, problems = stop(driver, jobs)
    if check:
        refresh_status(driver, check)  # no retry: a job being killed is not run again
    raise_problems(problems, "could not be killed", len(jobs))


def await_end(driver: DriverBase, jobs: Sequence[Job], timeout: float) -> list[Job]:
    """Poll until the scheduler shows each job ended (or gone); the ones that did not."""
    waiting = [j for j in jobs if j.batch_job_id]
    deadline = time.monotonic() + timeout
    delay = 0.2
    while waiting:
        # A query that starts now: the kong agent's shared view may be from before the kill.
        results = driver.status_forced(waiting)
        waiting = [j for j in waiting if not _ended(results.get(j.job_id))]
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
    return waiting


def _ended(result: StatusResult | None) -> bool:
    if result is None or isinstance(result, Absent):
        return True
    return result.status.finished or "lost" in result.extra


def resubmit(
    driver: DriverBase,
    jobs: Sequence[Job],
    progress: ProgressCallback | None = None,
    changes: Sequence[retry.Change] = (),
    plans: dict[int, retry.Plan] | None = None,
    auto: bool = False,
) -> None:
    """Run the jobs again as a clean new attempt: stop the old one and wait until the
    scheduler confirms it ended, forget its files, cached logs and flags, keep it (and
    its resources) in the history, submit once. ``changes`` give every job more (or
    less) walltime, memory or cores, within its queue's limits; ``plans`` are the
    next attempts' resources already worked out (``auto``: by a retry policy)."""
    problems: list[str] = []
    total = len(jobs)
    # a job an rm claimed runs no more (checked again where the new attempt is written)
    problems.extend(why for j in jobs if (why := removal_refusal(j)))
    jobs = [j for j in jobs if not removal_refusal(j)]
    if not jobs:
        raise_problems(problems, "could not be resubmitted", total)
    if plans is None:  # worked out before anything is stopped: a refusal changes nothing
        plans = {}
        for job in jobs:
            try:
                plans[job.job_id] = retry.plan(driver, job, changes)
            except retry.LimitReached as exc:
                problems.append(str(exc))
        if not plans:
            raise_problems(problems, "could not be resubmitted", total)
        jobs = [j for j in jobs if j.job_id in plans]
    killed, check, stop_problems = stop(driver, jobs)
    problems.extend(stop_problems)
    stopped = attempts_of(jobs)  # what ends here; another kong may run it again meanwhile
    blocked = {j.job_id for j in jobs} - {j.job_id for j in jobs if may_rerun(j)}
    blocked -= {j.job_id for j in [*killed, *check]}
    stuck = await_end(driver, [*killed, *check], KILL_CONFIRM_TIMEOUT)
    for job in stuck:
        problems.append(f"job {job.job_id}: still running {KILL_CONFIRM_TIMEOUT:.0f} s "
                        "after the kill; not resubmitted")
    blocked |= {j.job_id for j in stuck}
    rerun = [j for j in jobs if j.job_id not in blocked]
    driver.remove_files(rerun)
    driver.forget_logs(rerun)
    with db.write():
        left = reload_rows(rerun)
        # not those another kong removed, or ran again, meanwhile (nothing runs twice)
        rerun = [j for j in rerun if j.job_id in left
                 and stopped[j.job_id].same(Attempt.of(j))]
        # nor those an rm claimed meanwhile: it deletes their files and rows
        problems.extend(why for j in rerun if (why := removal_refusal(j)))
        rerun = [j for j in rerun if not removal_refusal(j)]
        for job in rerun:
            data = dict(job.data or {})
            history = list(data.get("history", []))
            if job.batch_job_id is not None:
                history.append({"batch_job_id": job.batch_job_id, "status": job.status.name,
                                "attempt": data.get("attempt"),
                                "end_reason": data.get("end_reason"),
                                **retry.resources_of(driver, job).as_history()})
            data = {k: v for k, v in data.items() if k not in ATTEMPT_KEYS}
            data["history"] = history
            plan = plans.get(job.job_id)
            if plan is not None:
                data = _with_resources(driver, job, data, plan)
            if auto:
                data["retries"] = int(data.get("retries", 0)) + 1
            job.data = data
            job.batch_job_id = None
            job.status = JobStatus.CREATED
    if rerun:
        problems.extend(submit_new(driver, rerun, progress))
    raise_problems(problems, "could not be resubmitted", total)


def _with_resources(driver: DriverBase, job: Job, data: dict[str, Any], plan: retry.Plan
                    ) -> dict[str, Any]:
    """Give the job the plan's resources (a new ``data``, the columns set in place)."""
    want, now = plan.resources, retry.resources_of(driver, job)
    options = dict(data.get("options") or {})
    merged = {**driver.profile.options, **options}
    if want.walltime is not None and want.walltime != now.walltime:
        options["walltime"] = want.walltime
    if want.memory is not None and want.memory != now.memory:
        job.memory = want.memory
        for key in ("memory", "request_memory"):  # an option would win over the column
            if merged.get(key) is not None and key in driver.OPTIONS:
                options[key] = want.memory
    if want.cores != now.cores:
        job.cores = want.cores
    data = {**data, "options": options}
    if plan.notes:
        data["retry_note"] = "; ".join(plan.notes)
    return data


def may_rerun(job: Job) -> bool:
    """Whether nothing of the job's last attempt may still run (so it can run again)."""
    if in_flight(job):
        return False  # stopped by token (then FAILED) or still being submitted
    return not (job.batch_job_id and job.status in LIVE)
