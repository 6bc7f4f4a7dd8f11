"""The one owner of a job's life: every status change and every write of a job's row.

A job moves through::

    CREATED --submit--> CREATED + submitting(token) --answer--> SUBMITTED -> RUNNING
        -> COMPLETED | FAILED;   kill -> FAILED (killed);   resubmit -> CREATED (new
    attempt, the old one in ``history``);   remove -> no row.

"Submit in flight" is data, not a status (kong-batch scripts compare the seed's
JobStatus values): ``data["submitting"]`` is the attempt's token, recorded before
anything reaches the cluster, with ``submitting_since``; ``data["submit_unclear"]``
says why kong cannot tell whether that attempt reached the scheduler.

Drivers (``kong.drivers``) only render, run and parse; this package decides what
their answers, and their silence, mean (``answers``, ``submitting``, ``stopping``):

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

The lifecycle is a package because it is several things that one rule holds
together (every status change and every write of a job's row is made here, in a
part named for what it does); each part imports only the ones before it:

* ``attempt``: what a row says of its attempt; reading rows again inside a write;
* ``submitting``: new rows, submit, reconcile;
* ``answers``: the scheduler's status answers (and the agent's view, and usage);
* ``stopping``: kill, resubmit;
* ``removing``: remove (claim the rows, stop, delete files, then rows);
* ``retries``: the retry of jobs that just ended, as their policy says.

Callers (``kong.state``, ``Job``) use the names below, not the parts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from kong.lifecycle.answers import backfill_usage, refresh_from_view, refresh_status
from kong.lifecycle.attempt import (
    ATTEMPT_KEYS,
    Attempt,
    attempts_of,
    check_waitable,
    in_flight,
    removal_refusal,
    settled,
    unclear_reason,
)
from kong.lifecycle.removing import remove
from kong.lifecycle.retries import auto_retry, claim_retries
from kong.lifecycle.stopping import KILL_CONFIRM_TIMEOUT, kill, resubmit
from kong.lifecycle.submitting import create, create_many, move, reconcile, submit
from kong.model.job import Job

if TYPE_CHECKING:
    from kong.drivers.base import DriverBase

__all__ = [
    "ATTEMPT_KEYS", "KILL_CONFIRM_TIMEOUT", "Attempt", "attempts_of", "backfill_usage",
    "check_waitable", "claim_retries", "create", "create_many", "in_flight", "kill", "move",
    "reconcile", "refresh", "refresh_from_view", "removal_refusal", "remove", "resubmit",
    "settled", "submit",
    "unclear_reason", "wait", "wait_iter",
]


def refresh(driver: DriverBase, jobs: Sequence[Job], force: bool = False,
            retry_ended: bool = True) -> None:
    """Bring the jobs' status up to date: in-flight submissions first, then one
    scheduler query for the live and UNKNOWN ones (a finished job stays finished).
    With the kong agent that query is the agent's shared one, whose answer may be
    a moment old (younger than its interval); ``force`` wants one that starts now.
    With ``retry_ended``, jobs that just ended are retried as their policy says."""
    ended = refresh_status(driver, jobs, force)
    if retry_ended and ended:
        auto_retry(driver, ended)


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

