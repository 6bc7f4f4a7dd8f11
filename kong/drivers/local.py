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
import os
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from kong.drivers.base import (
    DriverBase,
    KillOutcome,
    KillResult,
    ProgressCallback,
    QueueLimits,
    SchedulerInfo,
    StatusResult,
    SubmitFailed,
    SubmitRequest,
    SubmitResult,
    Submitted,
    TokenLookup,
)
from kong.drivers.batch import walltime_seconds
from kong.drivers.inputs import input_files
from kong.drivers.script import JobPaths
from kong.drivers.sh import load
from kong.errors import DriverError
from kong.model.job import Job, JobStatus
from kong.remote.base import Upload
from kong.remote.local import LocalTransport

_RUNNER_SOURCE = (Path(__file__).parent / "local_runner.py").read_bytes()
_KILL_SCRIPT = load("local_kill.sh")
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

    def queue_limits(self) -> dict[str, QueueLimits]:
        """A job can take at most all the runner's slots."""
        slots = self.profile.options.get("max_parallel")
        if slots is None and isinstance(self.transport, LocalTransport):
            slots = os.cpu_count()
        return {"": QueueLimits(cores=int(slots))} if slots else {}

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
        if not result.ok and f"can't open file '{self.runner}'" in result.stderr.decode(
                errors="replace"):
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

    def submit(
        self, requests: Sequence[SubmitRequest], progress: ProgressCallback | None = None
    ) -> dict[int, SubmitResult]:
        if not requests:
            return {}
        jobs = [r.job for r in requests]
        files: dict[str, Upload] = {self.job_paths(j).script: self.render(j).encode()
                                    for j in jobs}
        for each in jobs:
            files.update(input_files(each, self.job_paths(each).output_dir))
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
                # upload again; kong.lifecycle stops what has no row any more.
                if attempt == 2:
                    raise
        dirs = {self.job_paths(j).job_dir: j for j in jobs}
        # A ConnectionLost goes up: the runner may have taken some jobs; their
        # `state` files say so (find_tokens), so none is started twice.
        out = self._runner(
            "start",
            [self._slots(), f"{self.base_dir}/slots", self._grace(self.profile.options)],
            list(dirs),
        )
        results: dict[int, SubmitResult] = {}
        for line in out.splitlines():
            word, _, rest = line.partition(" ")
            job_dir, _, pid = rest.partition(" ")
            job = dirs.get(job_dir)
            if job is None:
                continue
            if word in ("started", "exists"):
                results[job.job_id] = Submitted(pid or job.batch_job_id or "local")
            elif word == "missing":
                results[job.job_id] = SubmitFailed(f"job dir {job_dir} is missing")
        if progress:
            progress(len(results), len(jobs))
        return results

    def _states(self, dirs: Sequence[str]) -> dict[str, dict[str, Any]]:
        out = self._runner("status", [], list(dirs))
        infos: dict[str, dict[str, Any]] = {}
        for line in out.splitlines():
            info = json.loads(line)
            infos[info["dir"]] = info
        return infos

    def status(self, jobs: Sequence[Job]) -> dict[int, StatusResult]:
        if not jobs:
            return {}
        dirs = {self.job_paths(j).job_dir: j for j in jobs}
        results: dict[int, StatusResult] = {}
        for job_dir, info in self._states(list(dirs)).items():
            job = dirs.get(job_dir)
            if job is not None:
                result = results[job.job_id] = _interpret(info)
                if "usage" in result.extra:
                    result.extra["usage"]["cpus"] = job.cores
                    if job.memory is not None:
                        result.extra["usage"]["req_mem_mb"] = float(job.memory)
        return results

    def _dir_of_token(self, token: str) -> str | None:
        prefix = f"kong-{self.install_id}-"
        job_id, _, attempt = token.removeprefix(prefix).partition("-")
        if not token.startswith(prefix) or not job_id.isdigit() or not attempt.isdigit():
            return None
        return JobPaths.under(self.base_dir, int(job_id)).job_dir

    def find_tokens(self, tokens: Sequence[str]) -> TokenLookup:
        # The runner's record of a job is the `state` file in its dir, made when the
        # runner took the job; the dir is the attempt's (resubmit clears it).
        by_dir = {d: t for t in tokens if (d := self._dir_of_token(t)) is not None}
        found: dict[str, str] = {}
        if by_dir:
            for job_dir, info in self._states(list(by_dir)).items():
                if job_dir in by_dir and info.get("state") != "NONE":
                    found[by_dir[job_dir]] = str(info.get("pid") or "local")
        return TokenLookup(found)

    def kill(self, jobs: Sequence[Job]) -> dict[int, KillResult]:
        dirs = {self.job_paths(j).job_dir: j.job_id for j in jobs}
        return {dirs[d]: result
                for d, result in self._kill_dirs(list(dirs), self._max_grace(jobs)).items()}

    def kill_tokens(self, tokens: Sequence[str]) -> dict[str, KillResult]:
        by_dir = {d: t for t in tokens if (d := self._dir_of_token(t)) is not None}
        grace = self._grace(self.profile.options)
        return {by_dir[d]: result for d, result in self._kill_dirs(list(by_dir), grace).items()}

    def remove_files(self, jobs: Sequence[Job], arrays: Sequence[str] = ()) -> None:
        """Stop whatever runs in the jobs' dirs, whatever their rows say, then delete
        them: another kong process may have started a job this one still sees
        CREATED, and a job left running would write into (and recreate) its dir.
        (The local driver submits no job arrays: ``arrays`` is always empty.)"""
        if not jobs:
            return
        dirs = [self.job_paths(j).job_dir for j in jobs]
        self._runner("remove", [self._max_grace(jobs)], dirs)

    def _max_grace(self, jobs: Sequence[Job]) -> str:
        return str(max(float(self._grace(self.job_options(j))) for j in jobs)) if jobs else "0"

    def _kill_dirs(self, dirs: Sequence[str], grace: str) -> dict[str, KillResult]:
        if not dirs:
            return {}
        result = self.transport.run(["sh", "-c", _KILL_SCRIPT, "sh", self.runner, grace],
                                    stdin="".join(f"{d}\n" for d in dirs).encode())
        if not result.ok:
            err = result.stderr.decode(errors="replace").strip().splitlines()
            raise DriverError(f"local runner `kill` failed on {self.transport.label}: "
                              f"{err[-1] if err else result.exit_code}")
        results: dict[str, KillResult] = {}
        for line in result.text().splitlines():
            if line.startswith("{"):
                info = json.loads(line)
                if info.get("state") == "EXITED":
                    results[info["dir"]] = KillResult(KillOutcome.FINISHED, "exited already")
            else:
                word, _, job_dir = line.partition(" ")
                if word == "killed":
                    results[job_dir] = KillResult(KillOutcome.KILLED)
        for job_dir in dirs:
            results.setdefault(job_dir, KillResult(KillOutcome.UNKNOWN, "not known to the runner"))
        return results


def _interpret(info: dict[str, Any]) -> SchedulerInfo:
    """The runner's word on one job dir (``local_runner.py status``)."""
    state = str(info["state"])
    killed = bool(info.get("killed"))
    if state == "EXITED":
        code = int(info["exit_code"])
        extra = _ended(info)
        if info.get("timed_out") and not killed:
            return SchedulerInfo(JobStatus.FAILED, "TIMEOUT", exit_code=code, reason="TIMEOUT",
                                 extra=extra, end_reason="TIMEOUT")
        ok = code == 0 and not killed
        return SchedulerInfo(JobStatus.COMPLETED if ok else JobStatus.FAILED, state,
                             exit_code=code, reason="killed by kong" if killed else None,
                             extra=extra, end_reason=local_end_reason(code))
    if state == "KILLED" or (killed and state.endswith("_LOST")):
        return SchedulerInfo(JobStatus.FAILED, "KILLED", reason="killed by kong")
    if state == "RUNNING":
        return SchedulerInfo(JobStatus.RUNNING, state, extra={"pid": info.get("pid")})
    if state == "QUEUED":
        return SchedulerInfo(JobStatus.SUBMITTED, state)
    # The runner or the job vanished without an exit code (e.g. the host rebooted):
    # absence is not completion.
    return SchedulerInfo(JobStatus.UNKNOWN, state, extra={"lost": state})


def local_end_reason(code: int) -> str:
    """EXIT(n), or SIGNAL(n) for a job script that died of a signal (128+n, the
    shell's way; the runner writes the same for a script killed before its trap)."""
    return f"SIGNAL({code - 128})" if 128 < code < 160 else f"EXIT({code})"


def _ended(info: dict[str, Any]) -> dict[str, Any]:
    """Times and usage of an ended job from the runner's records (epoch seconds)."""
    extra: dict[str, Any] = {}
    if isinstance(info.get("start_time"), (int, float)):
        extra["start_time"] = info["start_time"]
    usage = info.get("usage")
    if isinstance(usage, dict):
        if isinstance(usage.get("end_time"), (int, float)):
            extra["end_time"] = usage["end_time"]
        figures = {k: usage[k] for k in ("elapsed", "cpu_time", "max_rss_mb")
                   if isinstance(usage.get(k), (int, float))}
        extra["usage"] = {**figures, "source": "runner"}
    return extra
