"""The State API: kong's one entry point for the CLI, the REPL and Python users.

A ``State`` has a current folder and a default profile. Methods that touch many
jobs resolve their JobSpecs to rows, group the rows by profile and hand each
group to its driver in one call; groups of different profiles run concurrently.

JobSpecs (ids, ``dir/id``, ranges, paths, globs) are described, and resolved, in
``kong.selection``. Here: listing, creating, submitting, killing, resubmitting,
removing and waiting; the drivers and the refresh are in ``kong.state_core``, the
reports in ``kong.state_reports``, bulk creation, pull and logs in
``kong.state_facades``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from kong import db, lifecycle, retry
from kong.errors import (
    CannotCreateError,
    CannotRemoveIsFolder,
    CannotRemoveRoot,
    ConfigError,
    DoesNotExist,
    FolderError,
    IsAFolderError,
    KongError,
    MissingParentError,
    NoSuchFolder,
)
from kong.jobspec import check_text, job_arguments
from kong.model.folder import Folder
from kong.model.job import Job, JobList, JobStatus
from kong.selection import JobSpec, MoveResult, forget_collections
from kong.state_core import Confirmation, load_job_data
from kong.state_facades import Facades
from kong.state_reports import Reports

if TYPE_CHECKING:
    from kong.drivers.base import ProgressCallback
    from kong.model.job import JobRow
    from kong.remote.statusview import ViewAnswer


def YES(_: str) -> bool:
    return True


class State(Reports, Facades):
    """A stateful handle on the kong database, modeled on the REPL.

    Folder navigation and JobSpec selection (cd, pushd, get_folders, mkdir, mv,
    get_jobs, select_jobs) come from ``kong.selection.Selection``; drivers and
    ``refresh_jobs`` from ``kong.state_core.StateCore``; the reports from
    ``kong.state_reports.Reports``; bulk creation, sweeps, pull and logs from
    ``kong.state_facades.Facades``.
    """

    def ls(
        self, path: str | int | Job = ".", refresh: bool = False, recursive: bool = False
    ) -> tuple[list[Folder], Sequence[Job]]:
        """The folders directly in ``path`` and its jobs (all below it with ``recursive``).

        ``path`` may also be any JobSpec; then only jobs are listed. The jobs come
        as a ``JobList``: a sequence of ``Job`` whose ``rows`` give the listed
        columns without building an ORM object per job.
        """
        folder = self._ls_target(path)
        jobs: Sequence[Job]
        if folder is not None:
            children = folder.subfolders()
            if refresh:
                self.refresh_jobs(self._jobs_in([folder], recursive), force=True)
            where = self._in_folder(folder, recursive)
            jobs = JobList.query(where, config=self.config)
            if not refresh and self._from_views(jobs.rows, jobs.views):
                jobs = JobList.query(where, config=self.config, views=jobs.views)
        else:
            children = []
            jobs = self.get_jobs(path, recursive)
            if refresh:
                self.refresh_jobs(jobs, force=True)
            else:
                self._from_views(jobs, {})  # the changed jobs are reloaded in place
        db.end_read()
        return children, jobs

    def _from_views(
        self, rows: Sequence[JobRow] | Sequence[Job], views: dict[str, ViewAnswer]
    ) -> bool:
        """Bring the live jobs among ``rows`` up to date from the kong agent's shared
        status views, one per profile (``lifecycle.refresh_from_view``; nothing
        without the agent); their answers go into ``views``. True if any view answered."""
        from kong.remote import agent_enabled

        if not agent_enabled(self.config):
            return False
        groups: dict[str, list[JobRow | Job]] = defaultdict(list)
        for row in rows:
            if row.batch_job_id and not row.status.finished and row.status != JobStatus.CREATED:
                groups[row.profile].append(row)
        db.end_read()
        for name, group in groups.items():
            answer = lifecycle.refresh_from_view(self.driver(name, group[0].driver), group)
            if answer is not None:
                views[name] = answer
        return bool(views)

    def create_job(self, *args: Any, **kwargs: Any) -> Job:
        """Create a job in the current folder with the default profile's driver.

        Keyword arguments go to the driver (``command``, ``cores``, ``memory``,
        ``cwd``, ``env`` and the driver's options); ``profile=`` picks another
        profile and ``folder=`` another folder (path or Folder). ``inputs=`` lists
        laptop files and dirs (paths or ``(path, name)`` pairs) that the submit puts
        into the job's output dir (see ``kong.staging``).
        """
        db.require_writable()  # before anything is done that could not be recorded
        profile = kwargs.pop("profile", None)
        if profile is not None:
            check_text(profile, "profile", ConfigError)
        folder = self._folder(kwargs.pop("folder", None) or self.cwd)
        inputs = kwargs.pop("inputs", None)
        arguments = job_arguments(args, kwargs)
        if inputs is not None:
            from kong.staging import check_inputs

            arguments["inputs"] = check_inputs(inputs)
        driver = self.driver(self.config.profile(profile or self.profile).name)
        path = folder.path
        try:
            job = lifecycle.create(driver, folder, **arguments)
        except IntegrityError:  # its folder's row went between our lookup and the insert
            raise NoSuchFolder(f"folder {path} was removed meanwhile") from None
        job.config = self.config
        forget_collections()
        return job

    def submit_job(
        self,
        name: JobSpec | Sequence[JobSpec],
        confirm: Confirmation = YES,
        recursive: bool = False,
        progress: ProgressCallback | None = None,
        force: bool = False,
    ) -> list[Job]:
        """Submit the selected jobs that are still CREATED; returns them.

        A job whose earlier submission was cut off is first looked up on the
        cluster. When kong cannot tell whether it got there (see
        ``kong.lifecycle``), it is not submitted again and a ``DriverError`` says
        so, unless ``force``: then it is submitted as a new attempt."""
        db.require_writable()  # before anything is done that could not be recorded
        jobs = [j for j in self.select_jobs(name, recursive) if j.status == JobStatus.CREATED]
        if not jobs or not confirm(f"Submit {len(jobs)} job(s)?"):
            return []
        self._each_profile(jobs, lambda d, g: lifecycle.submit(d, g, progress, force=force))
        return jobs

    def kill_job(
        self,
        name: JobSpec | Sequence[JobSpec],
        recursive: bool = False,
        confirm: Confirmation = YES,
    ) -> list[Job]:
        """Kill the selected jobs that are queued, running, UNKNOWN or being submitted;
        returns them. Killed jobs read FAILED when this returns; a job the scheduler
        refused to kill keeps its status, and a ``DriverError`` says which and why."""
        db.require_writable()  # before anything is done that could not be recorded
        live = (JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.UNKNOWN)
        selected = self.select_jobs(name, recursive)
        candidates = [j for j in selected if j.status in live or j.status == JobStatus.CREATED]
        load_job_data(candidates)
        jobs = [j for j in candidates if j.status in live or lifecycle.in_flight(j)]
        if not jobs or not confirm(f"Kill {len(jobs)} job(s)?"):
            return []
        self._each_profile(jobs, lifecycle.kill)
        return jobs

    def resubmit_job(
        self,
        name: JobSpec | Sequence[JobSpec],
        confirm: Confirmation = YES,
        recursive: bool = False,
        failed_only: bool = False,
        progress: ProgressCallback | None = None,
        reason: str | Sequence[str] | None = None,
        walltime: str | None = None,
        memory: str | None = None,
        cores: str | int | None = None,
    ) -> list[Job]:
        """Run the selected jobs again (only FAILED ones with ``failed_only``; only those
        that ended for one of ``reason``, e.g. ``"timeout"``, ``["OUT_OF_MEMORY"]``).

        ``walltime`` (``"x2"``, ``"+1:00:00"``, ``"4:00:00"``), ``memory`` (``"x1.5"``,
        ``"+4G"``, ``"8G"``) and ``cores`` (``"x2"``, ``"+2"``, ``4``) change what the new
        attempts ask for, capped at the queue's limits (see ``kong.retry``); a job that
        has its queue's maximum already is not resubmitted (``DriverError``)."""
        db.require_writable()  # before anything is done that could not be recorded
        changes = self.resubmit_changes(walltime, memory, cores)
        jobs = self.resubmit_selection(name, recursive, failed_only, reason)
        if not jobs or not confirm(f"Resubmit {len(jobs)} job(s)?"):
            return []
        self._each_profile(jobs, lambda d, g: lifecycle.resubmit(d, g, progress,
                                                                 changes=changes))
        return jobs

    @staticmethod
    def resubmit_changes(walltime: str | None = None, memory: str | None = None,
                         cores: str | int | None = None) -> list[retry.Change]:
        """The resource changes of a resubmit, checked (``RetryError``: one line)."""
        return retry.parse_changes(walltime, memory, None if cores is None else str(cores))

    def resubmit_selection(
        self,
        name: JobSpec | Sequence[JobSpec],
        recursive: bool = False,
        failed_only: bool = False,
        reason: str | Sequence[str] | None = None,
    ) -> list[Job]:
        """The jobs ``resubmit_job`` would run again: the selected ones, only FAILED
        ones with ``failed_only``, only those that ended for one of ``reason``."""
        reasons = [retry.parse_reason(r) for r in
                   ([reason] if isinstance(reason, str) else (reason or []))]
        jobs = self.select_jobs(name, recursive)
        if failed_only:
            jobs = [j for j in jobs if j.status == JobStatus.FAILED]
        if reasons:
            load_job_data(jobs)
            jobs = [j for j in jobs if j.status.finished and retry.reason_matches(
                (j.data or {}).get("end_reason"), reasons)]
        return jobs

    def rm(
        self,
        name: str | int | Job | Folder | Sequence[str | int | Job | Folder],
        recursive: bool = False,
        confirm: Confirmation = lambda _: True,
        threads: int | None = 1,
    ) -> bool:
        """Remove jobs (their files too) or folders (``recursive`` needed); ``name`` may
        be a list of them, removed after one confirmation."""
        db.require_writable()  # before anything is done that could not be recorded
        folders: list[Folder] = []
        jobs: list[Job] = []
        names: list[Any] = list(name) if isinstance(name, (list, tuple)) else [name]
        for one in names:  # each checked by _rm_targets (a TypeError for a wrong type)
            more_folders, more_jobs = self._rm_targets(one)
            folders.extend(f for f in more_folders if f not in folders)
            jobs.extend(more_jobs)
        self._check_rm(folders, recursive)
        # A folder inside another one removed here goes with it (the database cascades).
        inner = {i for f in folders for i in f.descendant_ids() if i != f.folder_id}
        folders = [f for f in folders if f.folder_id not in inner]
        for folder in folders:
            jobs.extend(self._jobs_in([folder], recursive=True))
        jobs = list({j.job_id: j for j in jobs}.values())
        what = []
        if folders:
            what.append(f"{len(folders)} folder(s)")
        what.append(f"{len(jobs)} job(s)")
        if not confirm(f"Remove {' and '.join(what)}?"):
            return False
        self._each_profile(jobs, lifecycle.remove)
        if folders:
            self._remove_folders(folders)
        forget_collections()
        return True

    def _remove_folders(self, folders: list[Folder]) -> None:
        """Delete folder rows once no job is left in them.

        Another kong may create or move jobs into them while their jobs are being
        removed: the database would cascade the delete to those rows while their
        jobs run on. Such latecomers are removed through their drivers (killed, files
        deleted) first, checked again in the same write transaction as the delete.
        """
        gone = {i for folder in folders for i in folder.descendant_ids()}
        for _attempt in range(5):
            with db.write() as s:
                late = self._jobs_in(folders, recursive=True)
                if not late:
                    for folder in folders:
                        s.delete(folder)
            if not late:
                break
            self._each_profile(late, lifecycle.remove)
        else:
            paths = ", ".join(f.path for f in folders)
            raise FolderError(f"jobs keep being created in {paths}; its folders are kept")
        # The database cascaded the delete to folders we never loaded. Forget only
        # those: a script still holds (and uses) the other Folder objects.
        for obj in list(s.identity_map.values()):
            if isinstance(obj, Folder) and obj.folder_id in gone:
                s.expunge(obj)
        if self.cwd.folder_id in gone:
            self.cwd = Folder.get_root()

    def wait(
        self,
        jobspecs: JobSpec | Sequence[JobSpec],
        recursive: bool = False,
        notify: bool = True,
        timeout: int | None = None,
        poll_interval: int | float | None = None,
        update_interval: timedelta | None = None,
        progress: bool = False,
    ) -> Iterable[list[Job]] | None:
        """Wait until every selected job is finished (COMPLETED or FAILED).

        With ``progress`` this returns an iterator yielding the jobs after each
        poll; otherwise it blocks. Raises ``TimeoutError`` after ``timeout`` s.
        With ``notify``, the config's notification targets hear of the result.
        """
        jobs = self.select_jobs(jobspecs, recursive)
        it = self._wait_iter(jobs, notify, timeout, poll_interval, update_interval)
        if progress:
            return it
        for _ in it:
            pass
        return None

    def _wait_iter(
        self,
        jobs: list[Job],
        notify: bool,
        timeout: float | None,
        poll_interval: float | None,
        update_interval: timedelta | None,
    ) -> Iterator[list[Job]]:
        from kong.notify import Notifier

        notifier = Notifier(self.config) if notify else None
        if poll_interval is None:
            groups = self._by_profile(jobs)
            poll_interval = max(
                (self.driver(p).default_poll_interval for p in groups), default=1.0
            )
        start = last_update = time.monotonic()
        try:
            while True:
                live = [j for j in jobs if not j.status.finished]
                if gone := self._removed_elsewhere(live):  # rm'd by another process
                    jobs = [j for j in jobs if j.job_id not in gone]
                    live = [j for j in live if j.job_id not in gone]
                self.refresh_jobs(live)
                yield jobs
                lifecycle.check_waitable(jobs)
                if all(lifecycle.settled(j) for j in jobs):
                    break
                now = time.monotonic()
                if timeout is not None and now - start > timeout:
                    raise TimeoutError(_not_finished(jobs, timeout))
                if (
                    notifier is not None
                    and update_interval is not None
                    and now - last_update > update_interval.total_seconds()
                ):
                    last_update = now
                    notifier.progress(jobs, now - start)
                time.sleep(poll_interval)
        except TimeoutError:
            if notifier is not None:
                notifier.timeout(jobs, timeout or 0)
            raise
        if notifier is not None:
            notifier.finished(jobs, time.monotonic() - start)


def _not_finished(jobs: Sequence[Job], timeout: float) -> str:
    """``2 job(s) not finished after 1 s: 8 (RUNNING), 9 (SUBMITTED)``: only the
    unfinished ones are counted, and the first few named."""
    waiting = [j for j in jobs if not j.status.finished and j.status != JobStatus.CREATED]
    named = ", ".join(f"{j.job_id} ({j.status.name})" for j in waiting[:5])
    more = f" and {len(waiting) - 5} more" if len(waiting) > 5 else ""
    return f"{len(waiting)} job(s) not finished after {timeout:g} s: {named}{more}"


# kong-batch's exception names, for scripts that import them from kong.state
__all__ = [
    "YES",
    "CannotCreateError",
    "CannotRemoveIsFolder",
    "CannotRemoveRoot",
    "Confirmation",
    "DoesNotExist",
    "IsAFolderError",
    "JobSpec",
    "KongError",
    "MissingParentError",
    "MoveResult",
    "State",
]
