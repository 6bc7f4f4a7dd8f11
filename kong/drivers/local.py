"""The local driver: jobs run in the background on the host, no scheduler.

The host is this machine, or (with ``host:`` in the profile) any machine kong
reaches over SSH. Jobs are started by ``local_runner.py``, copied next to the
job dirs, which detaches from kong (a job keeps running after kong exits) and
runs at most ``max_parallel`` jobs at a time, queueing the rest.

Profile options: ``max_parallel`` (default: the host's core count: a job takes
``cores`` of these slots), ``walltime`` (minutes or [D-]HH:MM:SS, as for the batch
drivers: a job over it is stopped and ends FAILED with reason TIMEOUT) and
``kill_grace`` (seconds between SIGTERM and SIGKILL, default 10).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from kong import db
from kong.drivers.base import DriverBase, ProgressCallback
from kong.drivers.batch import walltime_minutes
from kong.errors import ConnectionLost, DriverError
from kong.model.job import Job, JobStatus

_RUNNER_SOURCE = (Path(__file__).parent / "local_runner.py").read_bytes()
_RUNNER_NAME = f"local_runner-{hashlib.sha256(_RUNNER_SOURCE).hexdigest()[:12]}.py"

# Profiles on one host share the runner file, and State submits the jobs of several
# profiles concurrently: their uploads of that file must not interleave.
_upload_locks: dict[int, threading.Lock] = {}
_upload_locks_guard = threading.Lock()


def _upload_lock(transport: object) -> threading.Lock:
    with _upload_locks_guard:
        return _upload_locks.setdefault(id(transport), threading.Lock())


class LocalDriver(DriverBase):
    name = "local"
    OPTIONS: ClassVar[dict[str, type | tuple[type, ...]]] = {
        "max_parallel": int,
        "walltime": (str, int),
        "kill_grace": (int, float),
    }
    default_poll_interval = 0.5

    @cached_property
    def runner(self) -> str:
        return f"{self.base_dir}/{_RUNNER_NAME}"

    def _slots(self) -> str:
        value = self.profile.options.get("max_parallel")
        if value is not None:
            return str(value)
        return "0"  # the runner reads 0 as "the host's core count"

    def check_options(self, options: dict[str, Any]) -> None:
        super().check_options(options)
        if options.get("walltime") is not None:
            walltime_seconds(options["walltime"])
        grace = options.get("kill_grace")
        if grace is not None and grace < 0:
            raise DriverError(f"kill_grace must be >= 0 seconds, got {grace!r}")

    def _grace(self, options: dict[str, Any]) -> str:
        grace = options.get("kill_grace")
        return str(10 if grace is None else grace)

    def _limits(self, job: Job) -> bytes | None:
        """What the runner enforces for the job: its cores (slots), walltime, kill grace.

        None when that is the runner's default (1 core, no walltime, the profile's
        grace), so that a bulk of plain jobs costs no extra file per job.
        """
        options = self.job_options(job)
        limits: dict[str, Any] = {}
        if job.cores != 1:
            limits["cores"] = job.cores
        if self._grace(options) != self._grace(self.profile.options):
            limits["grace"] = float(self._grace(options))
        if options.get("walltime") is not None and walltime_seconds(options["walltime"]) > 0:
            limits["walltime"] = walltime_seconds(options["walltime"])  # 0: none, as in Slurm
        return json.dumps(limits).encode() if limits else None

    def _runner(self, command: str, args: Sequence[str], dirs: Sequence[str]) -> str:
        stdin = "".join(f"{d}\n" for d in dirs).encode()
        result = self.transport.run(["python3", self.runner, command, *args], stdin=stdin)
        if not result.ok and self.runner in result.stderr.decode(errors="replace"):
            # This version's runner is not on the host yet (a kill or status before any
            # submit of this kong version): put it there and ask again.
            with _upload_lock(self.transport):
                self.transport.upload({self.runner: _RUNNER_SOURCE})
            result = self.transport.run(["python3", self.runner, command, *args], stdin=stdin)
        if not result.ok:
            err = result.stderr.decode(errors="replace").strip().splitlines()
            raise DriverError(
                f"local runner `{command}` failed on {self.transport.label}: "
                f"{err[-1] if err else result.exit_code}"
            )
        return result.text()

    def submit(self, jobs: Sequence[Job], progress: ProgressCallback | None = None) -> None:
        jobs = [j for j in jobs if j.status == JobStatus.CREATED]
        if not jobs:
            return
        files = {self.job_paths(j).script: self.render(j).encode() for j in jobs}
        for each in jobs:
            if (limits := self._limits(each)) is not None:
                files[f"{self.job_paths(each).job_dir}/limits"] = limits
        files[self.runner] = _RUNNER_SOURCE
        for attempt in range(3):
            try:
                with _upload_lock(self.transport):
                    self.transport.upload(files)
                break
            except FileNotFoundError:
                # Another kong removed one of these jobs (its dir) under the upload:
                # upload again; the row check below stops what has no row any more.
                if attempt == 2:
                    raise
        dirs = {self.job_paths(j).job_dir: j for j in jobs}
        try:
            out = self._runner(
                "start",
                [self._slots(), f"{self.base_dir}/slots", self._grace(self.profile.options)],
                list(dirs),
            )
        except ConnectionLost:
            # The runner may have taken some jobs; their `state` files say so, and a
            # repeated submit finds them as "exists" instead of starting them again.
            raise
        now = datetime.now(UTC).isoformat()
        orphans: list[str] = []
        with db.write() as s:
            left = _rows_left(s, jobs)
            for line in out.splitlines():
                word, _, rest = line.partition(" ")
                job_dir, _, pid = rest.partition(" ")
                job = dirs.get(job_dir)
                if job is None or word not in ("started", "exists"):
                    continue
                if job.job_id not in left:
                    orphans.append(job_dir)  # another kong removed it while we started it
                    continue
                job.status = JobStatus.SUBMITTED
                job.batch_job_id = pid or job.batch_job_id
                job.set_data(submitted_at=now)
        if orphans:
            # No row may vanish while its job runs on: stop what we started for rows
            # that are gone, and remove the dirs our upload made anew.
            self._runner("kill", [self._grace(self.profile.options)], orphans)
            self.transport.remove_trees(orphans)
        if progress:
            progress(len(jobs), len(jobs))

    def sync_status(self, jobs: Sequence[Job]) -> None:
        jobs = [j for j in jobs if j.status not in (JobStatus.CREATED,)]
        if not jobs:
            return
        dirs = {self.job_paths(j).job_dir: j for j in jobs}
        out = self._runner("status", [], list(dirs))
        updates: list[tuple[Job, JobStatus, dict[str, Any]]] = []
        for line in out.splitlines():
            info = json.loads(line)
            job = dirs.get(info["dir"])
            if job is None:
                continue
            updates.append((job, *_interpret(info)))
        with db.write() as s:
            left = _rows_left(s, [job for job, _, _ in updates])
            for job, status, data in updates:
                if job.job_id not in left:
                    continue  # removed by another kong meanwhile
                if job.status != status:
                    job.status = status
                if data:
                    job.set_data(**data)

    def kill(self, jobs: Sequence[Job]) -> None:
        jobs = [j for j in jobs if j.status in (JobStatus.SUBMITTED, JobStatus.RUNNING,
                                                 JobStatus.UNKNOWN)]
        if not jobs:
            return
        grace = max(float(self._grace(self.job_options(j))) for j in jobs)
        self._runner("kill", [str(grace)], [self.job_paths(j).job_dir for j in jobs])
        with db.write() as s:
            left = _rows_left(s, jobs)
            for job in jobs:
                if job.job_id not in left:
                    continue
                job.status = JobStatus.FAILED
                job.set_data(killed=True)


    def remove(self, jobs: Sequence[Job]) -> None:
        """Kill what the runner holds, delete the jobs' files and their rows.

        Every job is killed whatever its row says: another kong process may have
        started one this process still sees CREATED, and a job left running would
        write into (and recreate) the dir being removed.
        """
        if not jobs:
            return
        dirs = [self.job_paths(j).job_dir for j in jobs]
        grace = max(float(self._grace(self.job_options(j))) for j in jobs)
        self._runner("kill", [str(grace)], dirs)
        self.transport.remove_trees(dirs)
        self.forget_logs(jobs)
        with db.write() as s:
            left = _rows_left(s, jobs)
            for job in jobs:
                if job.job_id in left:
                    s.delete(job)


def _rows_left(s: Session, jobs: Sequence[Job]) -> set[int]:
    """Ids of the jobs whose rows still exist, inside a write (so none can go meanwhile).

    Rows another kong process removed are dropped from this session: writing to them
    would fail the whole transaction, and with it the jobs that are still there.
    """
    ids = [j.job_id for j in jobs]
    left: set[int] = set()
    for start in range(0, len(ids), 5000):
        left.update(s.scalars(select(Job.job_id).where(Job.job_id.in_(ids[start:start + 5000]))))
    for job in jobs:
        if job.job_id not in left and job in s:
            s.expunge(job)
    return left


def _interpret(info: dict[str, Any]) -> tuple[JobStatus, dict[str, Any]]:
    state = info["state"]
    if state == "EXITED":
        code = int(info["exit_code"])
        ok = code == 0 and not info.get("killed")
        if info.get("timed_out") and not info.get("killed"):
            return JobStatus.FAILED, {"exit_code": code, "reason": "TIMEOUT"}
        return (JobStatus.COMPLETED if ok else JobStatus.FAILED), {"exit_code": code}
    if state == "KILLED" or (info.get("killed") and state.endswith("_LOST")):
        return JobStatus.FAILED, {"killed": True}
    if state == "RUNNING":
        return JobStatus.RUNNING, {"pid": info.get("pid")}
    if state == "QUEUED":
        return JobStatus.SUBMITTED, {}
    # The runner or the job vanished without an exit code (e.g. the host rebooted):
    # absence is not completion.
    return JobStatus.UNKNOWN, {"lost": state}


def walltime_seconds(value: str | int) -> float:
    """A walltime in seconds: minutes or [D-]HH:MM:SS, checked by the batch drivers' parser.

    The batch drivers round to whole minutes for their schedulers; the local runner
    keeps the seconds someone wrote (``"0:30"`` is 30 s).
    """
    minutes = walltime_minutes(value)
    if minutes < 0:
        raise DriverError(f"walltime {value!r}: must not be negative")
    if isinstance(value, int):
        return float(minutes * 60)
    text = value.strip()
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if len(parts) == 1:
        seconds = parts[0] * 60
    elif len(parts) == 2:
        seconds = parts[0] * 60 + parts[1]
    else:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    return float((int(days) if days else 0) * 86400 + seconds)
