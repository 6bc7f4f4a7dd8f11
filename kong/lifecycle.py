"""The one owner of a job's life: every status change and every write of a job's row.

A job moves through::

    CREATED --submit--> CREATED + submitting(token) --answer--> SUBMITTED -> RUNNING
        -> COMPLETED | FAILED;   kill -> FAILED (killed);   resubmit -> CREATED (new
    attempt, the old one in ``history``);   remove -> no row.

"Submit in flight" is data, not a status (kong-batch scripts compare the seed's
JobStatus values): ``data["submitting"]`` is the attempt's token, recorded before
anything reaches the cluster, with ``submitting_since``; ``data["submit_unclear"]``
says why kong cannot tell whether that attempt reached the scheduler.

Drivers (``kong.drivers``) only render, run and parse; this module decides what
their answers, and their silence, mean:

* a job without an answer to its submit is looked up by its token before anything
  else touches it (``reconcile``): found means submitted; not found means never
  submitted, unless a submit loop still runs on the host (then it stays in
  flight) or the scheduler's history no longer reaches back to it, or the submit
  command said yes without a readable id (then kong cannot know: it says so and
  submits again only when told to, ``force``);
* a job the scheduler no longer lists is finished only if its exit code is known;
* a kill the scheduler refused leaves the job as it was, and says so.

No database transaction is held open while a cluster is talked to: each write is
a short ``db.write()`` block after the remote work.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import insert, select
from sqlalchemy.orm import undefer

from kong import db, retry
from kong.drivers.base import (
    Absent,
    KillOutcome,
    KillResult,
    SchedulerInfo,
    StatusResult,
    SubmitFailed,
    SubmitRequest,
    Submitted,
    SubmitUnclear,
    exit_reason,
)
from kong.errors import ConnectionLost, DriverError, TransportError
from kong.model.job import Job, JobRow, JobStatus
from kong.remote.statusview import ViewAnswer

if TYPE_CHECKING:
    from kong.drivers.base import DriverBase, ProgressCallback
    from kong.model.folder import Folder

#: data keys that belong to one attempt: a resubmit drops them
ATTEMPT_KEYS = (
    "submitting", "submitting_since", "submit_unclear", "submitted_at", "reconciled",
    "scheduler_state", "exit_code", "reason", "killed", "node", "submit_time",
    "start_time", "expected_start", "end_time", "pid", "lost", "end_reason",
    "usage", "retry_note", "retry_claimed",
)

#: how long a resubmit waits for the scheduler to confirm that a killed attempt ended
KILL_CONFIRM_TIMEOUT = 120.0

_LIVE = (JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.UNKNOWN)


def _now() -> str:
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


def _reload(jobs: Sequence[Job]) -> set[int]:
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


def _current(job: Job, asked: Mapping[int, Attempt]) -> bool:
    """After ``_reload``: whether the job is still on the attempt it was asked about and
    no other kong process settled it meanwhile (an answer about it may be applied)."""
    was = asked.get(job.job_id)
    now = Attempt.of(job)
    return was is not None and was.same(now) and (was.finished or not now.finished)


# -- what a job's data says -------------------------------------------------------------


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


def _age(job: Job) -> float:
    since = (job.data or {}).get("submitting_since")
    if not isinstance(since, str):
        return float("inf")
    try:
        return time.time() - datetime.fromisoformat(since).timestamp()
    except ValueError:
        return float("inf")


def _fail(problems: Sequence[str], what: str, total: int) -> None:
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DriverError(f"{len(problems)} of {total} job(s) {what}: {problems[0]}{more}")


# -- create -----------------------------------------------------------------------------


def create(driver: DriverBase, folder: Folder, *args: Any,
           inputs: list[dict[str, str]] | None = None, **kwargs: Any) -> Job:
    """A new job row (CREATED) in ``folder``; the driver checks the arguments.
    ``inputs`` (checked by ``kong.staging.check_inputs``) go into its data."""
    policy = kwargs.pop("retry", None)
    values = driver.new_job(*args, **kwargs)
    if policy is not None:  # the job's own retry policy, over its profile's
        try:
            values["data"]["retry"] = retry.parse_policy(policy).as_dict()
        except retry.PolicyError as exc:
            where = f"retry.{exc.key}" if exc.key else "retry"
            raise retry.PolicyError(f"{where}: {exc}", exc.key) from None
    if inputs:
        values["data"] = {**values.get("data", {}), "inputs": inputs}
    with db.write() as s:
        job = Job(folder_id=folder.folder_id, status=JobStatus.CREATED, **values)
        s.add(job)
        s.flush()  # the id names the dirs
        # Made inside the insert's transaction: a concurrent `rm -r` of the folder
        # either sees this job (and removes these dirs) or not at all (then its
        # latecomer check does); dirs made after its removal would be orphans.
        driver.prepare_dirs([job])
    job.ensure_driver_instance(driver)
    return job


def create_many(
    driver: DriverBase,
    arguments: Sequence[dict[str, Any]],
    folders: Callable[[], Sequence[Folder]],
    extra_data: Sequence[dict[str, Any]] | None = None,
) -> list[Job]:
    """Many new job rows (CREATED) in one transaction: all of them or none.

    ``arguments`` are each job's ``driver.new_job`` keywords, all checked before the
    transaction starts; ``extra_data`` (e.g. a sweep's ``params``) joins each job's
    data. ``folders()`` runs inside the transaction and gives each job its folder (it
    may add folder rows: they are made, or not, with the jobs)."""
    values = [driver.new_job(**kwargs) for kwargs in arguments]
    for row, extra in zip(values, extra_data or (), strict=False):
        row["data"] = {**row["data"], **extra}
    with db.write() as s:
        targets = folders()
        if len(targets) != len(values):
            raise ValueError(f"{len(targets)} folders for {len(values)} jobs")
        now = datetime.now(UTC)
        rows = [{**row, "folder_id": folder.folder_id, "status": JobStatus.CREATED,
                 "created_at": now, "updated_at": now}
                for folder, row in zip(targets, values, strict=True)]
        # One multi-row INSERT ... RETURNING (the ids name the dirs), not 2,000 units of
        # work: the ORM's per-object flush is most of the time of a large sweep.
        jobs: list[Job] = []
        for start in range(0, len(rows), 5000):
            jobs.extend(s.scalars(insert(Job).returning(Job, sort_by_parameter_order=True),
                                  rows[start:start + 5000]))
        try:
            driver.prepare_dirs(jobs)  # inside the transaction, as in ``create``
        except BaseException:
            driver.discard_dirs(jobs)  # the rows go back: their dirs go too
            raise
    for job in jobs:
        job.ensure_driver_instance(driver)
    return jobs


# -- reconcile --------------------------------------------------------------------------


def _mark_submitted(job: Job, batch_id: str, now: str, reconciled: bool = False) -> None:
    job.batch_job_id = batch_id
    job.status = JobStatus.SUBMITTED
    data = {k: v for k, v in (job.data or {}).items()
            if k not in ("submitting", "submitting_since", "submit_unclear")}
    data.update(submitted_at=now, scheduler_state=None, exit_code=None)
    if reconciled:
        data["reconciled"] = True
    job.data = data


def reconcile(driver: DriverBase, jobs: Sequence[Job]) -> dict[int, str]:
    """Settle the jobs whose submission is in flight, by asking the scheduler for
    their tokens. Returns, for each job still in flight afterwards, why."""
    pending = {str(job.data["submitting"]): job for job in jobs if in_flight(job)}
    if not pending:
        return {}
    asked = attempts_of(pending.values())
    lookup = driver.find_tokens(list(pending))
    now = _now()
    undecided: dict[int, str] = {}
    with db.write():
        left = _reload(list(pending.values()))
        for token, job in pending.items():
            if job.job_id not in left or not _current(job, asked):
                continue  # removed, settled or submitted again by another kong meanwhile
            batch_id = lookup.found.get(token)
            if batch_id is not None:
                _mark_submitted(job, batch_id, now, reconciled=True)
                continue
            if lookup.busy:
                undecided[job.job_id] = lookup.busy  # it may submit the job yet
                continue
            reason = unclear_reason(job)
            if reason is None and lookup.history_seconds is not None and (
                _age(job) > lookup.history_seconds
            ):
                reason = (f"its submission started {_age(job):.0f} s ago and the "
                          f"scheduler shows only the last {lookup.history_seconds:.0f} s")
                job.set_data(submit_unclear=reason)
            if reason is not None:
                undecided[job.job_id] = reason
                continue
            # the scheduler would show it: this attempt never reached it
            job.data = {k: v for k, v in (job.data or {}).items()
                        if k not in ("submitting", "submitting_since")}
    return undecided


def _undecided_line(job: Job, why: str) -> str:
    if unclear_reason(job):
        return (f"job {job.job_id}: kong cannot tell whether it was submitted ({why}); "
                "not submitted again: check the cluster, then submit --force (or rm)")
    return f"job {job.job_id}: its submission is still in flight ({why}); try again later"


# -- submit -----------------------------------------------------------------------------


def submit(
    driver: DriverBase,
    jobs: Sequence[Job],
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> None:
    """Submit the CREATED jobs. A job whose earlier submission is in flight is first
    reconciled; one kong cannot settle is submitted again only with ``force``."""
    undecided = reconcile(driver, jobs)
    problems: list[str] = []
    todo: list[Job] = []
    for job in jobs:
        if job.status != JobStatus.CREATED:
            continue
        if in_flight(job) and not force:
            problems.append(_undecided_line(job, undecided.get(job.job_id, "not settled")))
            continue
        todo.append(job)
    if todo:
        problems.extend(_submit(driver, todo, progress))
    _fail(problems, "could not be submitted", len(jobs))


def _submit(driver: DriverBase, jobs: Sequence[Job], progress: ProgressCallback | None
            ) -> list[str]:
    now = intent_at = _now()
    requests = []
    chosen = attempts_of(jobs)
    driver.prepare_submit(jobs)  # any question to the cluster before the write lock
    with db.write():  # the intent, before anything reaches the cluster
        left = _reload(jobs)
        # not those another kong removed, or submitted (or began to) meanwhile
        jobs = [j for j in jobs if j.job_id in left and j.status == JobStatus.CREATED
                and _current(j, chosen)]
        attempts = [(j, int((j.data or {}).get("attempt", 0)) + 1) for j in jobs]
        # in one call: the driver may name jobs it submits together (arrays) together
        tokens = driver.tokens(attempts)
        for (job, attempt), token in zip(attempts, tokens, strict=True):
            data = dict(job.data or {})
            if data.get("submitting"):  # forced: the unsettled attempt goes to the history
                history = list(data.get("history", []))
                history.append({"token": data["submitting"], "status": "UNCLEAR"})
                data["history"] = history
            data.pop("submit_unclear", None)
            data.update(attempt=attempt, submitting=token, submitting_since=now)
            job.data = data
            requests.append(SubmitRequest(job, token))
        mine = attempts_of(jobs)
    try:
        results = driver.submit(requests, progress)
    except ConnectionLost:
        # Still unreachable: the intents stay, and the next operation reconciles.
        with contextlib.suppress(TransportError):
            reconcile(driver, jobs)
        raise
    problems: list[str] = []
    ask: list[Job] = []
    orphans: list[Job] = []
    superseded: list[str] = []
    now = _now()
    with db.write():
        left = _reload(jobs)
        for job in jobs:
            result = results.get(job.job_id)
            if job.job_id not in left:
                # Another kong removed the row while we submitted: no job may run on
                # without a row, so what reached the cluster is stopped below.
                if not isinstance(result, SubmitFailed):
                    orphans.append(job)
                continue
            ours = mine[job.job_id]
            if (job.data or {}).get("attempt") != ours.number:
                # another kong began another attempt (submit --force): the row is its,
                # so what this one queued would run on without one
                if not isinstance(result, SubmitFailed):
                    superseded.append(str(ours.token))
                continue
            if job.status != JobStatus.CREATED or job.batch_job_id is not None:
                continue  # another kong settled this very attempt (found its token, killed it)
            # Still this attempt. Another kong's reconcile that looked before the submit
            # got there may have taken it for never submitted: this answer is newer.
            job.set_data(submitting=ours.token, submitting_since=intent_at)
            if isinstance(result, Submitted):
                _mark_submitted(job, result.batch_id, now)
            elif isinstance(result, SubmitFailed):
                job.data = {k: v for k, v in (job.data or {}).items()
                            if k not in ("submitting", "submitting_since")}
                problems.append(f"job {job.job_id}: {result.error}")
            elif isinstance(result, SubmitUnclear):
                job.set_data(submit_unclear=result.why)
                ask.append(job)
            else:
                ask.append(job)  # no answer: the loop was cut short
    if orphans:
        _stop_orphans(driver, orphans, results)
    if superseded:
        driver.kill_tokens(superseded)
    if ask:
        undecided = reconcile(driver, ask)
        problems.extend(_undecided_line(j, undecided[j.job_id])
                        for j in ask if j.job_id in undecided)
    return problems


def _stop_orphans(driver: DriverBase, jobs: Sequence[Job], results: dict[int, Any]) -> None:
    """Stop (by batch id, else by token) and clean up jobs submitted for rows that are
    gone; ``jobs`` are detached from the session."""
    by_id = [j for j in jobs if isinstance(results.get(j.job_id), Submitted)]
    for job in by_id:
        job.batch_job_id = results[job.job_id].batch_id
    tokens = [str((j.data or {}).get("submitting")) for j in jobs if j not in by_id
              and (j.data or {}).get("submitting")]
    driver.kill(by_id)
    driver.kill_tokens(tokens)
    driver.remove_files(jobs)
    driver.forget_logs(jobs)


# -- status -----------------------------------------------------------------------------


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


def refresh(driver: DriverBase, jobs: Sequence[Job], force: bool = False,
            retry_ended: bool = True) -> None:
    """Bring the jobs' status up to date: in-flight submissions first, then one
    scheduler query for the live and UNKNOWN ones (a finished job stays finished).
    With the kong agent that query is the agent's shared one, whose answer may be
    a moment old (younger than its interval); ``force`` wants one that starts now.
    With ``retry_ended``, jobs that just ended are retried as their policy says."""
    reconcile(driver, jobs)
    asked = [j for j in jobs if j.batch_job_id and j.status != JobStatus.CREATED
             and not j.status.finished]
    if not asked:
        return
    before = attempts_of(asked)
    results = driver.status_forced(asked) if force else driver.status(asked)
    applied = _write_results(asked, results, before)
    if retry_ended:
        _auto_retry(driver, [j for j in asked if j.job_id in applied and j.status.finished])


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
        left = _reload(jobs)
        for job in jobs:
            result = results.get(job.job_id)
            if result is not None and job.job_id in left and _current(job, asked):
                _apply(job, result)
                applied.add(job.job_id)
    return applied


def _auto_retry(driver: DriverBase, ended: Sequence[Job]) -> None:
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
            left = _reload([j for j in ended if j.job_id in notes])
            for job in ended:
                if job.job_id in notes and job.job_id in left and _current(
                        job, ended_attempts):
                    job.set_data(retry_note=notes[job.job_id])
    claimed = _claim_retries([j for j in ended if j.job_id in plans], ended_attempts)
    if claimed:
        resubmit(driver, claimed, plans=plans, auto=True)


def _claim_retries(jobs: Sequence[Job], ended: Mapping[int, Attempt] | None = None
                   ) -> list[Job]:
    """The jobs whose ended attempt (``ended``; by default as this process saw it last)
    no other kong process has taken up for a retry yet, marked as taken in one write
    (two `kong wait` of one folder retry a job once)."""
    ended = attempts_of(jobs) if ended is None else ended
    claimed: list[Job] = []
    with db.write():
        left = _reload(jobs)
        for job in jobs:
            if (job.job_id in left and _current(job, ended) and job.status.finished
                    and not (job.data or {}).get("retry_claimed")):
                job.set_data(retry_claimed=True)
                claimed.append(job)
    return claimed


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
        left = _reload(asked)
        for job in asked:
            result = results.get(job.job_id)
            if (job.job_id not in left or not _current(job, before)
                    or not isinstance(result, SchedulerInfo)):
                continue
            if result.status.finished and result.extra.get("usage"):
                keep = ("usage", "submit_time", "start_time", "end_time")
                job.set_data(**{k: result.extra[k] for k in keep
                                if result.extra.get(k) is not None})


def wait(
    driver: DriverBase,
    jobs: Sequence[Job],
    timeout: float | None = None,
    poll_interval: float | None = None,
) -> None:
    """Refresh until every job is settled; ``TimeoutError`` after ``timeout`` s."""
    for _ in wait_iter(driver, jobs, timeout, poll_interval):
        pass


def wait_iter(
    driver: DriverBase,
    jobs: Sequence[Job],
    timeout: float | None = None,
    poll_interval: float | None = None,
) -> Iterator[Sequence[Job]]:
    interval = poll_interval if poll_interval is not None else driver.default_poll_interval
    start = time.monotonic()
    while True:
        refresh(driver, [j for j in jobs if not j.status.finished])
        yield jobs
        check_waitable(jobs)
        if all(settled(j) for j in jobs):
            return
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"jobs not finished after {timeout} s")
        time.sleep(interval)


def check_waitable(jobs: Sequence[Job]) -> None:
    """Raise for jobs no wait can see finish: kong cannot tell whether they were submitted."""
    stuck = [(j, why) for j in jobs if (why := unclear_reason(j))]
    if stuck:
        job, why = stuck[0]
        raise DriverError(f"{len(stuck)} job(s) cannot be waited for: {_undecided_line(job, why)}")


# -- kill -------------------------------------------------------------------------------


def _mark_killed(job: Job, reason: str = "killed by kong") -> None:
    job.status = JobStatus.FAILED
    data = {k: v for k, v in (job.data or {}).items()
            if k not in ("submitting", "submitting_since", "submit_unclear")}
    data.update(killed=True, reason=reason, end_reason="CANCELLED")
    job.data = data


def _stop(driver: DriverBase, jobs: Sequence[Job]) -> tuple[list[Job], list[Job], list[str]]:
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
                problems.append(_undecided_line(job, undecided[job.job_id]) + "; not stopped")
    live = [j for j in jobs if j.batch_job_id and j.status in _LIVE]
    asked = attempts_of([*live, *by_token.values()])
    answers: dict[int, KillResult] = dict(driver.kill(live))
    for token, result in driver.kill_tokens(list(by_token)).items():
        answers[by_token[token].job_id] = result
    killed: list[Job] = []
    check: list[Job] = []
    with db.write():
        left = _reload([*live, *by_token.values()])
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
    _killed, check, problems = _stop(driver, jobs)
    if check:
        refresh(driver, check, retry_ended=False)  # a job being killed is not run again
    _fail(problems, "could not be killed", len(jobs))


def _await_end(driver: DriverBase, jobs: Sequence[Job], timeout: float) -> list[Job]:
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


# -- resubmit ---------------------------------------------------------------------------


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
    if plans is None:  # worked out before anything is stopped: a refusal changes nothing
        plans = {}
        for job in jobs:
            try:
                plans[job.job_id] = retry.plan(driver, job, changes)
            except retry.LimitReached as exc:
                problems.append(str(exc))
        if not plans:
            _fail(problems, "could not be resubmitted", total)
        jobs = [j for j in jobs if j.job_id in plans]
    killed, check, stop_problems = _stop(driver, jobs)
    problems.extend(stop_problems)
    stopped = attempts_of(jobs)  # what ends here; another kong may run it again meanwhile
    blocked = {j.job_id for j in jobs} - {j.job_id for j in jobs if _may_rerun(j)}
    blocked -= {j.job_id for j in [*killed, *check]}
    stuck = _await_end(driver, [*killed, *check], KILL_CONFIRM_TIMEOUT)
    for job in stuck:
        problems.append(f"job {job.job_id}: still running {KILL_CONFIRM_TIMEOUT:.0f} s "
                        "after the kill; not resubmitted")
    blocked |= {j.job_id for j in stuck}
    rerun = [j for j in jobs if j.job_id not in blocked]
    driver.remove_files(rerun)
    driver.forget_logs(rerun)
    with db.write():
        left = _reload(rerun)
        # not those another kong removed, or ran again, meanwhile (nothing runs twice)
        rerun = [j for j in rerun if j.job_id in left
                 and stopped[j.job_id].same(Attempt.of(j))]
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
        problems.extend(_submit(driver, rerun, progress))
    _fail(problems, "could not be resubmitted", total)


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


def _may_rerun(job: Job) -> bool:
    """Whether nothing of the job's last attempt may still run (so it can run again)."""
    if in_flight(job):
        return False  # stopped by token (then FAILED) or still being submitted
    return not (job.batch_job_id and job.status in _LIVE)


# -- remove -----------------------------------------------------------------------------


def remove(driver: DriverBase, jobs: Sequence[Job]) -> None:
    """Stop what may still run, delete the jobs' files, cached logs and rows. A job
    that could not be stopped keeps its row (and the error says so)."""
    if driver.reachable:
        killed, check, problems = _stop(driver, jobs)
        stopped = {j.job_id for j in [*killed, *check]}
        gone = [j for j in jobs if j.job_id in stopped or _may_rerun(j)]
    else:  # nobody to ask or to stop: the rows go, the driver says where the files stay
        gone, problems = list(jobs), []
    ending = attempts_of(gone)
    driver.remove_files(gone)
    driver.forget_logs(gone)
    with db.write() as s:
        left = _reload(gone)
        for job in gone:
            if job.job_id not in left:
                continue
            if not ending[job.job_id].same(Attempt.of(job)):
                # a row whose job may run on is kept, so that it can be stopped
                problems.append(f"job {job.job_id}: another kong process submitted it "
                                "again meanwhile; not removed")
                continue
            s.delete(job)
    _fail(problems, "could not be removed", len(jobs))
