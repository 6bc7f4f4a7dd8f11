"""What every driver does, in bulk.

A driver turns operations on many jobs of one profile into as few commands on
its transport as possible. ORM rows are only changed inside ``db.write()``
blocks, after the remote work, so no database transaction is ever held open
while a cluster is being talked to.
"""

from __future__ import annotations

import io
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from kong import db
from kong.drivers.script import JobPaths, check_env_names, render_script
from kong.errors import DriverError
from kong.model.job import Job, JobStatus
from kong.paths import make_private_dir
from kong.remote import Transport, transport_for
from kong.remote.local import LocalTransport

if TYPE_CHECKING:
    from kong.config import Config, Profile
    from kong.model.folder import Folder

#: per-job keyword arguments every driver understands
COMMON_JOB_ARGS = ("cores", "memory", "cwd", "env")

ProgressCallback = Callable[[int, int], None]


class DriverBase(ABC):
    name: ClassVar[str]
    #: profile options and per-job overrides this driver accepts, with their types
    OPTIONS: ClassVar[dict[str, type | tuple[type, ...]]] = {}

    def __init__(self, config: Config, profile: Profile, transport: Transport | None = None):
        self.config = config
        self.profile = profile
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
        return f"{root.rstrip('/')}/{db.install_id()}"

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
            for path in (paths.log_dir, paths.output_dir):
                make_private_dir(Path(path))  # 0700 up the tree: the user's alone

    # -- creating -----------------------------------------------------------------------

    def create_job(
        self,
        folder: Folder,
        command: str,
        cores: int = 1,
        memory: int | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> Job:
        """Create a job row (status CREATED). ``options`` override the profile's options."""
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
        with db.write() as s:
            job = Job(
                driver=self.name,
                profile=self.profile.name,
                folder_id=folder.folder_id,
                command=command,
                cores=cores,
                memory=memory,
                status=JobStatus.CREATED,
                data=data,
            )
            s.add(job)
            s.flush()  # the id names the dirs
            # Made inside the insert's transaction: a concurrent `rm -r` of the folder
            # either sees this job (and removes these dirs) or not at all (then its
            # latecomer check does); dirs made after its removal would be orphans.
            self.prepare_dirs([job])
        job.ensure_driver_instance(self)
        return job

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
            scratch=scratch or f'"${{TMPDIR:-/tmp}}/kong-{db.install_id()}-{job.job_id}"',
            cwd=_shell_quote(cwd) if cwd else '"$HOME"',
            header_lines=header_lines,
            env=data.get("env"),
            umask=self.profile.umask or "077",
        )

    # -- bulk operations: each is a few commands, whatever len(jobs) is -----------------

    @abstractmethod
    def submit(self, jobs: Sequence[Job], progress: ProgressCallback | None = None) -> None:
        """Submit jobs in CREATED state; others are refused."""

    @abstractmethod
    def sync_status(self, jobs: Sequence[Job]) -> None:
        """Bring status (and scheduler data) of the jobs up to date."""

    @abstractmethod
    def kill(self, jobs: Sequence[Job]) -> None:
        """Stop jobs that are queued or running; they end FAILED."""

    def resubmit(self, jobs: Sequence[Job], progress: ProgressCallback | None = None) -> None:
        """Run jobs again from scratch: kill what still runs, clear their files, submit."""
        live = [j for j in jobs if j.status in (JobStatus.SUBMITTED, JobStatus.RUNNING)]
        if live:
            self.kill(live)
        self.transport.remove_trees([self.job_paths(j).job_dir for j in jobs])
        with db.write():
            for job in jobs:
                history = list((job.data or {}).get("history", []))
                if job.batch_job_id is not None:
                    history.append({"batch_job_id": job.batch_job_id, "status": job.status.name})
                job.set_data(history=history, exit_code=None)
                job.batch_job_id = None
                job.status = JobStatus.CREATED
        self.submit(jobs, progress)

    def remove(self, jobs: Sequence[Job]) -> None:
        """Kill what still runs, delete the jobs' files and their rows."""
        live = [j for j in jobs if j.status in (JobStatus.SUBMITTED, JobStatus.RUNNING)]
        if live:
            self.kill(live)
        self.transport.remove_trees([self.job_paths(j).job_dir for j in jobs])
        self.forget_logs(jobs)
        with db.write() as s:
            for job in jobs:
                s.delete(job)

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

    def wait(
        self,
        jobs: Sequence[Job],
        timeout: float | None = None,
        poll_interval: float | None = None,
    ) -> None:
        for _ in self.wait_iter(jobs, timeout, poll_interval):
            pass

    def wait_iter(
        self,
        jobs: Sequence[Job],
        timeout: float | None = None,
        poll_interval: float | None = None,
    ) -> Iterator[Sequence[Job]]:
        """Yield the jobs after each refresh until all are finished (or timeout)."""
        interval = poll_interval if poll_interval is not None else self.default_poll_interval
        start = time.monotonic()
        while True:
            self.sync_status([j for j in jobs if not j.status.finished])
            yield jobs
            if all(j.status.finished or j.status == JobStatus.CREATED for j in jobs):
                return
            if timeout is not None and time.monotonic() - start > timeout:
                raise TimeoutError(f"jobs not finished after {timeout} s")
            time.sleep(interval)

    default_poll_interval: float = 2.0

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
        return f"{self.profile.name}/{db.install_id()}/{job.job_id}/{which}"

    def sync_log(self, job: Job, which: str) -> Path:
        """Fetch the bytes of a remote log not yet in the local cache; return the cached file."""
        from kong.remote.logsync import LogCache

        cache = LogCache(self.config.data_dir / "logcache")
        return cache.sync(
            self.transport,
            self.log_path(job, which),
            self.log_cache_key(job, which),
            finished=job.status.finished,
        )

    def forget_logs(self, jobs: Iterable[Job]) -> None:
        cache = self.config.data_dir / "logcache" / self.profile.name / db.install_id()
        for job in jobs:
            target = cache / str(job.job_id)
            if target.exists():
                import shutil

                shutil.rmtree(target, ignore_errors=True)


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)
