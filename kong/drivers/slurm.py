"""The Slurm driver: ``sbatch``, ``squeue``/``sacct`` (``scontrol`` without accounting),
``scancel``, all in bulk through the transport.

Mostly data over ``BatchDriver``: the ``#SBATCH`` header, the state table, the
parsers of what Slurm prints, and three small remote scripts. Each script is one
round trip whatever the number of jobs; job ids and tokens go on stdin, never on
the command line, because one argument over SSH is limited to 128 KiB.

Profile options (each also a per-job override in ``create_job(...)``): account,
partition, qos, memory (``"4G"`` or MB), cores (the default of ``create_job``'s
``cores``), nodes, tasks, licenses, plus the batch options walltime, extra,
scratch_dir and poll_interval.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from kong.drivers.arrays import ARRAY_OPTIONS, expand_element_ids, parse_element_token
from kong.drivers.base import QueueLimits, StatusResult, TokenLookup, exit_reason
from kong.drivers.batch import (
    BATCH_OPTIONS,
    BUSY,
    SchedulerInfo,
    walltime_minutes,
)
from kong.drivers.sh import load
from kong.drivers.slurm_arrays import _KILL_ELEMENT, SlurmArrays
from kong.drivers.slurm_arrays import sbatch_path as _sbatch_path
from kong.errors import DriverError
from kong.model.job import Job, JobStatus
from kong.remote.statusview import Verdict, ViewAnswer
from kong.usage import SACCT_USAGE_FIELDS, fold_sacct_steps

if TYPE_CHECKING:
    from kong.remote.base import CommandResult

log = logging.getLogger(__name__)

#: what ``scancel -v`` says of each id it cancels, and of each it could not (its
#: lines joined on one: the words run to the next "scancel: ")
_SCANCEL_TERMINATING = re.compile(r"scancel: Terminating job (\S+)")
_SCANCEL_ERROR = re.compile(
    r"scancel: error: Kill job error on job id (\S+?):\s*(.*?)\s*(?=scancel: |$)")

#: Slurm's job states (squeue %T, sacct State, scontrol JobState) -> kong's.
#: A job that will still run (queued, requeued, held for a reservation) is SUBMITTED;
#: one that started and is not over is RUNNING; every end but success is FAILED.
STATES: dict[str, JobStatus] = {
    "PENDING": JobStatus.SUBMITTED,
    "CONFIGURING": JobStatus.SUBMITTED,  # nodes allocated, still booting
    "REQUEUED": JobStatus.SUBMITTED,
    "REQUEUE_HOLD": JobStatus.SUBMITTED,
    "REQUEUE_FED": JobStatus.SUBMITTED,
    "RESV_DEL_HOLD": JobStatus.SUBMITTED,
    "RUNNING": JobStatus.RUNNING,
    "COMPLETING": JobStatus.RUNNING,  # the exit code is not final until COMPLETED
    "SUSPENDED": JobStatus.RUNNING,
    "STOPPED": JobStatus.RUNNING,
    "RESIZING": JobStatus.RUNNING,
    "SIGNALING": JobStatus.RUNNING,
    "STAGE_OUT": JobStatus.RUNNING,
    "COMPLETED": JobStatus.COMPLETED,
    "FAILED": JobStatus.FAILED,
    "CANCELLED": JobStatus.FAILED,
    "TIMEOUT": JobStatus.FAILED,
    "NODE_FAIL": JobStatus.FAILED,
    "PREEMPTED": JobStatus.FAILED,
    "OUT_OF_MEMORY": JobStatus.FAILED,
    "BOOT_FAIL": JobStatus.FAILED,
    "DEADLINE": JobStatus.FAILED,
    "SPECIAL_EXIT": JobStatus.FAILED,
    # Federation: a sibling cluster took the job; this cluster will never run it.
    "REVOKED": JobStatus.FAILED,
}

SACCT_FIELDS = ("JobID", "JobName", "State", "ExitCode", "NodeList", "Submit", "Start", "End",
                "Reason")
SQUEUE_FORMAT = "%i|%j|%T|%r|%N|%V|%S"

# Shell helpers of the scripts below: ``keep P IDS FILE`` prints the lines of FILE
# whose first |-field is in the file IDS, prefixed with P; ``drop FILE IDS`` prints
# the ids of IDS that start no line of FILE.

# status: one round trip. Lines: Q|<squeue line> for the live jobs, A|<sacct line>
# for the others sacct knows, C|<scontrol line> for the rest slurmctld still holds,
# NOACCT|<why> when sacct cannot answer, ERR|<why> when squeue fails, then END.
_QUERY = load("slurm_helpers.sh", "slurm_query.sh")

# reconcile: one round trip. Tokens on stdin; lines Q|<name>|<id> (slurmctld) and
# A|<name>|<id> (sacct, the last 7 days), then HIST|sacct when sacct answered, or
# else HIST|<MinJobAge> (how long slurmctld keeps a finished job), then END.
_FIND = load("wait_for_submits.sh", "slurm_helpers.sh", "slurm_find.sh")

# Which of the stderr logs on stdin say slurmstepd killed the job for its memory.
_OOM_LOGS = load("slurm_oom.sh")

_MEMORY = re.compile(r"^\d+[KMGT]?$")
_ACCOUNTING_OFF = ("accounting storage is disabled", "not found", "no such file")

# The fallback to squeue/scontrol is announced once per process and cluster.
_warned: set[str] = set()
_warned_lock = threading.Lock()


class SlurmDriver(SlurmArrays):
    name = "slurm"
    submit_tool = "sbatch"
    KILL_FINISHED = ("already completing or completed",)
    KILL_GONE = ("invalid job id",)
    OPTIONS: ClassVar[dict[str, type | tuple[type, ...]]] = {
        **BATCH_OPTIONS,
        **ARRAY_OPTIONS,
        "account": str,
        "partition": str,
        "qos": str,
        "memory": (str, int),
        "cores": int,
        "nodes": (int, str),
        "tasks": int,
        "licenses": str,
    }

    def check_options(self, options: dict[str, Any]) -> None:
        super().check_options(options)
        memory = options.get("memory")
        if isinstance(memory, str) and not _MEMORY.match(memory.strip()):
            raise DriverError(
                f"option 'memory' of driver slurm: expected MB or a size like 4G, got {memory!r}"
            )
        for key in ("cores", "tasks"):
            value = options.get(key)
            if isinstance(value, int) and value < 1:
                raise DriverError(f"option {key!r} of driver slurm: must be at least 1")

    # -- what BatchDriver needs ---------------------------------------------------------

    def header_lines(self, job: Job, options: dict[str, Any], token: str) -> list[str]:
        paths = self.job_paths(job)
        lines = [
            f"--job-name={token}",
            f"--comment={token}",
            f"--output={_sbatch_path(paths.stdout)}",
            f"--error={_sbatch_path(paths.stderr)}",
            f"--cpus-per-task={job.cores}",
        ]
        walltime = options.get("walltime")
        if walltime is not None:
            lines.append(f"--time={walltime_minutes(walltime)}")
        memory = job.memory if job.memory is not None else options.get("memory")
        if memory is not None:
            lines.append(f"--mem={str(memory).strip()}")
        for key, flag in (("account", "account"), ("partition", "partition"), ("qos", "qos"),
                          ("nodes", "nodes"), ("tasks", "ntasks"), ("licenses", "licenses")):
            value = options.get(key)
            if value is not None:
                lines.append(f"--{flag}={value}")
        header = [f"#SBATCH {line}" for line in lines]
        for line in options.get("extra") or ():
            # "--gres=gpu:1" is shorthand for "#SBATCH --gres=gpu:1"
            header.append(f"#SBATCH {line}" if line.lstrip().startswith("-") else line)
        return header

    def submit_argv(self, job: Job, script: str, token: str) -> list[str]:
        return ["sbatch", "--parsable", script]

    def parse_submit(self, output: str) -> str:
        return parse_sbatch(output)

    def kill_argv(self, batch_id: str) -> list[str]:
        # -v: without it, scancel (22.05) says nothing of a job that had ended or that
        # it does not know, and exits 0 as for a kill
        return ["scancel", "-v", batch_id]

    def kill_many_argv(self, batch_ids: Sequence[str]) -> list[str]:
        return ["scancel", "-v", *batch_ids]

    def kill_many_answers(self, batch_ids: Sequence[str], rc: int,
                          output: str) -> dict[str, tuple[int, str]]:
        """``scancel -v``'s lines (joined on one): "scancel: Terminating job 12" for
        each id it asks slurmctld to cancel, then "scancel: error: Kill job error on
        job id 12: Invalid job id specified" (or "Job/step already completing or
        completed", "Access/permission denied") for each it could not. An id named
        only as terminating was cancelled, as long as scancel ran to its end (exit 0
        or 1) and said nothing else kong cannot read."""
        said = {m.group(1): (1, m.group(2)) for m in _SCANCEL_ERROR.finditer(output)}
        rest = _SCANCEL_ERROR.sub(" ", _SCANCEL_TERMINATING.sub(" ", output)).strip()
        if rc in (0, 1) and not rest:
            for m in _SCANCEL_TERMINATING.finditer(output):
                said.setdefault(m.group(1), (0, m.group(0)))
        return said

    def kill_token_argv(self, token: str) -> list[str]:
        element = parse_element_token(token)
        if element is not None:  # the name is the whole array's: kill only the element
            return ["sh", "-c", _KILL_ELEMENT, "sh", element[0], str(element[1])]
        return ["scancel", "--me", f"--name={token}"]

    #: _QUERY's answer ends with END; ERR|<why> is squeue's failure. slurmctld under
    #: load or with rl_enable answers "Socket timed out", "Resource temporarily
    #: unavailable" or a rate-limit message: the agent's view then backs off to its cap.
    STATUS_VERDICT: ClassVar[Verdict | None] = Verdict(
        done_line="END", error_prefix="ERR|",
        throttle_words=("rate limit", "ratelimit", "too many", "try again", "retry",
                        "timed out", "temporarily unavailable", "backoff"))

    def status_command(self) -> list[str] | None:
        return self.sh_argv(_QUERY, SQUEUE_FORMAT, ",".join(SACCT_FIELDS),
                            ",".join(SACCT_USAGE_FIELDS))

    def parse_status(self, result: CommandResult) -> dict[str, SchedulerInfo]:
        return self._parse_query(self._checked(result))

    def query(self, jobs: Sequence[Job]) -> dict[str, SchedulerInfo]:
        ids = [str(j.batch_job_id) for j in jobs if j.batch_job_id]
        if not ids:
            return {}
        return self._parse_query(self._run(_QUERY, ids, SQUEUE_FORMAT, ",".join(SACCT_FIELDS),
                                           ",".join(SACCT_USAGE_FIELDS)))

    def _parse_query(self, lines: Sequence[str]) -> dict[str, SchedulerInfo]:
        infos: dict[str, SchedulerInfo] = {}
        usage_rows: list[str] = []
        for line in lines:
            kind, _, rest = line.partition("|")
            parsed: tuple[str, SchedulerInfo] | None = None
            if kind == "U":
                usage_rows.append(rest)
            elif kind == "Q":
                parsed = parse_squeue_line(rest)
            elif kind == "A":
                parsed = parse_sacct_line(rest)
            elif kind == "C":
                parsed = parse_scontrol_line(rest)
            elif kind == "NOACCT":
                self._warn_fallback(rest)
            if parsed is not None:
                # pending elements folded into one line (123_[4-9]) are each of them
                for batch_id in expand_element_ids(parsed[0]):
                    infos[batch_id] = parsed[1]
        # Usage is final only once the job is: a finished job is never asked again.
        for batch_id, usage in fold_sacct_steps(usage_rows).items():
            info = infos.get(batch_id)
            if info is not None and info.status.finished:
                info.extra["usage"] = usage
        return infos

    def find_tokens(self, tokens: Sequence[str]) -> TokenLookup:
        if not tokens:
            return TokenLookup({})
        found: dict[str, str] = {}
        busy: str | None = None
        # Without an answer from sacct, a finished job is known only while slurmctld
        # keeps it (MinJobAge, 300 s unless the site says otherwise).
        history: float | None = 300.0
        for line in self._run(_FIND, self._names(tokens), self.submit_lock):
            if line == BUSY:
                busy = self.busy_message()
                continue
            kind, _, rest = line.partition("|")
            if kind == "HIST":
                value = rest.strip().lower().removesuffix("sec").strip()
                history = 7 * 24 * 3600.0 if value == "sacct" else (
                    float(value) if value.isdigit() else history)
                continue
            name, _, batch_id = rest.partition("|")
            batch_id = batch_id.strip().partition("_")[0]  # an array element: its array
            if kind not in ("Q", "A") or not batch_id.isdigit():
                continue
            # The same token twice would be a double submission; the newest one is
            # the one that may still run, and it is the one kong follows.
            if name not in found or int(batch_id) > int(found[name]):
                found[name] = batch_id
        return TokenLookup(self._elements(tokens, found), busy=busy,
                           history_seconds=history)

    def _status(self, jobs: Sequence[Job], force: bool) -> dict[int, StatusResult]:
        results = super()._status(jobs, force)
        self._find_memory_kills(jobs, results)
        return results

    def status_view(
        self, batch_ids: Mapping[int, str]
    ) -> tuple[dict[int, StatusResult], ViewAnswer] | None:
        """As the shared view says, but a job killed by signal 9 only once a refresh
        has read its stderr (was it over its memory?): a listing reads no logs."""
        seen = super().status_view(batch_ids)
        if seen is None:
            return None
        results, answer = seen
        return {i: r for i, r in results.items() if not (
            isinstance(r, SchedulerInfo) and r.end_reason == "SIGNAL(9)")}, answer

    def _find_memory_kills(self, jobs: Sequence[Job], results: dict[int, StatusResult]) -> None:
        """Where memory is enforced by polling (JobAcctGatherParams=OverMemoryKill, no
        cgroup), a job over its memory ends FAILED by signal 9 and only slurmstepd's
        line in its stderr says why: that job ended OUT_OF_MEMORY. One round trip,
        only when a job ended so."""
        killed: dict[str, int] = {}
        for job in jobs:
            info = results.get(job.job_id)
            if (isinstance(info, SchedulerInfo) and info.status.finished
                    and info.end_reason == "SIGNAL(9)"):
                paths = self.job_paths(job)
                # slurmstepd writes to the job's stderr, or for an array element to
                # the element's own file, kept as scheduler.txt beside its logs
                killed[paths.stderr] = killed[f"{paths.log_dir}/scheduler.txt"] = job.job_id
        if not killed:
            return
        output = self.run_script(_OOM_LOGS, "".join(f"{path}\n" for path in killed))
        for path in output.splitlines():
            info = results.get(killed.get(path, -1))
            if isinstance(info, SchedulerInfo):
                info.end_reason = "OUT_OF_MEMORY"
                info.reason = info.reason or "exceeded its memory limit"

    def queue_of(self, job: Job) -> str:
        return str(self.job_options(job).get("partition") or "")

    def queue_limits(self) -> dict[str, QueueLimits]:
        """Every partition's limits from one ``scontrol show partition -o``."""
        result = self.transport.run(["scontrol", "show", "partition", "-o"])
        if result.exit_code != 0:
            err = result.stderr.decode(errors="replace").strip().splitlines()
            raise DriverError(f"slurm on {self.transport.label}: cannot read the partitions' "
                              f"limits: {err[-1] if err else f'exit code {result.exit_code}'}")
        return parse_partitions(result.text())

    # -- helpers ------------------------------------------------------------------------

    def _run(self, script: str, stdin_lines: Sequence[str], *args: str) -> list[str]:
        """Run one of the scripts above; its answer counts only when it ran to the end."""
        stdin = "".join(f"{line}\n" for line in stdin_lines).encode()
        return self._checked(self.transport.run(self.sh_argv(script, *args), stdin=stdin))

    def _checked(self, result: CommandResult) -> list[str]:
        lines = result.text().splitlines()
        for line in lines:
            if line.startswith("ERR|"):
                raise DriverError(f"slurm on {self.transport.label}: {line[4:].strip()}")
        if not lines or lines[-1] != "END":
            err = result.stderr.decode(errors="replace").strip().splitlines()
            raise DriverError(
                f"slurm query on {self.transport.label} failed: "
                f"{err[-1] if err else f'exit code {result.exit_code}'}"
            )
        return lines[:-1]

    def _warn_fallback(self, why: str) -> None:
        key = self.transport.label
        with _warned_lock:
            if key in _warned:
                return
            _warned.add(key)
        why = why.strip() or "no reason given"
        lower = why.lower()
        what = ("accounting is off" if any(s in lower for s in _ACCOUNTING_OFF)
                else "sacct failed")
        message = (f"kong: slurm on {key}: {what} ({why}); finished jobs are read from "
                   f"scontrol and their exit_code files instead of sacct")
        # Without any logging configured, Python prints warnings to stderr itself.
        log.warning(message)


# -- parsers (pure functions, tested on sample lines) -----------------------------------


def slurm_status(state: str) -> JobStatus:
    """kong's status of a Slurm state word (``CANCELLED by 1000`` and ``CANCELLED+`` too)."""
    word = state.strip().split(" ", 1)[0].rstrip("+").upper()
    return STATES.get(word, JobStatus.UNKNOWN)


def slurm_state_word(state: str) -> str:
    return state.strip().split(" ", 1)[0].rstrip("+").upper()


def parse_exit_code(text: str | None, status: JobStatus) -> int | None:
    """``rc:signal`` as one shell-style code: the signal as 128+N, else rc.

    A job Slurm ended itself (cancelled, node failure) reports ``0:0``: that is no
    exit code of the job's, so a FAILED job gets None rather than a misleading 0.
    """
    if not text:
        return None
    rc_text, _, sig_text = text.strip().partition(":")
    try:
        rc = int(rc_text)
        sig = int(sig_text) if sig_text else 0
    except ValueError:
        return None
    if sig:
        return 128 + sig
    if rc == 0 and status == JobStatus.FAILED:
        return None
    return rc


_PARSABLE = re.compile(r"^(\d+)(?:;\S+)?$")


def parse_sbatch(output: str) -> str:
    """The job id of ``sbatch --parsable``: a line of its own, ``123`` or
    ``123;cluster``; the last such line wins over warnings and site wrappers
    around it. A number inside a sentence ("held for 600 seconds") is no job id."""
    for line in reversed(output.strip().splitlines()):
        m = _PARSABLE.match(line.strip())
        if m is not None:
            return m.group(1)
    raise DriverError(f"sbatch printed no job id: {output.strip()[:200]!r}")


def _time(value: str | None) -> str | None:
    if not value or value in ("N/A", "Unknown", "None", "(null)"):
        return None
    return value


def _info(
    state: str,
    *,
    exit_code: str | None,
    reason: str | None,
    node: str | None,
    submit: str | None,
    start: str | None,
    end: str | None,
) -> SchedulerInfo:
    status = slurm_status(state)
    word = slurm_state_word(state)
    if reason in ("None", "(null)", ""):
        reason = None
    if reason is None and status == JobStatus.FAILED and word != "FAILED":
        reason = state.strip()  # Slurm ended it: "CANCELLED by 2000", "TIMEOUT", ...
    started = status in (JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.FAILED)
    extra: dict[str, Any] = {
        "node": node if node and node not in ("None assigned", "(null)") else None,
        "submit_time": _time(submit),
        # For a pending job Slurm's StartTime is an estimate, not a start.
        "start_time": _time(start) if started else None,
        "expected_start": None if started else _time(start),
        "end_time": _time(end) if status.finished else None,
    }
    code = parse_exit_code(exit_code, status) if status.finished else None
    return SchedulerInfo(
        status=status,
        state=word,
        exit_code=code,
        reason=reason,
        extra=extra,
        end_reason=slurm_end_reason(word, exit_code) if status.finished else None,
    )


#: Slurm's end states that say why, beyond the job's own exit
_END_WORDS = {
    "TIMEOUT": "TIMEOUT", "DEADLINE": "TIMEOUT", "OUT_OF_MEMORY": "OUT_OF_MEMORY",
    "CANCELLED": "CANCELLED", "REVOKED": "CANCELLED", "NODE_FAIL": "NODE_FAIL",
    "BOOT_FAIL": "NODE_FAIL", "PREEMPTED": "PREEMPTED",
}


def slurm_end_reason(word: str, exit_code: str | None) -> str | None:
    """The end reason of a finished job from its state word and ``rc:signal``."""
    if word in _END_WORDS:
        return _END_WORDS[word]
    rc_text, _, sig_text = (exit_code or "").strip().partition(":")
    if not rc_text.isdigit():
        return None
    signal = int(sig_text) if sig_text.isdigit() else 0
    if word == "FAILED" and int(rc_text) == 0 and not signal:
        return None  # Slurm ended it and gave no code of the job's
    return exit_reason(int(rc_text), signal)


def parse_squeue_line(line: str) -> tuple[str, SchedulerInfo] | None:
    """One line of ``squeue -h -o '%i|%j|%T|%r|%N|%V|%S'``."""
    parts = line.rstrip("\n").split("|")
    if len(parts) < 7 or not parts[0]:
        return None
    batch_id, _name, state, reason, node, submit, start = parts[:7]
    return batch_id, _info(state, exit_code=None, reason=reason, node=node,
                           submit=submit, start=start, end=None)


def parse_sacct_line(line: str) -> tuple[str, SchedulerInfo] | None:
    """One line of ``sacct -X -n -P --format=JobID,JobName,State,ExitCode,NodeList,
    Submit,Start,End,Reason``. The job name is the one free-text field before the
    last seven, so it is found from both ends."""
    parts = line.rstrip("\n").split("|")
    if len(parts) < len(SACCT_FIELDS) or not parts[0]:
        return None
    batch_id = parts[0]
    state, exit_code, node, submit, start, end = parts[-7:-1]
    reason = parts[-1]
    return batch_id, _info(state, exit_code=exit_code, reason=reason, node=node,
                           submit=submit, start=start, end=end)


_SCONTROL_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=")


def scontrol_fields(line: str) -> dict[str, str]:
    """``Key=value`` pairs of ``scontrol show job -o``; values may hold spaces and '='."""
    fields: dict[str, str] = {}
    matches = list(_SCONTROL_KEY.finditer(line))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        fields.setdefault(m.group(1), line[m.end():end].strip())
    return fields


def parse_scontrol_line(line: str) -> tuple[str, SchedulerInfo] | None:
    """One line of ``scontrol show job -o``."""
    fields = scontrol_fields(line)
    batch_id = fields.get("JobId")
    array_id, task = fields.get("ArrayJobId"), fields.get("ArrayTaskId")
    if array_id and task:  # an element: known by its array's id and its index
        batch_id = f"{array_id}_{task}" if task.isdigit() else f"{array_id}_[{task}]"
    state = fields.get("JobState")
    if not batch_id or not state:
        return None
    return batch_id, _info(state, exit_code=fields.get("ExitCode"), reason=fields.get("Reason"),
                           node=fields.get("NodeList"), submit=fields.get("SubmitTime"),
                           start=fields.get("StartTime"), end=fields.get("EndTime"))


def _limit_minutes(value: str | None) -> int | None:
    """Minutes of a partition's MaxTime/DefaultTime (``UNLIMITED``, ``NONE``: None)."""
    if not value or value.upper() in ("UNLIMITED", "INFINITE", "NONE", "N/A"):
        return None
    try:
        return walltime_minutes(value)
    except DriverError:
        return None


def _limit_number(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and int(value) > 0 else None


def parse_partitions(text: str) -> dict[str, QueueLimits]:
    """The limits in ``scontrol show partition -o``: per partition, the default one also
    under ""."""
    limits: dict[str, QueueLimits] = {}
    for line in text.splitlines():
        fields = scontrol_fields(line)
        name = fields.get("PartitionName")
        if not name:
            continue
        queue = QueueLimits(
            walltime=_limit_minutes(fields.get("MaxTime")),
            memory=_limit_number(fields.get("MaxMemPerNode")),
            memory_per_core=_limit_number(fields.get("MaxMemPerCPU")),
            cores=_limit_number(fields.get("MaxCPUsPerNode")),
            default_walltime=_limit_minutes(fields.get("DefaultTime")),
        )
        limits[name] = queue
        if fields.get("Default", "").upper() == "YES":
            limits[""] = queue
    return limits

