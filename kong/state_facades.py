"""The State API's facades over ``kong.bulk`` (many jobs at once, sweeps),
``kong.staging`` (``pull``) and ``kong.logview`` (logs): each a thin call into the
module that does the work."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kong.errors import ArgumentValueError
from kong.jobspec import check_text
from kong.model.folder import Folder
from kong.model.job import Job
from kong.selection import JobSpec
from kong.state_core import Confirmation, StateCore

if TYPE_CHECKING:
    from kong.drivers.base import ProgressCallback
    from kong.staging import PullResult


class Facades(StateCore):
    """Many jobs at once (kong/bulk.py), pull (kong/staging.py), logs (kong/logview.py)."""

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
            jobs, lambda d, g: (d, staging.plan(d, g, dest_of, include, exclude, checksum,
                                                whole_if_new=not dry_run)))
        result = staging.PullResult(target, [p for _, ps in plans.values() for p in ps],
                                    dry_run)
        if not dry_run:
            staging.execute(list(plans.values()), result, progress, include, exclude,
                            remove_remote)
        return result

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
