"""What the batch drivers (Slurm, HTCondor, LSF) share.

A batch driver is mostly data: the header lines of its job scripts, the command
that submits one script, how to parse what that command prints, and how to ask
the scheduler about many jobs at once. This module turns those into bulk
operations of a constant number of round trips:

submit   1. record the intent (a kong-unique token per attempt) in the database;
         2. upload every script in one transfer;
         3. run one remote loop that submits them all and prints one line each;
         4. store the batch ids.
         If the connection drops during 3, the intent stays; the next operation
         asks the scheduler for jobs carrying those tokens (the job name) and
         adopts what it finds, so no job is submitted twice or lost.
status   one scheduler query (live queue plus history) for all jobs; a job
         neither shows is UNKNOWN, unless its script left an exit code.
kill     one command with all batch ids.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from kong import db
from kong.drivers.base import DriverBase, ProgressCallback
from kong.drivers.script import JobPaths
from kong.errors import ConnectionLost, DriverError, TransportError
from kong.model.job import Job, JobStatus

if TYPE_CHECKING:
    from kong.config import Config, Profile
    from kong.model.folder import Folder
    from kong.remote import Transport

#: options every batch driver accepts (profile-wide and per job)
BATCH_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "walltime": (str, int),  # [[D-]HH:]MM:SS or minutes, translated per scheduler
    "scratch_dir": str,  # shell word for KONG_JOB_SCRATCHDIR's parent; default $TMPDIR
    "extra": list,  # extra scheduler directive lines, verbatim
    "poll_interval": (int, float),
}

# One remote loop submits every job: lines "<job_id>\t<command>" on stdin, where
# <command> was built with shlex.join and so is a list of safely quoted words.
# The loop holds a lock ("$1", where the host has flock) while it lives: after a
# dropped connection it may still be submitting (it dies only at its next write),
# and a reconcile must not look for tokens before it is gone (WAIT_FOR_SUBMITS).
_SUBMIT_LOOP = r"""
if command -v flock >/dev/null 2>&1 && [ -w "${1%/*}" ]; then exec 9>>"$1"; flock 9; fi
kong_nl='
'
while IFS='	' read -r kong_id kong_cmd; do
    kong_out=$(eval "$kong_cmd" 2>&1 </dev/null 9>&-)
    kong_rc=$?
    # Newlines to spaces with builtins only: a fork per job would cost as much as
    # the scheduler's own submit command on some clusters.
    set -f; IFS=$kong_nl; set -- $kong_out; IFS=' '; kong_out="$*"; unset IFS; set +f
    printf 'KONG\t%s\t%s\t%s\n' "$kong_id" "$kong_rc" "$kong_out"
done
"""

#: Shell lines for the top of a ``find_tokens`` script run with the lock path
#: (``BatchDriver.submit_lock``) as "$1": wait until no submit loop of this kong is
#: running on the host, so that every job it submitted is visible.
WAIT_FOR_SUBMITS = r"""
if command -v flock >/dev/null 2>&1 && [ -f "$1" ]; then flock -w 120 "$1" true; fi
"""

# Read the exit_code files that job scripts leave, for jobs the scheduler forgot.
_EXIT_CODES = r"""
while IFS= read -r kong_f; do
    if [ -f "$kong_f" ]; then printf '%s\t%s\n' "$kong_f" "$(cat "$kong_f")"; fi
done
"""


@dataclass
class SchedulerInfo:
    """What the scheduler says of one job."""

    status: JobStatus
    state: str  # the scheduler's own word, e.g. TIMEOUT or Held
    exit_code: int | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # node, times, ...


@dataclass(frozen=True)
class SubmitEntry:
    """One job on its way to the scheduler: script uploaded, intent (token) recorded."""

    job: Job
    paths: JobPaths
    options: dict[str, Any]
    token: str


class BatchDriver(DriverBase):
    OPTIONS: ClassVar[dict[str, type | tuple[type, ...]]] = dict(BATCH_OPTIONS)
    default_poll_interval = 5.0
    #: shown in messages, e.g. "sbatch"
    submit_tool: ClassVar[str] = "submit"

    def __init__(self, config: Config, profile: Profile, transport: Transport | None = None):
        super().__init__(config, profile, transport)
        # State.wait and DriverBase.wait poll at default_poll_interval: the profile's
        # poll_interval option must reach them.
        value = profile.options.get("poll_interval")
        if value is not None:
            self.default_poll_interval = float(value)
        # The config checks option types only; a bad value must not wait for the
        # scheduler to refuse it at submit time.
        self.check_options(dict(profile.options))

    def create_job(
        self,
        folder: Folder,
        command: str,
        cores: int | None = None,
        memory: int | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> Job:
        """As ``DriverBase.create_job``; ``cores`` defaults to the profile's ``cores``
        where the driver has that option."""
        if cores is None:
            cores = int(self.profile.options.get("cores") or 1)
        return super().create_job(folder, command, cores=cores, memory=memory, cwd=cwd,
                                  env=env, **options)

    # -- what each scheduler provides ---------------------------------------------------

    @abstractmethod
    def header_lines(self, job: Job, options: dict[str, Any], token: str) -> list[str]:
        """Scheduler directives for the top of the script (job name = ``token``)."""

    @abstractmethod
    def submit_argv(self, job: Job, script: str, token: str) -> list[str]:
        """The command that submits one script."""

    @abstractmethod
    def parse_submit(self, output: str) -> str:
        """The batch id from the submit command's output; raise DriverError if none."""

    @abstractmethod
    def query(self, jobs: Sequence[Job]) -> dict[str, SchedulerInfo]:
        """Scheduler info by batch id for these (submitted) jobs, in O(1) commands."""

    @abstractmethod
    def find_tokens(self, tokens: Sequence[str]) -> dict[str, str]:
        """Batch ids of jobs the scheduler knows by name (token -> batch id)."""

    @abstractmethod
    def kill_argv(self) -> list[str]:
        """The kill command; batch ids are appended to it via xargs on stdin."""

    def scratch(self, options: dict[str, Any], job: Job) -> str:
        parent = options.get("scratch_dir") or "${TMPDIR:-/tmp}"
        return f'"{parent}/kong-{db.install_id()}-{job.job_id}"'

    # -- helpers ------------------------------------------------------------------------

    def token(self, job: Job, attempt: int) -> str:
        return f"kong-{db.install_id()}-{job.job_id}-{attempt}"

    def run_script(self, script: str, stdin: str = "", *args: str) -> str:
        result = self.transport.run(["sh", "-c", script, "sh", *args], stdin=stdin.encode())
        return result.text()

    @property
    def submit_lock(self) -> str:
        return f"{self.base_dir}/.submit.lock"

    @property
    def poll_interval(self) -> float:
        value = self.profile.options.get("poll_interval")
        return float(value) if value is not None else self.default_poll_interval

    # -- submit -------------------------------------------------------------------------

    def submit(self, jobs: Sequence[Job], progress: ProgressCallback | None = None) -> None:
        self.reconcile([j for j in jobs if (j.data or {}).get("submitting")])
        jobs = [j for j in jobs if j.status == JobStatus.CREATED]
        if not jobs:
            return
        tokens: dict[int, str] = {}
        with db.write():  # the intent, before anything reaches the cluster
            for job in jobs:
                attempt = int((job.data or {}).get("attempt", 0)) + 1
                tokens[job.job_id] = self.token(job, attempt)
                job.set_data(attempt=attempt, submitting=tokens[job.job_id])
        files: dict[str, bytes] = {}
        entries = []
        for job in jobs:
            paths = self.job_paths(job)
            options = self.job_options(job)
            token = tokens[job.job_id]
            script = self.render(job, self.header_lines(job, options, token),
                                 scratch=self.scratch(options, job))
            files[paths.script] = script.encode()
            files[f"{paths.log_dir}/.kong"] = b""  # the scheduler opens logs before the script runs
            entries.append(SubmitEntry(job, paths, options, token))
        self.transport.upload(files)
        try:
            output = self.submit_remote(entries)
        except ConnectionLost:
            self._reconcile_after_drop(jobs)
            raise
        self._record_submissions(jobs, output, progress)

    def submit_remote(self, entries: Sequence[SubmitEntry]) -> str:
        """Submit the uploaded scripts in one remote command. Returns one line per
        job, ``KONG\t<job id>\t<exit code>\t<output>``, the output being what
        ``parse_submit`` reads; a job without a line is reconciled by its token.
        This runs ``submit_argv`` once per job in a shell loop; a scheduler that
        takes many jobs in one call overrides it."""
        lines = "".join(
            f"{e.job.job_id}\t{shlex.join(self.submit_argv(e.job, e.paths.script, e.token))}\n"
            for e in entries
        )
        return self.run_script(_SUBMIT_LOOP, lines, self.submit_lock)

    def _record_submissions(
        self, jobs: Sequence[Job], output: str, progress: ProgressCallback | None
    ) -> None:
        by_id = {j.job_id: j for j in jobs}
        errors: list[str] = []
        now = datetime.now(UTC).isoformat()
        with db.write():
            for line in output.splitlines():
                parts = line.split("\t", 3)
                if len(parts) != 4 or parts[0] != "KONG" or not parts[1].isdigit():
                    continue
                job = by_id.pop(int(parts[1]), None)
                if job is None:
                    continue
                rc, text = parts[2], parts[3].strip()
                batch_id = None
                if rc == "0":
                    try:
                        batch_id = self.parse_submit(text)
                    except DriverError as exc:
                        errors.append(str(exc))
                else:
                    errors.append(f"job {job.job_id}: {self.submit_tool} failed: {text[:200]}")
                if batch_id is None:
                    job.set_data(submitting=None)
                    continue
                job.batch_job_id = batch_id
                job.status = JobStatus.SUBMITTED
                job.set_data(submitting=None, submitted_at=now, scheduler_state=None,
                             exit_code=None)
        if by_id:
            # no line for these: the loop was cut short; the scheduler knows the truth
            self.reconcile(list(by_id.values()))
        if progress:
            progress(len(jobs) - len(errors), len(jobs))
        if errors:
            raise DriverError(
                f"{len(errors)} of {len(jobs)} job(s) could not be submitted: {errors[0]}"
            )

    def _reconcile_after_drop(self, jobs: Sequence[Job]) -> None:
        # Still unreachable: the intents stay, and the next operation reconciles.
        with contextlib.suppress(TransportError):
            self.reconcile(jobs)

    def reconcile(self, jobs: Sequence[Job]) -> None:
        """Settle jobs whose submission was cut off: adopt what the scheduler has,
        free the rest for a new submission."""
        pending = {
            token: j for j in jobs if (token := (j.data or {}).get("submitting")) is not None
        }
        if not pending:
            return
        found = self.find_tokens(list(pending))
        now = datetime.now(UTC).isoformat()
        with db.write():
            for token, job in pending.items():
                batch_id = found.get(token)
                if batch_id is not None:
                    job.batch_job_id = batch_id
                    job.status = JobStatus.SUBMITTED
                    job.set_data(submitting=None, submitted_at=now, reconciled=True)
                else:
                    job.set_data(submitting=None)

    # -- status -------------------------------------------------------------------------

    def sync_status(self, jobs: Sequence[Job]) -> None:
        self.reconcile([j for j in jobs if (j.data or {}).get("submitting")])
        # A finished job stays finished (resubmit makes it CREATED first), so only
        # live and UNKNOWN jobs are asked about.
        jobs = [j for j in jobs if j.batch_job_id and j.status != JobStatus.CREATED
                and not j.status.finished]
        if not jobs:
            return
        infos = self.query(jobs)
        missing = [j for j in jobs if j.batch_job_id not in infos]
        exit_codes = self._exit_codes(missing) if missing else {}
        with db.write():
            for job in jobs:
                assert job.batch_job_id is not None
                info = infos.get(job.batch_job_id)
                if info is None:
                    code = exit_codes.get(job.job_id)
                    if code is None:
                        if not job.status.finished:
                            job.status = JobStatus.UNKNOWN
                        continue
                    status = JobStatus.COMPLETED if code == 0 else JobStatus.FAILED
                    info = SchedulerInfo(status, "FORGOTTEN", exit_code=code,
                                         reason="scheduler has no record; exit code from job")
                if (job.data or {}).get("killed") and info.status == JobStatus.COMPLETED:
                    info.status = JobStatus.FAILED
                job.status = info.status
                job.set_data(scheduler_state=info.state, exit_code=info.exit_code,
                             reason=info.reason, **info.extra)

    def _exit_codes(self, jobs: Sequence[Job]) -> dict[int, int]:
        by_path = {self.job_paths(j).exit_code: j.job_id for j in jobs}
        output = self.run_script(_EXIT_CODES, "".join(f"{p}\n" for p in by_path))
        codes: dict[int, int] = {}
        for line in output.splitlines():
            path, _, value = line.partition("\t")
            if path in by_path and value.strip().lstrip("-").isdigit():
                codes[by_path[path]] = int(value)
        return codes

    # -- kill ---------------------------------------------------------------------------

    def kill(self, jobs: Sequence[Job]) -> None:
        self.reconcile([j for j in jobs if (j.data or {}).get("submitting")])
        live = [j for j in jobs if j.batch_job_id and not j.status.finished
                and j.status != JobStatus.CREATED]
        if not live:
            return
        ids = "\n".join(str(j.batch_job_id) for j in live) + "\n"
        self.transport.run(["xargs", *self.kill_argv()], stdin=ids.encode())
        with db.write():
            for job in live:
                job.status = JobStatus.FAILED
                job.set_data(killed=True, reason="killed by kong")

    # -- options ------------------------------------------------------------------------

    def check_options(self, options: dict[str, Any]) -> None:
        super().check_options(options)
        if options.get("walltime") is not None:
            walltime_minutes(options["walltime"])
        extra = options.get("extra")
        if extra is not None and not all(isinstance(line, str) for line in extra):
            raise DriverError(f"option 'extra' of driver {self.name}: expected a list of strings")
        # Scheduler directives are lines: a newline in a value would end the directive
        # and put the rest into the job script (or the submit description).
        for key, value in options.items():
            if isinstance(value, str) and ("\n" in value or "\r" in value):
                raise DriverError(
                    f"option {key!r} of driver {self.name} must be one line: no newlines allowed"
                )
        for line in extra or ():
            if "\n" in line or "\r" in line:
                raise DriverError(
                    f"option 'extra' of driver {self.name} must be one line: "
                    "one directive per line"
                )

    def option(self, options: dict[str, Any], key: str, default: Any = None) -> Any:
        value = options.get(key)
        return default if value is None else value


_WALLTIME = re.compile(r"(?:([0-9]+)-)?([0-9]+(?::[0-9]+){0,2})")


def walltime_minutes(value: str | int) -> int:
    """``90``, ``"90"``, ``"1:30:00"``, ``"2-00:00:00"`` or ``"30:00"`` in whole minutes;
    anything else, or no time at all, is a DriverError."""
    bad = DriverError(f"walltime {value!r}: expected [D-]HH:MM:SS, MM:SS or minutes, "
                      "more than zero")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise bad
    if isinstance(value, int):
        if value < 1:
            raise bad
        return value
    match = _WALLTIME.fullmatch(value.strip())
    if match is None:
        raise bad
    days = int(match.group(1) or 0)
    parts = [int(p) for p in match.group(2).split(":")]
    if len(parts) == 1:
        minutes = parts[0]
    elif len(parts) == 2:
        minutes = parts[0] + (1 if parts[1] else 0)  # MM:SS
    else:
        minutes = parts[0] * 60 + parts[1] + (1 if parts[2] else 0)
    total = days * 24 * 60 + minutes
    if total < 1:
        raise bad
    return total
