"""The State API: kong's one entry point for the CLI, the REPL and Python users.

A ``State`` has a current folder and a default profile. Methods that touch many
jobs resolve their JobSpecs to rows, group the rows by profile and hand each
group to its driver in one call; groups of different profiles run concurrently.

JobSpecs (ids, ``dir/id``, ranges, paths, globs) are described, and resolved, in
``kong.selection``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, undefer

from kong import db, lifecycle, retry
from kong.config import Config
from kong.drivers import driver_for_profile
from kong.errors import (
    ArgumentValueError,
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
from kong.selection import JobSpec, MoveResult, Selection, forget_collections

if TYPE_CHECKING:
    from kong.drivers.base import DriverBase, ProgressCallback
    from kong.model.job import JobRow
    from kong.remote.statusview import ViewAnswer
    from kong.staging import PullResult

Confirmation = Callable[[str], bool]

T = TypeVar("T")


def YES(_: str) -> bool:
    return True


class State(Selection):
    """A stateful handle on the kong database, modeled on the REPL.

    Folder navigation and JobSpec selection (cd, pushd, get_folders, mkdir, mv,
    get_jobs, select_jobs) come from ``kong.selection.Selection``.
    """

    def __init__(self, config: Config, cwd: Folder, profile: str | None = None) -> None:
        self.config = config
        self.cwd = cwd
        self.profile = config.profile(profile).name

    @classmethod
    def get_instance(cls, profile: str | None = None) -> State:
        """Read the config, open (create, migrate) the database, start in ``/``."""
        config = Config()
        db.init(config.database_url)
        return cls(config, Folder.get_root(), profile=profile)

    # -- drivers ------------------------------------------------------------------------

    @property
    def default_driver(self) -> DriverBase:
        return self.driver(self.profile)

    def driver(self, profile: str, driver_name: str | None = None) -> DriverBase:
        """The driver of ``profile``; with the ``driver_name`` its jobs were made with, a
        stand-in that lists and removes them when the profile left the config."""
        return driver_for_profile(self.config, profile, db.install_id(), driver_name)

    def _by_profile(self, jobs: Iterable[Job]) -> dict[str, list[Job]]:
        groups: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            groups[job.profile].append(job)
        return groups

    def _each_profile(
        self, jobs: Iterable[Job], action: Callable[[DriverBase, list[Job]], T]
    ) -> dict[str, T]:
        """Run ``action(driver, jobs_of_that_profile)`` for every profile, concurrently."""
        groups = self._by_profile(jobs)
        if not groups:
            return {}
        drivers = {name: self.driver(name, group[0].driver) for name, group in groups.items()}
        for name, group in groups.items():
            for job in group:
                job.config = self.config
                job.ensure_driver_instance(drivers[name])
        # Drivers read every job's deferred ``data``: load it in a few queries rather
        # than one per job, and before the threads below, which share this process's
        # one session (two lazy loads at once from two threads break it).
        _load_data([j for g in groups.values() for j in g])
        db.end_read()  # never hold a read snapshot while clusters are talked to
        if len(groups) == 1:
            ((name, group),) = groups.items()
            return {name: action(drivers[name], group)}
        with ThreadPoolExecutor(max_workers=min(8, len(groups))) as pool:
            futures = {name: pool.submit(action, drivers[name], g) for name, g in groups.items()}
            return {name: f.result() for name, f in futures.items()}

    # -- listing ------------------------------------------------------------------------

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

    def status_counts(
        self, folder: str | Folder = ".", recursive: bool = True
    ) -> dict[JobStatus, int]:
        """Jobs per status in a folder (and below it), counted by the database."""
        target = self._folder(folder)
        query = (
            select(Job.status, func.count())
            .where(self._in_folder(target, recursive))
            .group_by(Job.status)
        )
        counts = {status: 0 for status in JobStatus}
        for status, n in db.session().execute(query):
            counts[status] = n
        return counts

    def folder_counts(self, folders: Sequence[Folder]) -> dict[int, dict[JobStatus, int]]:
        """For each folder, jobs per status in it and below it: one query for all."""
        result: dict[int, dict[JobStatus, int]] = {
            f.folder_id: {s: 0 for s in JobStatus} for f in folders
        }
        if not folders:
            return result
        top = (
            select(Folder.folder_id.label("top"), Folder.folder_id.label("fid"))
            .where(Folder.folder_id.in_([f.folder_id for f in folders]))
            .cte("tops", recursive=True)
        )
        child = aliased(Folder)
        top = top.union_all(
            select(top.c.top, child.folder_id).join(top, child.parent_id == top.c.fid)
        )
        query = (
            select(top.c.top, Job.status, func.count())
            .join(Job, Job.folder_id == top.c.fid)
            .group_by(top.c.top, Job.status)
        )
        for top_id, status, n in db.session().execute(query):
            result[top_id][status] = n
        return result

    def sizes(self, jobs: Sequence[Job]) -> dict[int, int]:
        """Bytes in each job's output dir (one command per profile)."""
        result: dict[int, int] = {}
        for sizes in self._each_profile(jobs, lambda d, g: d.sizes(g)).values():
            result.update(sizes)
        return result

    def job_data(self, job_ids: Sequence[int], keys: Sequence[str]) -> dict[int, dict[str, Any]]:
        """Selected keys of the ``data`` of many jobs, without loading whole rows; a key
        that is one of a job's sweep parameters gives the parameter's value."""
        out: dict[int, dict[str, Any]] = {}
        s = db.session()
        for start in range(0, len(job_ids), 5000):
            chunk = job_ids[start : start + 5000]
            for job_id, data in s.execute(
                select(Job.job_id, Job.data).where(Job.job_id.in_(chunk))
            ):
                data = data or {}
                # a sweep's parameter first (`ls -x seed`), else the data's own key
                params = data.get("params") or {}
                out[job_id] = {k: params[k] if k in params else data.get(k) for k in keys}
        return out

    def job_accounting(self, job_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Times (submit, start, end, queue wait, run time), end reason, usage and
        efficiency of many jobs, from what kong stored (``kong.usage.job_accounting``)."""
        from kong.usage import job_accounting

        out: dict[int, dict[str, Any]] = {}
        s = db.session()
        for start in range(0, len(job_ids), 5000):
            chunk = job_ids[start : start + 5000]
            for job_id, memory, data in s.execute(
                select(Job.job_id, Job.memory, Job.data).where(Job.job_id.in_(chunk))
            ):
                out[job_id] = job_accounting(data or {}, memory)
        return out

    def job_run_times(self, job_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """End reason and run time (seconds; None before the start) of many jobs, for
        a listing: read with the database's JSON functions, never a whole ``data``."""
        from kong.usage import as_datetime

        data = Job.data
        columns = (Job.job_id, data["end_reason"].as_string(), data["start_time"].as_string(),
                   data["end_time"].as_string(), data[("usage", "elapsed")].as_float())
        out: dict[int, dict[str, Any]] = {}
        now = time.time()
        s = db.session()
        wanted = set(job_ids)
        if len(wanted) > 5000 and max(wanted) - min(wanted) < 4 * len(wanted):
            # a big listing is mostly one id range: one scan of it beats IN lists
            queries = [select(*columns).where(Job.job_id.between(min(wanted), max(wanted)))]
        else:
            queries = [select(*columns).where(Job.job_id.in_(job_ids[i : i + 5000]))
                       for i in range(0, len(job_ids), 5000)]
        for query in queries:
            for job_id, reason, started, ended, elapsed in s.execute(query):
                if job_id not in wanted:
                    continue
                run = None
                if ended and elapsed is not None:
                    run = float(elapsed)
                elif started:
                    begin, end = as_datetime(started), as_datetime(ended)
                    if begin is not None:
                        stop = end.timestamp() if end is not None else now
                        run = max(0.0, stop - begin.timestamp())
                out[job_id] = {"end_reason": reason, "run_time": run}
        return out

    def report(
        self, specs: JobSpec | Sequence[JobSpec] = ".", recursive: bool = False,
        query: bool = True,
    ) -> list[Any]:
        """What the selected jobs asked for and used, per folder (``kong.report``).

        Finished jobs that have no usage stored are asked for it first, in one
        scheduler query per profile (``query=False``: stored data only).
        """
        from kong import report

        jobs = self.select_jobs(specs, recursive)
        if query:
            _load_data(jobs)
            missing = [j for j in jobs if j.status.finished and j.batch_job_id
                       and not (j.data or {}).get("usage")]
            if missing:
                db.require_writable()
                self._each_profile(missing, lifecycle.backfill_usage)
        _load_data(jobs)
        paths: dict[int, str] = {}
        figures = []
        for job in jobs:
            if job.folder_id not in paths:
                paths[job.folder_id] = job.folder.path
            figures.append(report.JobFigures(paths[job.folder_id], job.status.name,
                                             job.cores, job.memory, job.data or {}))
        db.end_read()
        return report.build(figures)

    # -- jobs ---------------------------------------------------------------------------

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

    # -- many jobs at once (kong/bulk.py) -----------------------------------------------

    def create_jobs(self, jobs: Iterable[str | Mapping[str, Any]], folder: str | Folder |
                    None = None, profile: str | None = None, **common: Any) -> list[Job]:
        """Create many jobs in one transaction (all or none) with one profile's driver.

        Each item is a command, or a mapping of ``create_job``'s keywords (``folder=``
        an existing folder; ``params=`` a mapping kept as the job's parameters, as a
        sweep keeps them). ``common`` keywords apply to every item that does not set
        its own."""
        from kong import bulk

        return bulk.create_jobs(self, jobs, folder=folder, profile=profile, **common)

    def sweep(self, command: str, parameters: Mapping[str, Iterable[Any]] | Sequence[str],
              zip: bool = False, folders: str | None = None, folder: str | Folder | None = None,
              profile: str | None = None, confirm: Confirmation | None = None,
              **common: Any) -> list[Job]:
        """One job per point of a parameter sweep, in one transaction (all or none).

        ``command`` has ``{name}`` placeholders, each filled with the point's value
        quoted for the shell (``shlex.quote``). ``parameters`` is a mapping
        (``{"x": [0.1, 0.2], "seed": range(1, 101)}``) or a list of ``"x=0.1,0.2"`` /
        ``"seed=1..100"`` / ``"lr=0..1:0.25"`` texts. The jobs are the product of the
        values (the last varying fastest), or with ``zip`` the n-th values together.
        ``folders`` (e.g. ``"x={x}"``) puts each job in that folder below ``folder``,
        made where missing. ``env`` values may hold placeholders too (not quoted).
        Each job keeps its values in ``data["params"]``. More than 10,000 jobs need
        ``confirm`` (called with the question; ``YES`` says yes)."""
        from kong import bulk

        return bulk.run_sweep(self, command, parameters, zipped=zip, folders=folders,
                              folder=folder, profile=profile, confirm=confirm, **common)

    def jobs_where(self, jobs: Sequence[Job], where: Mapping[str, Any] | Sequence[str]
                   ) -> list[Job]:
        """Those of ``jobs`` whose parameters match ``where`` (``{"x": "0.2"}``, values
        compared as text; a list of values means any of them; ``["x=0.2", "seed=1,2"]``
        as on the command line). A KEY no parameter has is looked up in the job's data."""
        ids = self.job_ids_where([j.job_id for j in jobs], where)
        return [j for j in jobs if j.job_id in ids]

    def job_ids_where(self, job_ids: Sequence[int], where: Mapping[str, Any] | Sequence[str]
                      ) -> set[int]:
        """``jobs_where`` on ids (a listing's rows), in a few queries."""
        from kong import bulk

        return bulk.matching_ids(job_ids, bulk.where_mapping(where))

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
        _load_data(candidates)
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
            _load_data(jobs)
            jobs = [j for j in jobs if j.status.finished and retry.reason_matches(
                (j.data or {}).get("end_reason"), reasons)]
        return jobs

    def refresh_jobs(self, jobs: Sequence[Job], force: bool = False) -> Sequence[Job]:
        """Ask the schedulers for the current status of ``jobs`` (one query per profile).

        Jobs whose submission is in flight are reconciled first. Jobs another kong
        process removed meanwhile are skipped (and detached from this process's
        session), not written back. With the kong agent the query is shared by every
        kong process of this user and its answer may be up to the agent's interval
        old; ``force`` asks for one that starts now."""
        pending = [j for j in jobs if not j.status.finished]
        gone = self._removed_elsewhere(pending)
        pending = [j for j in pending if j.job_id not in gone]
        created = [j for j in pending if j.status == JobStatus.CREATED]
        if created:
            _load_data(created)
            pending = [j for j in pending if j.status != JobStatus.CREATED
                       or lifecycle.in_flight(j)]
        self._each_profile(pending, lambda d, g: lifecycle.refresh(d, g, force))
        return jobs

    def _removed_elsewhere(self, jobs: Sequence[Job]) -> set[int]:
        """Ids of ``jobs`` whose rows no longer exist (removed by another process)."""
        s = db.session()
        wanted = [j.job_id for j in jobs]
        found: set[int] = set()
        for start in range(0, len(wanted), 5000):
            chunk = wanted[start : start + 5000]
            found.update(s.scalars(select(Job.job_id).where(Job.job_id.in_(chunk))))
        gone = set(wanted) - found
        for job in jobs:
            if job.job_id in gone and job in s:
                s.expunge(job)
        return gone

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

    def pull(
        self,
        spec: JobSpec | Sequence[JobSpec],
        dest: str | Path | None = None,
        recursive: bool = False,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        dry_run: bool = False,
        remove_remote: bool = False,
        progress: ProgressCallback | None = None,
        checksum: bool = False,
    ) -> PullResult:
        """Bring the output dirs of the selected jobs to ``DEST/<folder path>/<job id>/``
        (default: ``pulled/`` under the data dir): per profile one listing command and
        one stream of what is new or changed since the last pull (see ``kong.staging``).

        ``include``/``exclude``: globs on the file's path below the output dir (a glob
        without ``/`` matches the base name). ``dry_run``: plan only. ``remove_remote``:
        then delete the host's output dir of each finished job that came over whole.
        ``progress(bytes_done, bytes_total)`` is called as data arrives. ``checksum``:
        a file of the same size is unchanged only if its SHA-256 is (not its mtime).
        """
        from kong import staging

        include, exclude = list(include or ()), list(exclude or ())
        for glob in (*include, *exclude):
            check_text(glob, "a glob", ArgumentValueError)
        if remove_remote and (include or exclude):
            raise ArgumentValueError("remove_remote deletes whole output dirs: it cannot be "
                                     "combined with include or exclude")
        target = Path(dest).expanduser().absolute() if dest else staging.default_dest(self.config)
        jobs = self.select_jobs(spec, recursive)
        folders: dict[int, str] = {}
        dest_of = {}
        for job in jobs:
            if job.folder_id not in folders:
                folders[job.folder_id] = job.folder.path
            dest_of[job.job_id] = staging.job_dest(target, folders[job.folder_id], job.job_id)
        plans = self._each_profile(
            jobs, lambda d, g: (d, staging.plan(d, g, dest_of, include, exclude, checksum)))
        result = staging.PullResult(target, [p for _, ps in plans.values() for p in ps],
                                    dry_run)
        if not dry_run:
            staging.execute(list(plans.values()), result, progress, remove_remote)
        return result

    def load_data(self, jobs: Sequence[Job]) -> None:
        """Read the ``data`` (scheduler details, history) of many jobs in a few queries,
        before showing them all: it is loaded lazily, one query per job, otherwise."""
        _load_data(jobs)

    # -- logs (kong/logview.py: read from the end, bounded) ------------------------------

    def tail_log(self, job: Job, which: str = "stdout", lines: int = 10,
                 max_bytes: int | None = None) -> bytes:
        """The last ``lines`` lines of a job's stdout or stderr, at most ``max_bytes``
        (1 MiB by default) however long its lines are; only the end is read."""
        from kong import logview

        return logview.tail(job, which, lines, max_bytes or logview.DEFAULT_MAX_BYTES)

    def follow_log(self, job: Job, which: str = "stdout", lines: int = 10) -> Iterator[bytes]:
        """The last ``lines`` lines, then what the job writes: until a local job ends,
        until the caller stops for a cluster job."""
        from kong import logview

        return logview.follow(job, which, lines=lines,
                              refresh=lambda j: self.refresh_jobs([j]))

    def log_file(self, job: Job, which: str = "stdout") -> Any:
        """A local file with the whole log (a cluster log is synced to the cache first,
        fetching only what is new); None when the job has not written it yet."""
        from kong import logview

        return logview.log_file(job, which)

    # -- waiting ------------------------------------------------------------------------

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


def _load_data(jobs: Sequence[Job]) -> None:
    """Load the deferred ``data`` of many jobs in a few queries."""
    s = db.session()
    ids = [j.job_id for j in jobs]
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        s.execute(select(Job).where(Job.job_id.in_(chunk)).options(undefer(Job.data))).all()


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
