"""What every driver does, in bulk, as an adapter: no database, no decisions.

A driver renders job scripts, turns operations on many jobs of one profile into
as few commands on its transport as possible, parses what the scheduler prints
and returns plain results per job (the dataclasses below). It never writes a
job's row and never decides what an answer means for a job's life: that is
``kong.lifecycle``'s business. What a driver needs of the database (the
install id that names job dirs and tokens) is handed to it when it is made.
"""

from __future__ import annotations

import enum
import io
import os
import shlex
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from kong.drivers.script import JobPaths, check_env_names, render_script
from kong.errors import DriverError
from kong.model.job import Job, JobStatus
from kong.paths import make_private_dir
from kong.remote import Transport, transport_for
from kong.remote.local import LocalTransport

if TYPE_CHECKING:
    from kong.config import Config, Profile
    from kong.remote.statusview import ViewAnswer

#: per-job keyword arguments every driver understands
COMMON_JOB_ARGS = ("cores", "memory", "cwd", "env")

ProgressCallback = Callable[[int, int], None]


# -- what drivers answer, per job -------------------------------------------------------


@dataclass(frozen=True)
class SubmitRequest:
    """One job to submit, with the kong-unique token of this attempt (recorded already)."""

    job: Job
    token: str


@dataclass(frozen=True)
class Submitted:
    """The scheduler took the job and named it ``batch_id``."""

    batch_id: str


@dataclass(frozen=True)
class SubmitFailed:
    """The submit command refused the job: it is certainly not on the cluster."""

    error: str


@dataclass(frozen=True)
class SubmitUnclear:
    """The submit command said neither yes nor no (exit 0 with output kong cannot read)."""

    why: str


#: A job without an entry in ``submit``'s answer got no answer at all (cut short).
SubmitResult = Submitted | SubmitFailed | SubmitUnclear


#: Why a finished job ended, in one vocabulary for every driver; besides these words,
#: ``EXIT(n)`` (the job's command exited with n; EXIT(0) is success) and ``SIGNAL(n)``
#: (it was killed by signal n, by whom the scheduler did not say).
END_REASONS = ("TIMEOUT", "OUT_OF_MEMORY", "CANCELLED", "NODE_FAIL", "PREEMPTED")


def exit_reason(exit_code: int | None, signal: int | None = None) -> str | None:
    """The end reason of a job that ended by itself: ``SIGNAL(n)`` or ``EXIT(n)``."""
    if signal:
        return f"SIGNAL({signal})"
    return None if exit_code is None else f"EXIT({exit_code})"


@dataclass
class SchedulerInfo:
    """What the scheduler says of one job."""

    status: JobStatus
    state: str  # the scheduler's own word, e.g. TIMEOUT or Held
    exit_code: int | None = None
    reason: str | None = None  # free text: the scheduler's or kong's words
    extra: dict[str, Any] = field(default_factory=dict)  # node, times, ...
    #: for a finished job: one of END_REASONS, EXIT(n) or SIGNAL(n); None when the
    #: driver cannot tell (kong.lifecycle then derives EXIT(n) from the exit code)
    end_reason: str | None = None


@dataclass(frozen=True)
class Absent:
    """The scheduler knows nothing of the job; ``exit_code`` is what the job's own
    ``exit_code`` file says, if it left one."""

    exit_code: int | None = None


#: A job without an entry in ``status``'s answer was not asked about.
StatusResult = SchedulerInfo | Absent


class KillOutcome(enum.Enum):
    KILLED = "killed"  # the scheduler took the kill
    FINISHED = "finished"  # it had already ended: nothing to kill
    REFUSED = "refused"  # the scheduler said no (e.g. permission denied)
    UNKNOWN = "unknown"  # no clear answer: the job's status must be asked for


@dataclass(frozen=True)
class KillResult:
    outcome: KillOutcome
    message: str = ""  # the scheduler's own words


@dataclass(frozen=True)
class TokenLookup:
    """Which tokens the scheduler knows (token -> batch id), and how far to trust
    the silence about the others.

    ``busy``: a submit loop of this kong still runs on the host, so a token not
    found now may still be submitted. ``history_seconds``: how long after a
    submission the scheduler still shows it (None: as long as kong cares).
    """

    found: dict[str, str]
    busy: str | None = None
    history_seconds: float | None = None


@dataclass(frozen=True)
class QueueLimits:
    """The most one job may ask of a queue (Slurm partition, LSF queue); None where the
    scheduler sets no limit or kong cannot read it."""

    walltime: int | None = None  # minutes
    memory: int | None = None  # MB per job (on one node)
    memory_per_core: int | None = None  # MB per core: the job's cap is this times its cores
    cores: int | None = None
    default_walltime: int | None = None  # minutes a job gets when it asks for none


class DriverBase(ABC):
    name: ClassVar[str]
    #: profile options and per-job overrides this driver accepts, with their types
    OPTIONS: ClassVar[dict[str, type | tuple[type, ...]]] = {}
    default_poll_interval: float = 2.0
    #: whether the driver can reach the jobs' host at all (False: a stand-in for a
    #: profile that left the config, whose jobs can only be listed and forgotten)
    reachable: ClassVar[bool] = True

    def __init__(
        self,
        config: Config,
        profile: Profile,
        install_id: str,
        transport: Transport | None = None,
    ):
        self.config = config
        self.profile = profile
        self.install_id = install_id
        self.transport = transport or transport_for(profile, config)

    # -- where things live --------------------------------------------------------------

    @cached_property
    def base_dir(self) -> str:
        """Absolute dir on the job host under which this kong's job dirs live."""
        if self.profile.remote_dir:
            root = self.transport.expand(self.profile.remote_dir)
        elif isinstance(self.transport, LocalTransport):
            root = str(self.config.data_dir / "jobs")
        else:
            root = self.transport.expand("~/.kong")
        # Job ids are per database: two laptops sharing a cluster must not collide.
        return f"{root.rstrip('/')}/{self.install_id}"

    def job_paths(self, job: Job) -> JobPaths:
        return JobPaths.under(self.base_dir, job.job_id)

    def prepare_dirs(self, jobs: Sequence[Job]) -> None:
        """Make the log and output dirs of new jobs where that costs no round trip.

        On the local host they exist right after ``create_job`` (as in kong-batch), so
        a script can put input files into ``job.output_dir`` before submitting. On a
        remote host the job script makes them at submit.
        """
        if not isinstance(self.transport, LocalTransport):
            return
        for job in jobs:
            paths = self.job_paths(job)
            try:  # a new job's own dir is new, its base exists: three mkdirs, no stats
                for path in (os.path.dirname(paths.log_dir), paths.log_dir, paths.output_dir):
                    os.mkdir(path, 0o700)
            except OSError:
                for path in (paths.log_dir, paths.output_dir):
                    make_private_dir(Path(path))  # 0700 up the tree: the user's alone

    def discard_dirs(self, jobs: Sequence[Job]) -> None:
        """Remove what ``prepare_dirs`` made for jobs whose rows are being rolled back
        (their ids are still the caller's alone: it holds the write lock)."""
        if not isinstance(self.transport, LocalTransport):
            return
        for job in jobs:
            shutil.rmtree(os.path.dirname(self.job_paths(job).log_dir), ignore_errors=True)

    def token(self, job: Job, attempt: int) -> str:
        """The name a job's ``attempt`` carries into the scheduler."""
        return f"kong-{self.install_id}-{job.job_id}-{attempt}"

    def prepare_submit(self, jobs: Sequence[Job]) -> None:  # noqa: B027 - optional hook
        """Learn what ``tokens`` needs to know of the cluster (e.g. its array size
        limit), before kong.lifecycle records the tokens; by default nothing."""

    def tokens(self, attempts: Sequence[tuple[Job, int]]) -> list[str]:
        """The tokens of one bulk submit, in order: one ``token`` each, unless the
        driver submits some of them together (a job array names its elements by the
        array's name and their index, see ``kong.drivers.arrays``)."""
        return [self.token(job, attempt) for job, attempt in attempts]

    # -- creating -----------------------------------------------------------------------

    def new_job(
        self,
        command: str,
        cores: int = 1,
        memory: int | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """The checked column values of a new job row (``options`` override the
        profile's options); ``kong.lifecycle`` writes the row."""
        self.check_options(options)
        if not isinstance(command, str) or not command.strip():
            raise DriverError("a job needs a non-empty command")
        if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
            raise DriverError(f"cores must be a positive integer, got {cores!r}")
        if memory is not None and (not isinstance(memory, int) or memory < 1):
            raise DriverError(f"memory must be a positive integer (MB), got {memory!r}")
        if cwd is None and isinstance(self.transport, LocalTransport):
            cwd = os.getcwd()
        data: dict[str, Any] = {"options": options}
        if cwd is not None:
            data["cwd"] = cwd
        if env:
            check_env_names(env)
            data["env"] = {str(k): str(v) for k, v in env.items()}
        return {"driver": self.name, "profile": self.profile.name, "command": command,
                "cores": cores, "memory": memory, "data": data}

    def check_options(self, options: dict[str, Any]) -> None:
        for key, value in options.items():
            if key not in self.OPTIONS:
                known = ", ".join(sorted(set(self.OPTIONS) | set(COMMON_JOB_ARGS)))
                raise DriverError(f"unknown option {key!r} for driver {self.name} "
                                  f"(expected one of: {known})")
            expected = self.OPTIONS[key]
            types = expected if isinstance(expected, tuple) else (expected,)
            if value is not None and (
                not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
            ):
                raise DriverError(f"option {key!r} of driver {self.name}: expected "
                                  f"{' or '.join(t.__name__ for t in types)}, got {value!r}")

    def job_options(self, job: Job) -> dict[str, Any]:
        """The profile's options overridden by the job's own."""
        return {**self.profile.options, **(job.data or {}).get("options", {})}

    def render(self, job: Job, header_lines: Sequence[str] = (), scratch: str | None = None) -> str:
        paths = self.job_paths(job)
        data = job.data or {}
        cwd = data.get("cwd")
        return render_script(
            job_id=job.job_id,
            command=job.command,
            paths=paths,
            nproc=job.cores,
            scratch=scratch or f'"${{TMPDIR:-/tmp}}/kong-{self.install_id}-{job.job_id}"',
            cwd=shlex.quote(cwd) if cwd else '"$HOME"',
            header_lines=header_lines,
            env=data.get("env"),
            umask=self.profile.umask or "077",
        )

    # -- bulk operations: each is a few commands, whatever len(jobs) is -----------------

    @abstractmethod
    def submit(
        self, requests: Sequence[SubmitRequest], progress: ProgressCallback | None = None
    ) -> dict[int, SubmitResult]:
        """Submit the jobs; the answer per job id. ``ConnectionLost`` when cut off."""

    @abstractmethod
    def status(self, jobs: Sequence[Job]) -> dict[int, StatusResult]:
        """What the scheduler says of jobs that have a batch id, per job id."""

    def status_forced(self, jobs: Sequence[Job]) -> dict[int, StatusResult]:
        """As ``status``, from a query that starts now (``ls -u``), where a driver may
        otherwise answer from the kong agent's shared view of a moment ago."""
        return self.status(jobs)

    def status_view(
        self, batch_ids: Mapping[int, str]
    ) -> tuple[dict[int, StatusResult], ViewAnswer] | None:
        """What the kong agent's shared status view says of the jobs (job id -> batch
        id; for listings);
        None where the driver has no such view (then listings show the database)."""
        return None

    @abstractmethod
    def find_tokens(self, tokens: Sequence[str]) -> TokenLookup:
        """Which of these submit tokens the scheduler knows."""

    @abstractmethod
    def kill(self, jobs: Sequence[Job]) -> dict[int, KillResult]:
        """Ask the scheduler to stop jobs that have a batch id; its answer per job id."""

    @abstractmethod
    def kill_tokens(self, tokens: Sequence[str]) -> dict[str, KillResult]:
        """Stop whatever carries these tokens (jobs whose batch id kong never learnt)."""

    def queue_of(self, job: Job) -> str:
        """The queue (partition) the job asks for; "" for the scheduler's default."""
        return ""

    def queue_limits(self) -> dict[str, QueueLimits]:
        """Each queue's limits in one scheduler query, the default queue also under "";
        {} where the scheduler has none kong can read."""
        return {}

    @cached_property
    def known_queue_limits(self) -> dict[str, QueueLimits]:
        """``queue_limits()``, asked once per driver: a site's limits seldom change."""
        return self.queue_limits()

    def array_of(self, token: str) -> str | None:
        """The name of the job array whose element a submit ``token`` makes its job
        (``kong.drivers.arrays``); None for a plain job, and for drivers without arrays."""
        return None

    def array_dirs(self, arrays: Sequence[str]) -> list[str]:
        """The dirs on the host of these job arrays (names from ``array_of``)."""
        return []

    def remove_files(self, jobs: Sequence[Job], arrays: Sequence[str] = ()) -> None:
        """Delete the jobs' dirs on the host and the dirs of ``arrays`` (job arrays whose
        last kong job goes: ``kong.lifecycle`` knows which), in one command."""
        trees = [self.job_paths(j).job_dir for j in jobs] + self.array_dirs(arrays)
        if trees:
            self.transport.remove_trees(trees)

    def sizes(self, jobs: Sequence[Job]) -> dict[int, int]:
        """Bytes in each job's output dir, in one ``du``."""
        if not jobs:
            return {}
        by_dir = {self.job_paths(j).output_dir: j.job_id for j in jobs}
        result = self.transport.run(
            ["xargs", "-0", "-r", "du", "-sb", "--"],
            stdin=b"\0".join(d.encode() for d in by_dir),
        )
        sizes = {j.job_id: 0 for j in jobs}
        for line in result.text().splitlines():
            size, _, path = line.partition("\t")
            if path in by_dir and size.isdigit():
                sizes[by_dir[path]] = int(size)
        return sizes

    # -- logs ---------------------------------------------------------------------------

    def log_path(self, job: Job, which: str) -> str:
        paths = self.job_paths(job)
        if which == "stdout":
            return paths.stdout
        if which == "stderr":
            return paths.stderr
        raise DriverError(f"no log named {which!r} (expected stdout or stderr)")

    @contextmanager
    def open_log(self, job: Job, which: str) -> Iterator[IO[str]]:
        """Open a job's log for reading; remote logs are synced to the cache first."""
        remote = self.log_path(job, which)
        if isinstance(self.transport, LocalTransport):
            if not os.path.exists(remote):
                yield io.StringIO("")
                return
            with open(remote, encoding="utf-8", errors="replace") as fh:
                yield fh
            return
        local = self.sync_log(job, which)
        with open(local, encoding="utf-8", errors="replace") as fh:
            yield fh

    def log_cache_key(self, job: Job, which: str) -> str:
        return f"{self.profile.name}/{self.install_id}/{job.job_id}/{which}"

    def _log_cache(self) -> Any:
        from kong.remote.logsync import LogCache

        return LogCache(self.config.data_dir / "logcache")

    def sync_log(self, job: Job, which: str) -> Path:
        """Fetch the bytes of a remote log not yet in the local cache; return the cached file."""
        cache = self._log_cache()
        path: Path = cache.sync(
            self.transport,
            self.log_path(job, which),
            self.log_cache_key(job, which),
            finished=job.status.finished,
        )
        return path

    def forget_logs(self, jobs: Iterable[Job]) -> None:
        """Drop the cached logs of jobs (removed, or about to run again)."""
        cache = self._log_cache()
        for job in jobs:
            target = cache.path(self.log_cache_key(job, "stdout")).parent
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
