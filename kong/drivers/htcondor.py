"""The HTCondor driver: jobs go to a schedd through ``condor_submit`` on a submit node.

Mostly data on top of ``kong.drivers.batch``: the submit description, the
JobStatus table and the parsers of ``condor_submit -terse`` and of
``condor_q``/``condor_history -json``.

Submit   all jobs that share a submit description (same options, cores, memory)
         become one cluster: one description whose ``queue ... from (...)``
         table lists a token and job dir per job, so ProcIds follow the table's
         order. Several such descriptions go to one remote command, one
         ``condor_submit`` each: one round trip whatever the number of jobs.
         (Several ``queue`` statements in one file are deprecated in HTCondor 23
         and gone in 24.) Each job carries its kong token in ``+KongToken``.
Status   one remote command: ``condor_q -json`` and ``condor_history -json``
         constrained to the jobs' ids. A record in the history is final and wins
         over the queue's.
Held     a held job is reported FAILED with its HoldReason and, unless its
         options say ``remove_held: false``, removed with ``condor_rm`` in the
         same command: kong never asks about a FAILED job again, so a held job
         left in the queue would wait there forever, or run behind kong's back
         after a ``condor_release`` while a resubmitted copy runs too.
Walltime becomes a ``periodic_hold`` on the time the job has been running: the
         job is held when it runs longer, so it ends FAILED like any held job.
Kill     one ``condor_rm`` with all ids, a line per id; a killed job gets 5 s (job_max_vacate_time,
         which ``extra`` may override) between SIGTERM and SIGKILL.

Profile options (each also a per-job override through ``create_job``):
universe (default vanilla), request_cpus (default: the job's cores),
request_memory (MB, or a string with a unit such as "2 GB"; default: the job's
memory), request_disk (KiB, or a string with a unit), requirements,
accounting_group, should_transfer_files (default NO: the pool shares a file
system with the submit node), remove_held (default true), and the batch options
walltime, scratch_dir, extra (submit-description lines, verbatim) and
poll_interval.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from kong.drivers.base import TokenLookup
from kong.drivers.batch import (
    BATCH_OPTIONS,
    BUSY,
    BatchDriver,
    SchedulerInfo,
    SubmitEntry,
    walltime_seconds,
)
from kong.drivers.htcondor_usage import condor_end_reason, condor_times, condor_usage
from kong.drivers.sh import load
from kong.errors import DriverError
from kong.model.job import Job, JobStatus

if TYPE_CHECKING:
    pass

HTCONDOR_OPTIONS: dict[str, type | tuple[type, ...]] = {
    **BATCH_OPTIONS,
    "universe": str,
    "request_cpus": int,
    "request_memory": (int, str),
    "request_disk": (int, str),
    "requirements": str,
    "accounting_group": str,
    "should_transfer_files": str,
    "remove_held": bool,
    # false: every job a cluster of its own (one condor_submit each), not one per
    # submit description
    "arrays": bool,
}

#: what kong asks condor_q and condor_history for
ATTRIBUTES = (
    "ClusterId",
    "ProcId",
    "JobStatus",
    "KongToken",
    "ExitCode",
    "ExitBySignal",
    "ExitSignal",
    "HoldReason",
    "HoldReasonCode",
    "LastHoldReason",
    "LastHoldReasonCode",
    "RemoveReason",
    "RemoteHost",
    "LastRemoteHost",
    # times and usage (kong.usage)
    "QDate",
    "JobCurrentStartDate",
    "JobStartDate",
    "CompletionDate",
    "EnteredCurrentStatus",
    "RemoteWallClockTime",
    "RemoteUserCpu",
    "RemoteSysCpu",
    "ResidentSetSize",
    "MemoryUsage",
    "RequestCpus",
    "RequestMemory",
)

#: JobStatus -> (kong status, HTCondor's name); 3 and 4 are refined by ``scheduler_info``
JOB_STATUS: dict[int, tuple[JobStatus, str]] = {
    1: (JobStatus.SUBMITTED, "Idle"),
    2: (JobStatus.RUNNING, "Running"),
    3: (JobStatus.FAILED, "Removed"),
    4: (JobStatus.COMPLETED, "Completed"),
    5: (JobStatus.FAILED, "Held"),
    6: (JobStatus.RUNNING, "TransferringOutput"),
    # A suspended job has started and will go on: not finished, not merely queued.
    7: (JobStatus.RUNNING, "Suspended"),
}

TRANSFER_MODES = ("YES", "NO", "IF_NEEDED")

# Columns of the queue table. The job dir comes last: HTCondor gives the last
# column the rest of the line, so a dir with spaces stays one item.
_TOKEN_VAR = "kong_token"
_DIR_VAR = "kong_dir"

# stdin: after a line "KONG-EXEC" the job scripts, one a line (uploaded as plain
# files; HTCondor runs them directly, so they need their execute bit); then submit
# descriptions, each after a line "KONG-SUBMIT". One condor_submit each, all in
# this one command; "$1" is the submit lock (see batch._SUBMIT_LOOP).
_SUBMIT = load("htcondor_submit.sh")

# stdin: lines "<limit>\t<since or ->\t<remove held: 1 or 0>\t<constraint>" (a tab
# is IFS white space: an empty field would vanish). For each: the queue, the
# history (stopping at -limit records, or where <since> becomes true, so a long
# history is not read to its start), then the held jobs removed if asked. "$1": a
# submit lock to wait for (find_tokens) or ""; "$2": the attributes.
_QUERY = load("wait_for_submits.sh", "htcondor_query.sh")

# A constraint stays well under the kernel's 128 KiB limit for one argument.
_MAX_CONSTRAINT = 16_000
# How much earlier than the oldest submission a history record may have entered
# its final state and still be one of ours (clock skew, jobs lingering in the queue).
_SINCE_MARGIN = 3600

_ID = re.compile(r"^(\d+)\.(\d+)$")
_TERSE = re.compile(r"(\d+)\.(\d+)\s*-\s*(\d+)\.(\d+)")
#: what condor_rm says of one id (its lines joined on one: the words run to the next)
_CONDOR_RM_ANSWER = re.compile(r"Job (\d+\.\d+) (.*?)\s*(?=Job \d|$)")


# -- parsers (pure; tests/test_htcondor_parsers.py) ---------------------------------------


def parse_terse(output: str) -> list[str]:
    """Job ids from ``condor_submit -terse``: ``"8.0 - 8.2"`` -> 8.0, 8.1, 8.2."""
    ids: list[str] = []
    for cluster, first, cluster2, last in _TERSE.findall(output):
        if cluster != cluster2 or int(last) < int(first):
            raise DriverError(f"condor_submit printed an odd range: {output.strip()[:200]}")
        ids.extend(f"{cluster}.{proc}" for proc in range(int(first), int(last) + 1))
    return ids


def parse_ads(text: str) -> list[dict[str, Any]]:
    """The ads of one ``-json`` output: a JSON array, or nothing when none matched."""
    text = text.strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DriverError(f"cannot read HTCondor's JSON output: {exc}: {text[:200]}") from None
    if not isinstance(data, list) or not all(isinstance(ad, dict) for ad in data):
        raise DriverError(f"HTCondor's JSON output is not a list of ads: {text[:200]}")
    return data


def parse_query(output: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(queue ads, history ads) from the output of the status command."""
    queue: list[str] = []
    history: list[str] = []
    sections: dict[str, list[str]] = {"KONG-QUEUE": queue, "KONG-HISTORY": history}
    current: list[str] | None = None
    complete = False
    for line in output.splitlines():
        marker = line.strip()
        if marker in sections:
            current = sections[marker]
            current.append("\x00")  # each condor_q/condor_history call is its own array
        elif marker == "KONG-END":
            complete = True
            current = None
        elif current is not None:
            current.append(line)
    if not complete:
        raise DriverError("the HTCondor query was cut short")

    def ads(lines: list[str]) -> list[dict[str, Any]]:
        return [ad for chunk in "\n".join(lines).split("\x00") for ad in parse_ads(chunk)]

    return ads(queue), ads(history)


def batch_id(ad: dict[str, Any]) -> str | None:
    cluster, proc = ad.get("ClusterId"), ad.get("ProcId")
    if isinstance(cluster, int) and isinstance(proc, int):
        return f"{cluster}.{proc}"
    return None


def scheduler_info(ad: dict[str, Any]) -> SchedulerInfo:
    """What one job ad (from the queue or the history) says, in kong's terms."""
    code = ad.get("JobStatus")
    if not isinstance(code, int) or code not in JOB_STATUS:
        return SchedulerInfo(JobStatus.UNKNOWN, f"JobStatus={code}")
    status, state = JOB_STATUS[code]
    exit_code: int | None = None
    reason: str | None = None
    if code == 4:
        if ad.get("ExitBySignal") is True:
            signal = ad.get("ExitSignal")
            status = JobStatus.FAILED
            exit_code = 128 + signal if isinstance(signal, int) else None
            reason = f"killed by signal {signal}"
        elif isinstance(ad.get("ExitCode"), int):
            exit_code = ad["ExitCode"]
            if exit_code != 0:
                status = JobStatus.FAILED
        else:
            status = JobStatus.FAILED
            reason = "completed without an exit code"
    elif code == 5:
        reason = _hold_reason(ad.get("HoldReason"), ad.get("HoldReasonCode"))
    elif code == 3:
        removed = f"removed: {ad['RemoveReason']}" if ad.get("RemoveReason") else "removed"
        held = ad.get("LastHoldReason")
        reason = f"held: {held}; then {removed}" if held else removed
        if isinstance(ad.get("ExitCode"), int):
            exit_code = ad["ExitCode"]
    extra: dict[str, Any] = {}
    host = ad.get("RemoteHost") or ad.get("LastRemoteHost")
    if isinstance(host, str):
        extra["node"] = host.rpartition("@")[2]
    extra.update(condor_times(ad, status.finished))
    end_reason = None
    if status.finished:
        extra["usage"] = condor_usage(ad)
        end_reason = condor_end_reason(ad)
    return SchedulerInfo(status, state, exit_code=exit_code, reason=reason, extra=extra,
                         end_reason=end_reason)


def _hold_reason(reason: Any, code: Any) -> str:
    text = str(reason) if reason else "held"
    return f"{text} (HoldReasonCode {code})" if isinstance(code, int) else text


def merge_ads(
    queue: Iterable[dict[str, Any]], history: Iterable[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Ads by batch id; a job in both (it left the queue between the two calls)
    takes its history record, which is final."""
    merged: dict[str, dict[str, Any]] = {}
    for ad in [*queue, *history]:
        key = batch_id(ad)
        if key is not None:
            merged[key] = ad
    return merged


def ids_constraints(
    batch_ids: Iterable[str], limit: int = _MAX_CONSTRAINT
) -> list[tuple[str, int]]:
    """ClassAd constraints matching exactly these ``Cluster.Proc`` ids, each paired with
    the number of ids it matches, and each shorter than ``limit`` characters; runs of
    consecutive ProcIds become ranges, so a whole submission is one short clause."""
    by_cluster: dict[int, set[int]] = {}
    for value in batch_ids:
        match = _ID.match(value)
        if match is None:
            raise DriverError(f"not an HTCondor job id: {value!r}")
        by_cluster.setdefault(int(match[1]), set()).add(int(match[2]))
    clauses: list[tuple[str, int]] = []
    for cluster in sorted(by_cluster):
        for first, last in _runs(sorted(by_cluster[cluster])):
            procs = (f"ProcId == {first}" if first == last
                     else f"ProcId >= {first} && ProcId <= {last}")
            clauses.append((f"(ClusterId == {cluster} && {procs})", last - first + 1))
    return _join(clauses, " || ", limit)


def tokens_constraints(
    tokens: Iterable[str], limit: int = _MAX_CONSTRAINT
) -> list[tuple[str, int]]:
    """``member(KongToken, {...})`` constraints for these tokens, as ``ids_constraints``."""
    chunks = _join([(classad_string(t), 1) for t in tokens], ", ", limit - 40)
    return [(f"member(KongToken, {{{text}}})", n) for text, n in chunks]


def _runs(values: Sequence[int]) -> Iterator[tuple[int, int]]:
    start = prev = values[0]
    for value in values[1:]:
        if value != prev + 1:
            yield start, prev
            start = value
        prev = value
    yield start, prev


def _join(parts: Sequence[tuple[str, int]], sep: str, limit: int) -> list[tuple[str, int]]:
    chunks: list[tuple[str, int]] = []
    text, count = "", 0
    for part, n in parts:
        if text and len(text) + len(sep) + len(part) > limit:
            chunks.append((text, count))
            text, count = "", 0
        text = f"{text}{sep}{part}" if text else part
        count += n
    if text:
        chunks.append((text, count))
    return chunks


def classad_string(value: str) -> str:
    """A ClassAd string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def parse_submit_groups(output: str) -> dict[int, tuple[int, str, str]]:
    """``KONG-GROUP`` lines of the submit command: group number -> (exit code, stdout, stderr)."""
    groups: dict[int, tuple[int, str, str]] = {}
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) == 5 and parts[0] == "KONG-GROUP" and parts[1].isdigit():
            rc = int(parts[2]) if parts[2].lstrip("-").isdigit() else -1
            groups[int(parts[1])] = (rc, parts[3].strip(), parts[4].strip())
    return groups


class HTCondorDriver(BatchDriver):
    name = "htcondor"
    OPTIONS: ClassVar[dict[str, type | tuple[type, ...]]] = HTCONDOR_OPTIONS
    submit_tool: ClassVar[str] = "condor_submit"
    KILL_GONE = ("not found", "couldn't find")

    # -- submit -------------------------------------------------------------------------

    def header_lines(self, job: Job, options: dict[str, Any], token: str) -> list[str]:
        # HTCondor reads no directives from the script; the comment helps a person
        # who finds the script on the cluster.
        return [f"# HTCondor job, KongToken {token}"]

    def submit_argv(self, job: Job, script: str, token: str) -> list[str]:
        raise NotImplementedError("HTCondor jobs are submitted together, by submit_remote")

    def parse_submit(self, output: str) -> str:
        text = output.strip()
        if _ID.match(text) is None:
            raise DriverError(f"{self.submit_tool} printed no job id: {text[:200]}")
        return text

    def description(self, entry: SubmitEntry) -> list[str]:
        """The submit-description lines of one job, without the per-job table columns:
        jobs with equal lines are submitted as one cluster."""
        options, job, paths = entry.options, entry.job, entry.paths

        def in_dir(path: str) -> str:
            prefix = paths.job_dir.rstrip("/") + "/"
            if not path.startswith(prefix):
                raise DriverError(f"{path} is not inside the job dir {paths.job_dir}")
            return f"$({_DIR_VAR})/{path[len(prefix):]}"

        transfer = str(self.option(options, "should_transfer_files", "NO")).upper()
        cpus = self.option(options, "request_cpus", job.cores)
        memory = self.option(options, "request_memory", job.memory)
        lines = [
            f"universe = {self.option(options, 'universe', 'vanilla')}",
            f"executable = {in_dir(paths.script)}",
            f"output = {in_dir(paths.stdout)}",
            f"error = {in_dir(paths.stderr)}",
            f"initialdir = $({_DIR_VAR})",
            "getenv = false",
            "notification = never",
            "batch_name = kong",
            # condor_rm sends SIGTERM to the job script's shell only, which waits for
            # the user's command before it runs its trap: without a short grace time
            # a killed job would sit in the queue (status X) for MachineMaxVacateTime.
            "job_max_vacate_time = 5",
            f"should_transfer_files = {transfer}",
        ]
        if transfer != "NO":
            lines.append("when_to_transfer_output = ON_EXIT")
        lines.append(f"request_cpus = {cpus}")
        if memory is not None:
            lines.append(f"request_memory = {memory}")
        for key in ("request_disk", "requirements", "accounting_group"):
            if options.get(key) is not None:
                lines.append(f"{key} = {options[key]}")
        if options.get("walltime") is not None:
            # Not allowed_execute_duration: HTCondor 23.9 let jobs run far past it.
            seconds = int(walltime_seconds(options["walltime"]))
            lines.append("periodic_hold = JobStatus == 2 && "
                         f"time() - JobCurrentStartExecutingDate > {seconds}")
            lines.append(f'periodic_hold_reason = "walltime of {seconds} s exceeded"')
        lines.extend(self.option(options, "extra", []))
        # Last, so that no extra line can take the token away.
        lines.append(f'+KongToken = "$({_TOKEN_VAR})"')
        return lines

    def submit_remote(self, entries: Sequence[SubmitEntry]) -> str:
        groups: dict[tuple[str, ...], list[SubmitEntry]] = {}
        for entry in entries:
            _check_submit_word(entry.paths.job_dir, "job dir")
            key = tuple(self.description(entry))
            if self.job_options(entry.job).get("arrays") is False:
                key += (f"# kong job {entry.job.job_id}",)  # a cluster of its own
            groups.setdefault(key, []).append(entry)
        ordered = list(groups.items())
        text = ["KONG-EXEC", *(e.paths.script for e in entries)]
        for lines, members in ordered:
            text.append("KONG-SUBMIT")
            text.extend(lines)
            text.append(f"queue {_TOKEN_VAR},{_DIR_VAR} from (")
            text.extend(f"{e.token} {e.paths.job_dir}" for e in members)
            text.append(")")
        output = self.run_script(_SUBMIT, "\n".join(text) + "\n", self.submit_lock)
        results = parse_submit_groups(output)
        out: list[str] = []
        for number, (_lines, members) in enumerate(ordered, start=1):
            if number not in results:
                continue  # cut short: the tokens tell (reconcile)
            rc, stdout, stderr = results[number]
            if rc != 0:
                # condor_submit commits a description all or nothing
                message = (stderr or stdout or f"exit code {rc}").replace("\t", " ")
                out.extend(f"KONG\t{e.job.job_id}\t{rc}\t{message}" for e in members)
                continue
            try:
                ids = parse_terse(stdout)
            except DriverError:
                ids = []
            if len(ids) != len(members):
                continue  # submitted, but which is which only the tokens tell (reconcile)
            out.extend(f"KONG\t{e.job.job_id}\t0\t{i}" for e, i in zip(members, ids, strict=True))
        return "".join(f"{line}\n" for line in out)

    # -- status -------------------------------------------------------------------------

    def query(self, jobs: Sequence[Job]) -> dict[str, SchedulerInfo]:
        since = _since(jobs)
        by_removal: dict[bool, list[str]] = {True: [], False: []}
        for job in jobs:
            if job.batch_job_id:
                remove = bool(self.option(self.job_options(job), "remove_held", True))
                by_removal[remove].append(job.batch_job_id)
        lines = [
            (constraint, n, since, remove)
            for remove, ids in by_removal.items() if ids
            for constraint, n in ids_constraints(ids)
        ]
        if not lines:
            return {}
        queue, history, _busy = self._ads(lines)
        wanted = {j.batch_job_id for j in jobs}
        return {
            key: scheduler_info(ad)
            for key, ad in merge_ads(queue, history).items()
            if key in wanted
        }

    def find_tokens(self, tokens: Sequence[str]) -> TokenLookup:
        if not tokens:
            return TokenLookup({})
        lines = [(c, n, None, False) for c, n in tokens_constraints(tokens)]
        queue, history, busy = self._ads(lines, lock=self.submit_lock)
        wanted = set(tokens)
        found: dict[str, str] = {}
        for ad in [*queue, *history]:
            token, key = ad.get("KongToken"), batch_id(ad)
            if isinstance(token, str) and token in wanted and key is not None:
                found[token] = key
        # condor_history is read to its start: as long as the schedd keeps history
        return TokenLookup(found, busy=self.busy_message() if busy else None)

    def _ads(
        self, lines: Sequence[tuple[str, int, str | None, bool]], lock: str = ""
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        """Queue and history ads for (constraint, limit, since, remove held) lines,
        in one command; and whether a submit loop still held ``lock``."""
        stdin = "".join(
            f"{n}\t{since or '-'}\t{1 if remove else 0}\t{c}\n" for c, n, since, remove in lines
        )
        result = self.transport.run(
            self.sh_argv(_QUERY, lock, ",".join(ATTRIBUTES)), stdin=stdin.encode()
        )
        if not result.ok:
            err = result.stderr.decode(errors="replace").strip().splitlines()
            raise DriverError(
                f"condor_q/condor_history failed on {self.transport.label}: "
                f"{err[-1] if err else f'exit code {result.exit_code}'}"
            )
        text = result.text()
        busy = any(line == BUSY for line in text.splitlines())
        queue, history = parse_query(text)
        return queue, history, busy

    # -- kill ---------------------------------------------------------------------------

    def kill_argv(self, batch_id: str) -> list[str]:
        return ["condor_rm", batch_id]

    def kill_token_argv(self, token: str) -> list[str]:
        return ["condor_rm", "-constraint", f"KongToken == {classad_string(token)}"]

    def kill_many_argv(self, batch_ids: Sequence[str]) -> list[str]:
        return ["condor_rm", *batch_ids]

    def kill_many_answers(self, batch_ids: Sequence[str], rc: int,
                          output: str) -> dict[str, tuple[int, str]]:
        """condor_rm's line about each id (its lines joined on one): "Job 12.0 marked
        for removal", "Job 12.0 not found" (gone to the history, or never there); it
        exits 0 when one of many was removed, so each line decides for its own id."""
        return {m.group(1): (0 if "marked for removal" in m.group(2) else 1, m.group(0))
                for m in _CONDOR_RM_ANSWER.finditer(output)}

    # -- options ------------------------------------------------------------------------

    def check_options(self, options: dict[str, Any]) -> None:
        super().check_options(options)
        for key, value in options.items():
            if isinstance(value, str):
                _check_submit_word(value, f"option {key!r}")
        for line in options.get("extra") or []:
            _check_submit_word(line, "option 'extra'")
            if line.strip().split(" ")[0].lower() == "queue":
                raise DriverError("option 'extra': kong writes the queue statement itself")
        transfer = options.get("should_transfer_files")
        if transfer is not None and transfer.upper() not in TRANSFER_MODES:
            raise DriverError(f"option 'should_transfer_files': expected one of "
                              f"{', '.join(TRANSFER_MODES)}, got {transfer!r}")
        for key in ("request_cpus", "request_memory", "request_disk"):
            value = options.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise DriverError(f"option {key!r}: expected a positive number, got {value}")


def _check_submit_word(value: str, what: str) -> None:
    # A submit description is line based and expands $(...) everywhere: a newline
    # would add a command of its own, and the job dir is pasted into macros.
    if "\n" in value or "\r" in value:
        raise DriverError(f"{what} must be one line: {value!r}")
    if what == "job dir" and ("$" in value or value != value.strip()):
        raise DriverError(f"{what} cannot contain '$' or surrounding spaces: {value!r}")


def _since(jobs: Sequence[Job]) -> str | None:
    """A ``condor_history -since`` expression true for records older than these jobs."""
    times = []
    for job in jobs:
        text = (job.data or {}).get("submitted_at")
        if not isinstance(text, str):
            return None  # without a time for every job, the whole history may matter
        try:
            times.append(datetime.fromisoformat(text).timestamp())
        except ValueError:
            return None
    if not times:
        return None
    return f"EnteredCurrentStatus < {int(min(times)) - _SINCE_MARGIN}"
