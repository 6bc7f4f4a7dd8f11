"""What the batch drivers (Slurm, HTCondor, LSF) share.

A batch driver is mostly data: the header lines of its job scripts, the command
that submits one script, how to parse what that command prints, and how to ask
the scheduler about many jobs at once. This module turns those into bulk
operations of a constant number of round trips:

submit   upload every script in one transfer, then run one remote loop that
         submits them all and prints one line each; the answer per job is a
         batch id, the submit command's refusal, or "unclear". (``kong.lifecycle``
         recorded each job's token before, and reconciles jobs without an answer.)
status   one scheduler query (live queue plus history) for all jobs; for jobs
         neither shows, the exit code their script left, if any. With the kong
         agent, a driver that fills in ``shared_status`` has that query run by
         the agent, once per interval for the jobs of every kong process.
tokens   one scheduler query for the jobs that carry given tokens (job names),
         saying when a submit loop still runs and how long the history reaches.
kill     one scheduler command for many jobs (``kill_many_argv``, chunked to
         KILL_CHUNK ids), its words about each id parsed per driver
         (``kill_many_answers``); an id those words leave unclear gets a kill
         command of its own in a second round trip, never a guess.
"""

from __future__ import annotations

import re
import shlex
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from kong.drivers.arrays import (
    ArrayElement,
    ArraySubmission,
    array_name,
    chunks,
    element_token,
    is_array_name,
    mappable,
    parse_element_token,
)
from kong.drivers.base import (
    Absent,
    DriverBase,
    KillOutcome,
    KillResult,
    ProgressCallback,
    SchedulerInfo,
    StatusResult,
    SubmitFailed,
    SubmitRequest,
    SubmitResult,
    Submitted,
    SubmitUnclear,
    TokenLookup,
)
from kong.drivers.inputs import input_files
from kong.drivers.script import JobPaths
from kong.drivers.sh import load
from kong.drivers.shared_status import SharedStatus, just_submitted
from kong.errors import DriverError
from kong.model.job import Job, JobStatus

if TYPE_CHECKING:
    from kong.config import Config, Profile
    from kong.remote import Transport
    from kong.remote.base import Upload

#: at most this many ids in one kill command (its argv stays far below ARG_MAX, and
#: one command's answer stays small enough to read per id)
KILL_CHUNK = 500

#: options every batch driver accepts (profile-wide and per job)
BATCH_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "walltime": (str, int),  # [[D-]HH:]MM:SS or minutes, translated per scheduler
    "scratch_dir": str,  # shell word for KONG_JOB_SCRATCHDIR's parent; default $TMPDIR
    "extra": list,  # extra scheduler directive lines, verbatim
    "poll_interval": (int, float),
    # the cap of the kong agent's adaptive status interval (kong.remote.statusview)
    "poll_max_interval": (int, float),
    # how long a reconcile waits for an earlier submit loop before it says "in flight"
    "submit_lock_wait": (int, float),
}

# One remote loop submits every job: lines "<job_id>\t<command>" on stdin, where
# <command> was built with shlex.join and so is a list of safely quoted words.
# The loop holds a lock ("$1", where the host has flock) while it lives: after a
# dropped connection it may still be submitting (it dies only at its next write),
# and a reconcile must not look for tokens before it is gone (WAIT_FOR_SUBMITS).
_SUBMIT_LOOP = load("submit_loop.sh")

#: Shell lines for the top of a ``find_tokens`` script run with the lock path
#: (``BatchDriver.submit_lock``) as "$1": wait a little for a submit loop of this
#: kong on the host to end, so that every job it submitted is visible; when it is
#: still running, print KONG-BUSY (and go on: what is found is still true), so
#: that a token not found is not taken for "never submitted".
WAIT_FOR_SUBMITS = load("wait_for_submits.sh")

#: The marker WAIT_FOR_SUBMITS prints when a submit loop holds the lock.
BUSY = "KONG-BUSY"

# Run one command per line of stdin, "<key>\t<command>" (built with shlex.join), and
# print "KONG\t<key>\t<exit code>\t<output on one line>" for each: kill answers per job.
_EACH = load("each.sh")

# Read the exit_code files that job scripts leave, for jobs the scheduler forgot.
_EXIT_CODES = load("exit_codes.sh")


@dataclass(frozen=True)
class SubmitEntry:
    """One job on its way to the scheduler: script uploaded, intent (token) recorded."""

    job: Job
    paths: JobPaths
    options: dict[str, Any]
    token: str


class BatchDriver(SharedStatus, DriverBase):
    OPTIONS: ClassVar[dict[str, type | tuple[type, ...]]] = dict(BATCH_OPTIONS)
    default_poll_interval = 5.0
    #: shown in messages, e.g. "sbatch"
    submit_tool: ClassVar[str] = "submit"
    #: lower-case words of the kill command meaning "that job had already ended"
    KILL_FINISHED: ClassVar[tuple[str, ...]] = ()
    #: lower-case words of the kill command meaning "no such job (any more)"
    KILL_GONE: ClassVar[tuple[str, ...]] = ()
    #: whether the scheduler takes job arrays (see kong.drivers.arrays), the index of
    #: an array's first element, and the variable that tells an element its index
    ARRAYS: ClassVar[bool] = False
    ARRAY_FIRST_INDEX: ClassVar[int] = 0
    ARRAY_INDEX_VARIABLE: ClassVar[str] = ""

    def __init__(
        self,
        config: Config,
        profile: Profile,
        install_id: str,
        transport: Transport | None = None,
    ):
        super().__init__(config, profile, install_id, transport)
        # State.wait polls at default_poll_interval: the profile's poll_interval
        # option must reach it.
        value = profile.options.get("poll_interval")
        if value is not None:
            self.default_poll_interval = float(value)
        # The config checks option types only; a bad value must not wait for the
        # scheduler to refuse it at submit time.
        self.check_options(dict(profile.options))

    def new_job(
        self,
        command: str,
        cores: int | None = None,
        memory: int | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """As ``DriverBase.new_job``; ``cores`` defaults to the profile's ``cores``
        where the driver has that option."""
        if cores is None:
            cores = int(self.profile.options.get("cores") or 1)
        return super().new_job(command, cores=cores, memory=memory, cwd=cwd, env=env,
                               **options)

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
    def find_tokens(self, tokens: Sequence[str]) -> TokenLookup:
        """Batch ids of jobs the scheduler knows by name (token -> batch id)."""

    @abstractmethod
    def kill_argv(self, batch_id: str) -> list[str]:
        """The command that kills one job."""

    @abstractmethod
    def kill_token_argv(self, token: str) -> list[str]:
        """The command that kills whatever job carries ``token``."""

    @abstractmethod
    def kill_many_argv(self, batch_ids: Sequence[str]) -> list[str]:
        """One command that kills these jobs (plain jobs and array elements alike)."""

    @abstractmethod
    def kill_many_answers(self, batch_ids: Sequence[str], rc: int,
                          output: str) -> dict[str, tuple[int, str]]:
        """What ``kill_many_argv(batch_ids)``'s command (its exit code, its lines
        joined on one) clearly said of each id: batch id -> (an exit code as for one
        kill of that job, its words), for ``classify_kill``. An id left out is one the
        answer says nothing clear about: it gets a kill command of its own."""

    # -- arrays (drivers with ARRAYS) ----------------------------------------------------

    def array_limit(self) -> int:
        """The most elements one array may have on this cluster."""
        return 1000

    def array_header(self, job: Job, options: dict[str, Any], name: str, count: int,
                     log_dir: str) -> list[str]:
        """The directives of an array of ``count`` jobs like ``job``, named ``name``,
        the scheduler's own output per element under ``log_dir``. Jobs whose headers
        are equal (name, count and dir aside) share arrays."""
        raise NotImplementedError

    def array_submit_argv(self, dispatcher: str) -> list[str]:
        """The command that submits an array's dispatcher script."""
        raise NotImplementedError

    def array_refused(self, message: str) -> None:
        """The scheduler refused an array (``message``: its words): forget what was
        learnt of its limits, so that the next submit asks again."""

    def element_batch_id(self, array_id: str, index: int) -> str:
        """The batch id of one element of the array the scheduler named ``array_id``."""
        return f"{array_id}_{index}"

    def array_of(self, token: str) -> str | None:
        element = parse_element_token(token) if self.ARRAYS else None
        return None if element is None else element[0]

    def array_dir(self, name: str) -> str:
        """Where an array's dispatcher, map and the scheduler's files of its elements live."""
        return f"{self.base_dir}/.arrays/{name}"

    def array_dirs(self, arrays: Sequence[str]) -> list[str]:
        return [self.array_dir(name) for name in arrays if is_array_name(name)]

    def tokens(self, attempts: Sequence[tuple[Job, int]]) -> list[str]:
        """Plain tokens, except for jobs that go as arrays: those of this submit whose
        array headers are equal, two or more at a time, chunked to ``array_limit``."""
        tokens = super().tokens(attempts)
        if not self.ARRAYS:
            return tokens
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, (job, _attempt) in enumerate(attempts):
            options = self.job_options(job)
            if options.get("arrays") is False or not mappable(self.job_paths(job)):
                continue
            key = tuple(self.array_header(job, options, "", 0, ""))
            groups.setdefault(key, []).append(i)
        limit = self.array_limit()
        size = self.profile.options.get("array_size")
        if isinstance(size, int) and size > 0:
            limit = min(limit, size)
        for members in groups.values():
            for chunk in chunks(members, limit):
                if len(chunk) < 2:
                    continue  # an array of one is a plain job
                name = array_name(tokens[chunk[0]])
                for offset, i in enumerate(chunk):
                    tokens[i] = element_token(name, self.ARRAY_FIRST_INDEX + offset)
        return tokens

    def _arrays(self, entries: Sequence[SubmitEntry]
                ) -> tuple[list[SubmitEntry], list[ArraySubmission], dict[str, bytes]]:
        """Split a submit into plain jobs and arrays (by the elements' tokens); the
        arrays' dispatchers and maps, to upload with the jobs' scripts."""
        plain: list[SubmitEntry] = []
        members: dict[str, list[tuple[SubmitEntry, int]]] = {}
        for entry in entries:
            element = parse_element_token(entry.token) if self.ARRAYS else None
            if element is None:
                plain.append(entry)
            else:
                members.setdefault(element[0], []).append((entry, element[1]))
        arrays: list[ArraySubmission] = []
        files: dict[str, bytes] = {}
        for name, elements in members.items():
            first = elements[0][0]
            array = ArraySubmission(
                name, self.array_dir(name),
                tuple(ArrayElement(e.job.job_id, index, e.paths) for e, index in elements))
            header = self.array_header(first.job, first.options, name, len(elements),
                                       array.dir)
            files[array.dispatcher] = array.dispatcher_text(
                header, self.ARRAY_INDEX_VARIABLE).encode()
            files[array.map_path] = array.map_text().encode()
            arrays.append(array)
        return plain, arrays, files

    def _submit_with_arrays(self, plain: Sequence[SubmitEntry],
                            arrays: Sequence[ArraySubmission]) -> dict[int, SubmitResult]:
        """One remote loop for plain jobs and arrays; the answer per job id."""
        lines = [f"{e.job.job_id}\t{shlex.join(self.submit_argv(e.job, e.paths.script, e.token))}\n"
                 for e in plain]
        lines += [f"{a.name}\t{shlex.join(self.array_submit_argv(a.dispatcher))}\n"
                  for a in arrays]
        output = self.run_script(_SUBMIT_LOOP, "".join(lines), self.submit_lock)
        results = self.parse_submit_lines(output)
        by_name = {a.name: a for a in arrays}
        for line in output.splitlines():
            parts = line.split("\t", 3)
            if len(parts) != 4 or parts[0] != "KONG" or parts[1] not in by_name:
                continue
            array = by_name[parts[1]]
            one = self.parse_submit_lines(f"KONG\t0\t{parts[2]}\t{parts[3]}")[0]
            if isinstance(one, SubmitFailed):
                self.array_refused(one.error)
            for element in array.elements:
                results[element.job_id] = (
                    Submitted(self.element_batch_id(one.batch_id, element.index))
                    if isinstance(one, Submitted) else one)
        return results

    def scratch(self, options: dict[str, Any], job: Job) -> str:
        parent = options.get("scratch_dir") or "${TMPDIR:-/tmp}"
        return f'"{parent}/kong-{self.install_id}-{job.job_id}"'

    # -- helpers ------------------------------------------------------------------------

    def sh_argv(self, script: str, *args: str) -> list[str]:
        """The command that runs ``script`` with ``args`` on the host."""
        wait = self.profile.options.get("submit_lock_wait")
        env = [] if wait is None else ["env", f"KONG_LOCK_WAIT={float(wait):g}"]
        return [*env, "sh", "-c", script, "sh", *args]

    def run_script(self, script: str, stdin: str = "", *args: str) -> str:
        result = self.transport.run(self.sh_argv(script, *args), stdin=stdin.encode())
        return result.text()

    @property
    def submit_lock(self) -> str:
        return f"{self.base_dir}/.submit.lock"

    @property
    def poll_interval(self) -> float:
        value = self.profile.options.get("poll_interval")
        return float(value) if value is not None else self.default_poll_interval

    def busy_message(self) -> str:
        return (f"a kong submit loop is still running on {self.transport.label} "
                f"(it holds {self.submit_lock})")

    # -- submit -------------------------------------------------------------------------

    def submit(
        self, requests: Sequence[SubmitRequest], progress: ProgressCallback | None = None
    ) -> dict[int, SubmitResult]:
        if not requests:
            return {}
        files: dict[str, Upload] = {}
        entries = []
        for request in requests:
            job = request.job
            paths = self.job_paths(job)
            options = self.job_options(job)
            script = self.render(job, self.header_lines(job, options, request.token),
                                 scratch=self.scratch(options, job))
            files[paths.script] = script.encode()
            if not (self.ARRAYS and parse_element_token(request.token)):
                # the scheduler opens a plain job's logs before its script runs (an
                # array element's are opened by the dispatcher, which makes the dir)
                files[f"{paths.log_dir}/.kong"] = b""
            files.update(input_files(job, paths.output_dir))
            entries.append(SubmitEntry(job, paths, options, request.token))
        plain, arrays, array_files = self._arrays(entries)
        files.update(array_files)
        self.transport.upload(files)
        if arrays:
            results = self._submit_with_arrays(plain, arrays)
        else:
            results = self.parse_submit_lines(self.submit_remote(entries))
        if progress:
            done = sum(isinstance(r, Submitted) for r in results.values())
            progress(done, len(requests))
        return results

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

    def parse_submit_lines(self, output: str) -> dict[int, SubmitResult]:
        """The answer per job id in ``submit_remote``'s output."""
        results: dict[int, SubmitResult] = {}
        for line in output.splitlines():
            parts = line.split("\t", 3)
            if len(parts) != 4 or parts[0] != "KONG" or not parts[1].isdigit():
                continue
            job_id, rc = int(parts[1]), parts[2]
            text = "\n".join(part.strip() for part in parts[3].split("\x1f")).strip()
            if rc != "0":
                words = " ".join(text.split())
                results[job_id] = SubmitFailed(f"{self.submit_tool} failed: {words[:200]}")
                continue
            try:
                results[job_id] = Submitted(self.parse_submit(text))
            except DriverError as exc:
                # exit 0: the scheduler may well have the job, under an id kong cannot read
                results[job_id] = SubmitUnclear(f"{self.submit_tool} exited 0 but {exc}")
        return results

    # -- status -------------------------------------------------------------------------

    def status(self, jobs: Sequence[Job]) -> dict[int, StatusResult]:
        return self._status(jobs, force=False)

    def status_forced(self, jobs: Sequence[Job]) -> dict[int, StatusResult]:
        """As ``status``, from a query that starts now (``ls -u``), not the agent's
        view of a moment ago."""
        return self._status(jobs, force=True)

    def _status(self, jobs: Sequence[Job], force: bool) -> dict[int, StatusResult]:
        jobs = [j for j in jobs if j.batch_job_id]
        if not jobs:
            return {}
        shared = self._shared_status([str(j.batch_job_id) for j in jobs], force,
                                     submitted=any(just_submitted(j) for j in jobs))
        infos = (self.query(jobs) if shared is None
                 else self.own_infos(self.parse_status(shared[1]), jobs))
        # The job's own exit_code file answers for jobs the scheduler forgot, and for
        # those it calls finished without a code: a view that has the end but not yet
        # the code (slurmctld's record before accounting has it) must not settle a
        # job with none, since a finished job is never asked again.
        unanswered = [j for j in jobs if (info := infos.get(str(j.batch_job_id))) is None
                      or (info.status.finished and info.exit_code is None)]
        exit_codes = self._exit_codes(unanswered) if unanswered else {}
        results: dict[int, StatusResult] = {}
        for job in jobs:
            assert job.batch_job_id is not None
            info = infos.get(job.batch_job_id)
            code = exit_codes.get(job.job_id)
            if info is None:
                results[job.job_id] = Absent(code)
                continue
            if info.status.finished and info.exit_code is None and code is not None:
                info.exit_code = code
                if code != 0:
                    info.status = JobStatus.FAILED
            results[job.job_id] = info
        return results

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

    def kill(self, jobs: Sequence[Job]) -> dict[int, KillResult]:
        """One kill command per KILL_CHUNK ids, in one round trip; the ids its answer
        leaves unclear, one kill command each in a second. A job without an answer
        (the connection cut) has no entry: kong.lifecycle asks for its status."""
        batch_ids = list(dict.fromkeys(str(j.batch_job_id) for j in jobs if j.batch_job_id))
        groups = [list(group) for group in chunks(batch_ids, KILL_CHUNK)]
        answers = self._each_raw({f"kill-{n}": self.kill_many_argv(group)
                                  for n, group in enumerate(groups)})
        said: dict[str, tuple[int, str]] = {}
        unclear: list[str] = []
        for n, group in enumerate(groups):
            answer = answers.get(f"kill-{n}")
            if answer is None:
                continue  # cut short: no answer
            words = self.kill_many_answers(group, *answer)
            said.update((i, words[i]) for i in group if i in words)
            unclear += [i for i in group if i not in words]
        if unclear:
            said.update(self._each_raw({i: self.kill_argv(i) for i in unclear}))
        return {j.job_id: self.classify_kill(*said[str(j.batch_job_id)])
                for j in jobs if j.batch_job_id and str(j.batch_job_id) in said}

    def kill_tokens(self, tokens: Sequence[str]) -> dict[str, KillResult]:
        return self._each({token: self.kill_token_argv(token) for token in tokens})

    def _each(self, commands: dict[str, list[str]]) -> dict[str, KillResult]:
        """Run one kill command per key in one round trip; the answer per key."""
        return {key: self.classify_kill(rc, output)
                for key, (rc, output) in self._each_raw(commands).items()}

    def _each_raw(self, commands: dict[str, list[str]]) -> dict[str, tuple[int, str]]:
        """Run one command per key in one round trip; (exit code, output on one line)
        per key that answered."""
        if not commands:
            return {}
        stdin = "".join(f"{key}\t{shlex.join(argv)}\n" for key, argv in commands.items())
        output = self.run_script(_EACH, stdin)
        results: dict[str, tuple[int, str]] = {}
        for line in output.splitlines():
            parts = line.split("\t", 3)
            if len(parts) == 4 and parts[0] == "KONG" and parts[1] in commands:
                rc = int(parts[2]) if parts[2].lstrip("-").isdigit() else -1
                results[parts[1]] = (rc, parts[3].strip())
        return results

    def classify_kill(self, rc: int, output: str) -> KillResult:
        """What one kill command's exit code and words mean."""
        lower = output.lower()
        if any(word in lower for word in self.KILL_FINISHED):
            return KillResult(KillOutcome.FINISHED, output)
        if any(word in lower for word in self.KILL_GONE):
            return KillResult(KillOutcome.UNKNOWN, output)
        if rc == 0:
            return KillResult(KillOutcome.KILLED, output)
        return KillResult(KillOutcome.REFUSED, output or f"exit code {rc}")

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


def walltime_seconds(value: str | int) -> float:
    """A walltime in seconds, as ``walltime_minutes`` reads it but keeping the seconds
    someone wrote (``"0:30"`` is 30 s): for the limits kept to the second (the local
    runner, HTCondor's periodic hold, Grid Engine's h_rt). Slurm and LSF take minutes."""
    minutes = walltime_minutes(value)  # checks it
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
