"""The State API: kong's one entry point for the CLI, the REPL and Python users.

A ``State`` has a current folder and a default profile. Methods that touch many
jobs resolve their JobSpecs to rows, group the rows by profile and hand each
group to its driver in one call; groups of different profiles run concurrently.

JobSpecs:
  * a job id (``1234`` or ``"1234"``): that job, wherever it is;
  * a range ``"a..b"``: every job with an id from a to b inclusive, anywhere;
    ``"dir/a..b"``: the same, restricted to the folder ``dir``;
  * a folder path (absolute, relative, with ``..``): the jobs directly in it, or
    in it and all folders below with ``recursive``;
  * ``"dir/*"``: the jobs directly in ``dir``;
  * a glob on folder names (``"runs/2024-*"``): the jobs of every matching folder;
  * a ``Job`` instance.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import aliased, undefer

from kong import db, lifecycle
from kong.config import Config
from kong.drivers import driver_for_profile
from kong.errors import FolderError, JobSpecError, KongError
from kong.model.folder import Folder, check_folder_name, subtree_ids
from kong.model.job import Job, JobList, JobStatus

if TYPE_CHECKING:
    from kong.drivers.base import DriverBase, ProgressCallback

JobSpec = str | int | Job
Confirmation = Callable[[str], bool]

_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")
_GLOB_CHARS = re.compile(r"[*?\[]")
T = TypeVar("T")


def YES(_: str) -> bool:
    return True


class State:
    """A stateful handle on the kong database, modeled on the REPL."""

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

    def driver(self, profile: str) -> DriverBase:
        return driver_for_profile(self.config, profile, db.install_id())

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
        drivers = {name: self.driver(name) for name in groups}
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

    # -- folders ------------------------------------------------------------------------

    def _folder(self, path: str | Folder) -> Folder:
        if isinstance(path, Folder):
            return path
        folder = Folder.find_by_path(path, self.cwd)
        if folder is None:
            raise FolderError(f"no such folder: {path}")
        return folder

    @contextmanager
    def pushd(self, folder: Folder | str) -> Iterator[None]:
        previous = self.cwd
        self.cwd = self._folder(folder)
        try:
            yield
        finally:
            self.cwd = previous

    def cd(self, target: str | Folder = ".") -> None:
        if isinstance(target, str) and target == "":
            self.cwd = Folder.get_root()
            return
        self.cwd = self._folder(target)

    def get_folders(self, pattern: str) -> list[Folder]:
        """The folders a path matches; each component may be a glob on folder names."""
        if not _GLOB_CHARS.search(pattern):
            folder = Folder.find_by_path(pattern, self.cwd)
            return [folder] if folder is not None else []
        current = [Folder.get_root() if pattern.startswith("/") else self.cwd]
        for part in pattern.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                current = [f.parent or f for f in current]
            elif _GLOB_CHARS.search(part):
                current = [
                    c for f in current for c in f.subfolders() if fnmatch.fnmatchcase(c.name, part)
                ]
            else:
                current = [c for f in current if (c := f.subfolder(part)) is not None]
        unique = {f.folder_id: f for f in current}
        return list(unique.values())

    def mkdir(
        self, path: str, exist_ok: bool = False, create_parent: bool = False
    ) -> Folder | None:
        """Make a folder. Returns it (the existing one with ``exist_ok``)."""
        existing = Folder.find_by_path(path, self.cwd)
        if existing is not None:
            if exist_ok:
                return existing
            raise FolderError(f"folder exists: {path}")
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if not parts:
            raise FolderError(f"cannot create {path!r}")
        for part in parts:
            if part != "..":
                check_folder_name(part)
        head = ("/" if path.startswith("/") else "") + "/".join(parts[:-1])
        parent = Folder.find_by_path(head, self.cwd) if head else self.cwd
        if parent is None:
            if not create_parent:
                raise FolderError(f"no such folder: {head} (use create_parent / mkdir -p)")
            parent = self.mkdir(head, exist_ok=True, create_parent=True)
            assert parent is not None
        return parent.add_folder(parts[-1])

    def mv(self, source: str | Job | Folder, dest: str | Folder) -> list[Job | Folder]:
        """Move jobs or folders into a folder, or rename a folder (``dest`` does not exist)."""
        folders: list[Folder] = []
        jobs: list[Job] = []
        if isinstance(source, Folder):
            folders = [source]
        elif isinstance(source, Job):
            jobs = [source]
        else:
            folders = self.get_folders(source)
            if not folders:
                jobs = self.get_jobs(source)
        dest_folder = dest if isinstance(dest, Folder) else Folder.find_by_path(dest, self.cwd)

        if dest_folder is None:
            assert isinstance(dest, str)
            if jobs or len(folders) != 1:
                raise FolderError(f"no such folder: {dest}")
            # rename (and maybe move) the one folder
            head, _, new_name = dest.rstrip("/").rpartition("/")
            check_folder_name(new_name)
            parent = self._folder(head or ("/" if dest.startswith("/") else "."))
            self._check_move(folders[0], parent, new_name)
            with db.write():
                folders[0].name = new_name
                folders[0].parent_id = parent.folder_id
            db.session().expire(folders[0], ["parent"])
            return [folders[0]]

        for folder in folders:
            self._check_move(folder, dest_folder, folder.name)
        with db.write():
            for folder in folders:
                folder.parent_id = dest_folder.folder_id
            for job in jobs:
                job.folder_id = dest_folder.folder_id
        for obj in [*folders, *jobs]:
            db.session().expire(obj, ["parent"] if isinstance(obj, Folder) else ["folder"])
        return [*folders, *jobs]

    def _check_move(self, folder: Folder, parent: Folder, name: str) -> None:
        if folder.parent_id is None:
            raise FolderError("cannot move the root folder")
        if parent.folder_id in folder.descendant_ids():
            raise FolderError(f"cannot move {folder.path} into itself ({parent.path})")
        clash = parent.subfolder(name)
        if clash is not None and clash.folder_id != folder.folder_id:
            raise FolderError(f"{clash.path} already exists")

    # -- selecting jobs -----------------------------------------------------------------

    def get_jobs(self, name: JobSpec, recursive: bool = False) -> list[Job]:
        """The jobs a JobSpec selects (see the module doc). Unknown ids, empty ranges,
        bad ranges and missing folders raise ``JobSpecError``/``FolderError``."""
        s = db.session()
        if isinstance(name, Job):
            return [name]
        if isinstance(name, bool) or not isinstance(name, (int, str)):
            raise JobSpecError(f"not a JobSpec: {name!r}")
        if isinstance(name, int) or name.strip().isdigit():
            job_id = int(name)
            job = s.get(Job, job_id, populate_existing=True)  # another process may have changed it
            if job is None:
                raise Job.DoesNotExist(f"no job with id {job_id}")
            return [job]

        spec = name.strip()
        head, _, tail = spec.rpartition("/")
        if "/" in spec and head == "":
            head = "/"
        if (m := _RANGE.match(tail)) is not None:
            start, end = int(m.group(1)), int(m.group(2))
            if start > end:
                raise JobSpecError(f"bad range {tail}: {start} is after {end}")
            query = select(Job).where(Job.job_id.between(start, end))
            if "/" in spec:
                folder = self._folder(head)
                query = query.where(self._in_folder(folder, recursive))
            jobs = list(s.scalars(query.order_by(Job.job_id)))
            if not jobs:
                raise JobSpecError(f"no jobs in range {spec}")
            return jobs
        if tail == "*":
            folders = self.get_folders(head or ".")
            if not folders:
                raise FolderError(f"no such folder: {head}")
            return self._jobs_in(folders, recursive)
        folders = self.get_folders(spec)
        if not folders:
            raise JobSpecError(f"no such folder or job: {spec}")
        return self._jobs_in(folders, recursive)

    def _in_folder(self, folder: Folder, recursive: bool) -> Any:
        if not recursive:
            return Job.folder_id == folder.folder_id
        return Job.folder_id.in_(subtree_ids(folder.folder_id))

    def _jobs_in(self, folders: Sequence[Folder], recursive: bool) -> list[Job]:
        s = db.session()
        jobs: list[Job] = []
        for folder in folders:
            query = select(Job).where(self._in_folder(folder, recursive)).order_by(Job.job_id)
            jobs.extend(s.scalars(query))
        if len(folders) > 1:
            jobs = list({j.job_id: j for j in jobs}.values())
        return jobs

    def select_jobs(self, names: JobSpec | Sequence[JobSpec], recursive: bool) -> list[Job]:
        if isinstance(names, (str, int, Job)):
            return self.get_jobs(names, recursive)
        found: dict[int, Job] = {}
        for name in names:
            for job in self.get_jobs(name, recursive):
                found[job.job_id] = job
        return list(found.values())

    # -- listing ------------------------------------------------------------------------

    def ls(
        self, path: str = ".", refresh: bool = False, recursive: bool = False
    ) -> tuple[list[Folder], Sequence[Job]]:
        """The folders directly in ``path`` and its jobs (all below it with ``recursive``).

        ``path`` may also be any JobSpec; then only jobs are listed. The jobs come
        as a ``JobList``: a sequence of ``Job`` whose ``rows`` give the listed
        columns without building an ORM object per job.
        """
        folders = self.get_folders(path)
        jobs: Sequence[Job]
        if len(folders) == 1:
            folder = folders[0]
            children = folder.subfolders()
            if refresh:
                self.refresh_jobs(self._jobs_in([folder], recursive))
            jobs = JobList.query(self._in_folder(folder, recursive), config=self.config)
        else:
            children = []
            jobs = self.get_jobs(path, recursive)
            if refresh:
                self.refresh_jobs(jobs)
        db.end_read()
        return children, jobs

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
        """Selected keys of the ``data`` of many jobs, without loading whole rows."""
        out: dict[int, dict[str, Any]] = {}
        s = db.session()
        for start in range(0, len(job_ids), 5000):
            chunk = job_ids[start : start + 5000]
            for job_id, data in s.execute(
                select(Job.job_id, Job.data).where(Job.job_id.in_(chunk))
            ):
                out[job_id] = {k: (data or {}).get(k) for k in keys}
        return out

    # -- jobs ---------------------------------------------------------------------------

    def create_job(self, *args: Any, **kwargs: Any) -> Job:
        """Create a job in the current folder with the default profile's driver.

        Keyword arguments go to the driver (``command``, ``cores``, ``memory``,
        ``cwd``, ``env`` and the driver's options); ``profile=`` picks another
        profile and ``folder=`` another folder (path or Folder).
        """
        profile = kwargs.pop("profile", None) or self.profile
        folder = self._folder(kwargs.pop("folder", None) or self.cwd)
        driver = self.driver(self.config.profile(profile).name)
        job = lifecycle.create(driver, folder, *args, **kwargs)
        job.config = self.config
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
    ) -> list[Job]:
        """Run the selected jobs again (only FAILED ones with ``failed_only``)."""
        jobs = self.select_jobs(name, recursive)
        if failed_only:
            jobs = [j for j in jobs if j.status == JobStatus.FAILED]
        if not jobs or not confirm(f"Resubmit {len(jobs)} job(s)?"):
            return []
        self._each_profile(jobs, lambda d, g: lifecycle.resubmit(d, g, progress))
        return jobs

    def refresh_jobs(self, jobs: Sequence[Job]) -> Sequence[Job]:
        """Ask the schedulers for the current status of ``jobs`` (one query per profile).

        Jobs whose submission is in flight are reconciled first. Jobs another kong
        process removed meanwhile are skipped (and detached from this process's
        session), not written back."""
        pending = [j for j in jobs if not j.status.finished]
        gone = self._removed_elsewhere(pending)
        pending = [j for j in pending if j.job_id not in gone]
        created = [j for j in pending if j.status == JobStatus.CREATED]
        if created:
            _load_data(created)
            pending = [j for j in pending if j.status != JobStatus.CREATED
                       or lifecycle.in_flight(j)]
        self._each_profile(pending, lifecycle.refresh)
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
        name: str | Job | Folder,
        recursive: bool = False,
        confirm: Confirmation = lambda _: True,
        threads: int | None = 1,
    ) -> bool:
        """Remove jobs (their files too) or folders (``recursive`` needed)."""
        folders: list[Folder] = []
        jobs: list[Job] = []
        if isinstance(name, Folder):
            folders = [name]
        elif isinstance(name, Job):
            jobs = [name]
        else:
            spec = name.strip()
            if spec.rstrip("/") == "" and spec.startswith("/"):
                raise FolderError("cannot remove the root folder")
            _head, _, tail = spec.rpartition("/")
            is_job_spec = spec.isdigit() or _RANGE.match(tail) is not None or tail == "*"
            if not is_job_spec:
                folders = self.get_folders(spec)
            if not folders:
                jobs = self.get_jobs(spec)
        if any(f.parent_id is None for f in folders):
            raise FolderError("cannot remove the root folder")
        if folders and not recursive:
            paths = ", ".join(f.path for f in folders)
            raise FolderError(f"{paths} is a folder: use recursive (rm -r) to remove it")
        for folder in folders:
            jobs.extend(self._jobs_in([folder], recursive=True))
        what = []
        if folders:
            what.append(f"{len(folders)} folder(s)")
        what.append(f"{len(jobs)} job(s)")
        if not confirm(f"Remove {' and '.join(what)}?"):
            return False
        self._each_profile(jobs, lifecycle.remove)
        if folders:
            cwd_id = self.cwd.folder_id
            with db.write() as s:
                for folder in folders:
                    s.delete(folder)
            s.expunge_all()  # the database cascaded the delete to folders we never loaded
            self.cwd = s.get(Folder, cwd_id) or Folder.get_root()
        return True

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
                    raise TimeoutError(f"{len(jobs)} job(s) not finished after {timeout} s")
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


def _load_data(jobs: Sequence[Job]) -> None:
    """Load the deferred ``data`` of many jobs in a few queries."""
    s = db.session()
    ids = [j.job_id for j in jobs]
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        s.execute(select(Job).where(Job.job_id.in_(chunk)).options(undefer(Job.data))).all()


__all__ = ["YES", "Confirmation", "JobSpec", "KongError", "State"]
