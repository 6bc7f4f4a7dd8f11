"""A job: one command, run by the driver of the profile it was created for."""

from __future__ import annotations

import enum
import gc
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple, overload

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kong import db
from kong.errors import JobDoesNotExist
from kong.model.base import Base, UTCTimestamp, utcnow

if TYPE_CHECKING:
    from kong.config import Config
    from kong.drivers.base import DriverBase
    from kong.model.folder import Folder
    from kong.remote.statusview import ViewAnswer


class JobStatus(enum.Enum):
    UNKNOWN = 0
    CREATED = 1
    SUBMITTED = 2
    RUNNING = 3
    FAILED = 4
    COMPLETED = 5

    @property
    def finished(self) -> bool:
        return self in (JobStatus.FAILED, JobStatus.COMPLETED)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_folder_status", "folder_id", "status"),
        Index("ix_jobs_profile_status", "profile", "status"),
        {"sqlite_autoincrement": True},  # a removed job's id is never handed out again
    )

    __allow_unmapped__ = True  # for _driver_instance and config, which are not columns

    Status = JobStatus
    DoesNotExist = JobDoesNotExist

    job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_job_id: Mapped[str | None] = mapped_column(String(64), index=True)
    driver: Mapped[str] = mapped_column(String(32))
    profile: Mapped[str] = mapped_column(String(128))
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.folder_id", ondelete="CASCADE"))
    command: Mapped[str] = mapped_column(Text)
    # Deferred: listing 100,000 jobs must not parse 100,000 JSON documents.
    # nullable as in migration 0001; kong always writes a dict (readers use `data or {}`)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, deferred=True, nullable=True)
    status: Mapped[JobStatus] = mapped_column(
        SAEnum(JobStatus, native_enum=False, length=16, validate_strings=True),
        default=JobStatus.CREATED,
    )
    created_at: Mapped[datetime] = mapped_column(UTCTimestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCTimestamp, default=utcnow, onupdate=utcnow)
    cores: Mapped[int] = mapped_column(Integer, default=1)
    memory: Mapped[int | None] = mapped_column(Integer)  # MB

    folder: Mapped[Folder] = relationship(back_populates="jobs")

    _driver_instance: DriverBase | None = None
    #: the config of the State that handed the job out (None: read the config file)
    config: Config | None = None

    def reload(self) -> None:
        """Read this row again from the database (kong-batch's ``reload``)."""
        db.session().refresh(self)

    def __repr__(self) -> str:
        return f"Job({self.job_id}, {self.status.name}, {self.command[:40]!r})"

    # -- data helpers -------------------------------------------------------------------

    def set_data(self, **values: Any) -> None:
        """Merge ``values`` into ``data`` (a new dict, so the change is persisted).

        Nothing is written when every value is already there: a refresh of 10,000
        queued jobs should not rewrite 10,000 rows.
        """
        current = self.data or {}
        if all(key in current and current[key] == value for key, value in values.items()):
            return
        self.data = {**current, **values}

    # -- driver -------------------------------------------------------------------------

    @property
    def driver_instance(self) -> DriverBase | None:
        return self._driver_instance

    def ensure_driver_instance(self, arg: DriverBase | Config) -> None:
        from kong.config import Config
        from kong.drivers import driver_for_profile

        if isinstance(arg, Config):
            self._driver_instance = driver_for_profile(arg, self.profile, db.install_id(),
                                                       self.driver)
        else:
            self._driver_instance = arg

    def _driver(self) -> DriverBase:
        if self._driver_instance is None:
            from kong.config import Config

            self.ensure_driver_instance(self.config or Config())
        assert self._driver_instance is not None
        return self._driver_instance

    # -- one-job conveniences over the bulk operations of kong.lifecycle --------------

    def submit(self, force: bool = False) -> None:
        from kong import lifecycle

        lifecycle.submit(self._driver(), [self], force=force)

    def resubmit(self) -> None:
        from kong import lifecycle

        lifecycle.resubmit(self._driver(), [self])

    def kill(self) -> None:
        from kong import lifecycle

        lifecycle.kill(self._driver(), [self])

    def remove(self) -> None:
        from kong import lifecycle

        lifecycle.remove(self._driver(), [self])

    def get_status(self) -> JobStatus:
        from kong import lifecycle

        lifecycle.refresh(self._driver(), [self])
        return self.status

    def wait(self, timeout: int | None = None) -> None:
        from kong import lifecycle

        lifecycle.wait(self._driver(), [self], timeout=timeout)

    def size(self, ex: Executor | None = None) -> int:
        return self._driver().sizes([self]).get(self.job_id) or 0

    @property
    def log_dir(self) -> str:
        return self._driver().job_paths(self).log_dir

    @property
    def output_dir(self) -> str:
        return self._driver().job_paths(self).output_dir

    @property
    def pulled_dir(self) -> Path:
        """Where ``kong pull`` without DEST puts this job's output dir on this machine:
        ``pulled/<folder path>/<job id>`` under the data dir (``output_dir`` is where
        the job runs)."""
        from kong.staging import default_dest, job_dest

        return job_dest(default_dest(self._driver().config), self.folder.path, self.job_id)

    @contextmanager
    def stdout(self) -> Iterator[IO[str]]:
        with self._driver().open_log(self, "stdout") as fh:
            yield fh

    @contextmanager
    def stderr(self) -> Iterator[IO[str]]:
        with self._driver().open_log(self, "stderr") as fh:
            yield fh


class JobRow(NamedTuple):
    """One job's columns for a listing (no ``data``); times are UTC epoch seconds."""

    job_id: int
    batch_job_id: str | None
    driver: str
    profile: str
    folder_id: int
    command: str
    status: JobStatus
    created_at: float
    updated_at: float
    cores: int
    memory: int | None


class JobList(Sequence[Job]):
    """The jobs of a listing: plain rows at once, ``Job`` objects when touched.

    Building 100,000 ORM objects costs seconds; a listing mostly needs only the
    columns. ``rows`` has those (attribute access: ``row.job_id``, ``row.status``);
    indexing or iterating yields real ``Job`` objects, loaded in chunks.
    """

    CHUNK = 1000

    def __init__(self, rows: Sequence[JobRow], config: Config | None = None,
                 views: dict[str, ViewAnswer] | None = None) -> None:
        self.rows = rows
        self.config = config
        self._loaded: dict[int, Job] = {}
        #: per profile, the kong agent's status view the live rows are from (its age)
        self.views: dict[str, ViewAnswer] = {} if views is None else views

    @classmethod
    def query(cls, where: Any, config: Config | None = None,
              views: dict[str, ViewAnswer] | None = None) -> JobList:
        from sqlalchemy import Float, String, select, type_coerce

        # Raw column values (no per-value type processing) cost a third of typed ones.
        columns = [
            type_coerce(Job.status, String) if name == "status"
            else type_coerce(getattr(Job, name), Float) if name.endswith("_at")
            else getattr(Job, name)
            for name in JobRow._fields
        ]
        # Core, not ORM, and the DBAPI's own tuples rather than Row objects: the columns
        # need no result processing, and this halves the time for 100,000 jobs.
        result = db.session().connection().execute(
            select(*columns).where(where).order_by(Job.job_id)
        )
        raw = result.cursor.fetchall() if result.cursor is not None else []
        result.close()
        by_name = JobStatus.__members__
        new = tuple.__new__
        # 100,000 new tuples would set off several full garbage collections for nothing.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            rows = [
                new(JobRow, (a, b, c, d, e, f, by_name[g], h, i, j, k))
                for a, b, c, d, e, f, g, h, i, j, k in raw
            ]
        finally:
            if gc_was_enabled:
                gc.enable()
        return cls(rows, config, views)

    def __len__(self) -> int:
        return len(self.rows)

    def _load(self, start: int) -> None:
        from sqlalchemy import select

        ids = [row.job_id for row in self.rows[start : start + self.CHUNK]]
        for job in db.session().scalars(select(Job).where(Job.job_id.in_(ids))):
            job.config = self.config
            self._loaded[job.job_id] = job

    def _job(self, index: int) -> Job:
        job_id = self.rows[index].job_id
        if job_id not in self._loaded:
            self._load(index - index % self.CHUNK)
        if job_id not in self._loaded:  # listed, then removed by another kong process
            raise JobDoesNotExist(f"job {job_id} was removed meanwhile (by another kong)")
        return self._loaded[job_id]

    @overload
    def __getitem__(self, index: int) -> Job: ...

    @overload
    def __getitem__(self, index: slice) -> list[Job]: ...

    def __getitem__(self, index: int | slice) -> Job | list[Job]:
        if isinstance(index, slice):
            return [self._job(i) for i in range(*index.indices(len(self.rows)))]
        if index < 0:
            index += len(self.rows)
        if not 0 <= index < len(self.rows):
            raise IndexError(index)
        return self._job(index)

    def __iter__(self) -> Iterator[Job]:
        for i in range(len(self.rows)):
            yield self._job(i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, JobList)):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"JobList({len(self.rows)} jobs)"
