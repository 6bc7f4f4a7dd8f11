"""The lifecycle's first half: new rows (and the folder they are in), submits, and the
reconciling of submits whose outcome is not known (by their tokens) before anything
else touches those jobs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert

from kong import db, retry
from kong.drivers.base import SubmitFailed, SubmitRequest, Submitted, SubmitUnclear
from kong.errors import ConnectionLost, TransportError
from kong.lifecycle.attempt import (
    attempts_of,
    in_flight,
    is_current,
    raise_problems,
    reload_rows,
    removal_refusal,
    timestamp,
    unclear_reason,
    undecided_line,
)
from kong.model.job import Job, JobStatus

if TYPE_CHECKING:
    from kong.drivers.base import DriverBase, ProgressCallback
    from kong.model.folder import Folder

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


def move(jobs: Sequence[Job], folder: Folder,
         same_transaction: Callable[[], None] | None = None) -> None:
    """Put the jobs into ``folder`` (``mv``); ``same_transaction`` makes the caller's
    other changes of the move (its folders') in the same write, all or none."""
    with db.write():
        if same_transaction is not None:
            same_transaction()
        for job in jobs:
            job.folder_id = folder.folder_id


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


def _age(job: Job) -> float:
    since = (job.data or {}).get("submitting_since")
    if not isinstance(since, str):
        return float("inf")
    try:
        return time.time() - datetime.fromisoformat(since).timestamp()
    except ValueError:
        return float("inf")


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
    now = timestamp()
    undecided: dict[int, str] = {}
    with db.write():
        left = reload_rows(list(pending.values()))
        for token, job in pending.items():
            if job.job_id not in left or not is_current(job, asked):
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
        if refusal := removal_refusal(job):
            problems.append(refusal)  # an rm claimed it: no new attempt (checked again below)
            continue
        if in_flight(job) and not force:
            problems.append(undecided_line(job, undecided.get(job.job_id, "not settled")))
            continue
        todo.append(job)
    if todo:
        problems.extend(submit_new(driver, todo, progress))
    raise_problems(problems, "could not be submitted", len(jobs))


def submit_new(driver: DriverBase, jobs: Sequence[Job], progress: ProgressCallback | None
            ) -> list[str]:
    now = intent_at = timestamp()
    requests = []
    chosen = attempts_of(jobs)
    problems: list[str] = []
    driver.prepare_submit(jobs)  # any question to the cluster before the write lock
    with db.write():  # the intent, before anything reaches the cluster
        left = reload_rows(jobs)
        # An rm claims its jobs in a write of its own before it stops them or deletes
        # their files: a job it claimed starts no new attempt (its files would go).
        claimed = [why for j in jobs if j.job_id in left and (why := removal_refusal(j))]
        problems.extend(claimed)
        # not those another kong removed, or submitted (or began to) meanwhile
        jobs = [j for j in jobs if j.job_id in left and j.status == JobStatus.CREATED
                and is_current(j, chosen) and not removal_refusal(j)]
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
            array = driver.array_of(token)
            if array is not None and array not in data.get("arrays", []):
                # recorded before its files are uploaded: the array's dir on the host
                # goes when the last job that ever belonged to it is removed
                data["arrays"] = [*data.get("arrays", []), array]
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
    ask: list[Job] = []
    orphans: list[Job] = []
    superseded: list[str] = []
    now = timestamp()
    with db.write():
        left = reload_rows(jobs)
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
        problems.extend(undecided_line(j, undecided[j.job_id])
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

