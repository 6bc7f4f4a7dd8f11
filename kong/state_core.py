"""The State API's core: the current folder and default profile, each profile's driver,
jobs handed to their drivers grouped by profile (the groups concurrently), and the
status refresh the other parts use.

``kong.state.State`` is this core, its reports (``kong.state_reports``), its facades
over bulk creation, staging and logs (``kong.state_facades``) and the job and folder
operations of ``kong.state`` itself: mixins on one core, so that each part reads the
rest through ``self`` as one class and the public API stays ``kong.state.State``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Self, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import undefer

from kong import db, lifecycle
from kong.config import Config
from kong.drivers import driver_for_profile
from kong.model.folder import Folder
from kong.model.job import Job, JobStatus
from kong.selection import Selection

if TYPE_CHECKING:
    from kong.drivers.base import DriverBase

Confirmation = Callable[[str], bool]

T = TypeVar("T")


class StateCore(Selection):
    """A current folder and a default profile on the kong database (folder navigation
    and JobSpec selection come from ``kong.selection.Selection``)."""

    def __init__(self, config: Config, cwd: Folder, profile: str | None = None) -> None:
        self.config = config
        self.cwd = cwd
        self.profile = config.profile(profile).name

    @classmethod
    def get_instance(cls, profile: str | None = None) -> Self:
        """Read the config, open (create, migrate) the database, start in ``/``."""
        config = Config()
        db.init(config.database_url)
        return cls(config, Folder.get_root(), profile=profile)

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
        load_job_data([j for g in groups.values() for j in g])
        db.end_read()  # never hold a read snapshot while clusters are talked to
        if len(groups) == 1:
            ((name, group),) = groups.items()
            return {name: action(drivers[name], group)}
        with ThreadPoolExecutor(max_workers=min(8, len(groups))) as pool:
            futures = {name: pool.submit(action, drivers[name], g) for name, g in groups.items()}
            return {name: f.result() for name, f in futures.items()}

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
            load_job_data(created)
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

    def load_data(self, jobs: Sequence[Job]) -> None:
        """Read the ``data`` (scheduler details, history) of many jobs in a few queries,
        before showing them all: it is loaded lazily, one query per job, otherwise."""
        load_job_data(jobs)


def load_job_data(jobs: Sequence[Job]) -> None:
    """Load the deferred ``data`` of many jobs in a few queries."""
    s = db.session()
    ids = [j.job_id for j in jobs]
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        s.execute(select(Job).where(Job.job_id.in_(chunk)).options(undefer(Job.data))).all()
