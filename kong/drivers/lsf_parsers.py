"""What IBM Spectrum LSF prints, parsed: ``bsub``'s answer, ``bjobs -o`` (JSON and
delimited), ``bhist -l``, its states and termination reasons. Pure functions, tested on
IBM's documented samples (tests/test_lsf_parsers.py); ``kong.drivers.lsf`` runs the
commands.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from kong.drivers.base import exit_reason
from kong.drivers.batch import SchedulerInfo
from kong.errors import DriverError
from kong.model.job import JobStatus
from kong.usage import duration_seconds, size_mb

#: bjobs -o fields, in the order of the -noheader fallback (job_name last: it may
#: contain anything, even the delimiter)
FIELDS = (
    "jobid jobindex stat exit_code exit_reason submit_time start_time finish_time exec_host "
    "cpu_used max_mem run_time job_name"
)
DELIMITER = "^"

#: LSF job states (bjobs "JOB STATUS") -> kong status
STATES: dict[str, JobStatus] = {
    "PEND": JobStatus.SUBMITTED,
    "PROV": JobStatus.SUBMITTED,  # dispatched, waiting for its host to be provisioned
    "PSUSP": JobStatus.SUBMITTED,  # held while pending
    "WAIT": JobStatus.SUBMITTED,  # chunk job member waiting for its turn
    "RUN": JobStatus.RUNNING,
    "USUSP": JobStatus.RUNNING,  # suspended by its owner while running
    "SSUSP": JobStatus.RUNNING,  # suspended by LSF (load, preemption) while running
    "DONE": JobStatus.COMPLETED,
    "EXIT": JobStatus.FAILED,
    # mbatchd lost contact with the host: the job may still run
    "UNKWN": JobStatus.UNKNOWN,
    # killed while UNKWN, or a rerunnable job being requeued: not known to be over
    "ZOMBI": JobStatus.UNKNOWN,
}

_SUBMITTED = re.compile(r"Job <(\d+)> is submitted to (?:default )?queue <([^>]*)>")


def parse_bsub(output: str) -> str:
    """The job id from bsub's "Job <ID> is submitted to [default] queue <Q>."."""
    match = _SUBMITTED.search(output)
    if match is None:
        text = " ".join(output.split())
        raise DriverError(f"bsub did not submit the job: {text[:200] or 'no output'}")
    return match.group(1)


def state_info(
    stat: str, exit_code: str = "", reason: str = "", extra: dict[str, Any] | None = None
) -> SchedulerInfo:
    stat = stat.strip().upper()
    status = STATES.get(stat, JobStatus.UNKNOWN)
    code: int | None = None
    text = exit_code.strip()
    if text.lstrip("-").isdigit():
        code = int(text)
    elif stat == "DONE":
        code = 0  # LSF leaves EXIT_CODE empty for jobs that ended well
    if stat == "EXIT" and code == 0:
        code = None  # killed before it ran, or exited by LSF without a code
    return SchedulerInfo(
        status=status,
        state=stat or "?",
        exit_code=code,
        reason=reason.strip() or None,
        extra=extra or {},
        end_reason=lsf_end_reason(reason, code) if status.finished else None,
    )


#: LSF's termination reasons (TERM_*, in EXIT_REASON and bhist) that say why
_TERM_REASONS = {
    "TERM_RUNLIMIT": "TIMEOUT", "TERM_CPULIMIT": "TIMEOUT", "TERM_DEADLINE": "TIMEOUT",
    "TERM_MEMLIMIT": "OUT_OF_MEMORY", "TERM_SWAP": "OUT_OF_MEMORY",
    "TERM_OWNER": "CANCELLED", "TERM_ADMIN": "CANCELLED", "TERM_FORCE_OWNER": "CANCELLED",
    "TERM_FORCE_ADMIN": "CANCELLED", "TERM_REQUEUE_OWNER": "CANCELLED",
    "TERM_REQUEUE_ADMIN": "CANCELLED", "TERM_KILL": "CANCELLED",
    "TERM_HOST": "NODE_FAIL", "TERM_LOAD": "NODE_FAIL", "TERM_ZOMBIE": "NODE_FAIL",
    "TERM_PREEMPT": "PREEMPTED",
}


def lsf_end_reason(reason: str, code: int | None) -> str | None:
    """The end reason of a finished job from its TERM_* reason and exit code; a
    code over 128 with no reason of LSF's (or TERM_EXTERNAL_SIGNAL) is a signal."""
    term = re.search(r"TERM_[A-Z_]+", reason or "")
    if term and term.group(0) in _TERM_REASONS:
        return _TERM_REASONS[term.group(0)]
    if code is not None and 128 < code < 160:
        return f"SIGNAL({code - 128})"
    return exit_reason(code)


def _extra(record: dict[str, str], status: JobStatus) -> dict[str, Any]:
    extra: dict[str, Any] = {"lsf_source": "bjobs"}
    hosts = [h for h in record.get("EXEC_HOST", "").split(":") if h]
    if hosts:
        # "4*hostA" in the plain format, "hostA:hostA:..." per slot with -o
        extra["node"] = hosts[0].split("*")[-1]
    extra["submit_time"] = lsf_time(record.get("SUBMIT_TIME", ""))
    extra["start_time"] = lsf_time(record.get("START_TIME", ""))
    # a live job's FINISH_TIME is an estimate (suffix E)
    extra["end_time"] = lsf_time(record.get("FINISH_TIME", "")) if status.finished else None
    if record.get("JOB_NAME"):
        extra["lsf_job_name"] = record["JOB_NAME"]
    if status.finished:
        extra["usage"] = lsf_usage(record)
    return extra


def _lsf_seconds(text: str) -> float | None:
    """``12.3 second(s)`` (bjobs' CPU_USED and RUN_TIME), or ``hh:mm:ss[.ss]``."""
    text = (text or "").strip()
    found = re.match(r"^(\d+(?:\.\d+)?)\s*second", text)
    return float(found.group(1)) if found else duration_seconds(text)


def lsf_usage(record: dict[str, str]) -> dict[str, Any]:
    """CPU_USED, MAX_MEM (``200 Mbytes``) and RUN_TIME of a finished job's record."""
    usage: dict[str, Any] = {"source": "bjobs"}
    for key, value in (("cpu_time", _lsf_seconds(record.get("CPU_USED", ""))),
                       ("elapsed", _lsf_seconds(record.get("RUN_TIME", ""))),
                       ("max_rss_mb", size_mb(record.get("MAX_MEM", ""), default_unit="K"))):
        if value is not None:
            usage[key] = value
    return usage


_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    start=1,
)}
_LSF_TIME = re.compile(
    r"(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?P<hm>\d{1,2}:\d{2}(?::\d{2})?)"
    r"(?:\s+(?P<year>\d{4}))?"
)


def lsf_time(text: str, now: datetime | None = None) -> str | None:
    """bjobs' ``Dec 28 19:56`` (or ``Dec 28 19:56:07``, suffix ``L``/``E``/``X``) as
    ``2026-12-28T19:56``, in the cluster's local time. bjobs leaves the year out: it is
    the latest one that does not put the time more than a day ahead of ``now``."""
    match = _LSF_TIME.search(text or "")
    if match is None or match.group("mon") not in _MONTHS:
        return None
    month, day = _MONTHS[match.group("mon")], int(match.group("day"))
    hm = match.group("hm")
    if match.group("year"):
        year = int(match.group("year"))
    else:
        now = now or datetime.now()
        year = now.year
        with contextlib.suppress(ValueError):
            if datetime(year, month, day) > now + timedelta(days=1):
                year -= 1
    try:
        datetime(year, month, day)
    except ValueError:
        return None
    return f"{year:04d}-{month:02d}-{day:02d}T{int(hm.split(':')[0]):02d}:{hm.split(':', 1)[1]}"


def json_records(text: str) -> Iterator[dict[str, str]]:
    """Records of one or more bjobs -json documents (xargs may split a long id list)."""
    decoder = json.JSONDecoder()
    pos = 0
    text = text.strip()
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            # e.g. "Cannot connect to LSF. Please wait ..." lines: skip to the next '{'
            nxt = text.find("{", pos + 1)
            if nxt < 0:
                return
            pos = nxt
            continue
        if isinstance(doc, dict):
            for record in doc.get("RECORDS", []):
                if isinstance(record, dict):
                    yield {str(k): "" if v is None else str(v) for k, v in record.items()}


def _record_id(record: dict[str, str]) -> str:
    """A bjobs record's batch id: JOBID, with ``[JOBINDEX]`` for an array's element
    (JOBINDEX 0, or none: a plain job)."""
    batch_id = record.get("JOBID", "").strip()
    index = record.get("JOBINDEX", "").strip()
    return f"{batch_id}[{index}]" if batch_id and index.isdigit() and int(index) else batch_id


def parse_bjobs_json(text: str) -> dict[str, SchedulerInfo]:
    """``bjobs -o "jobid stat exit_code exit_reason ..." -json`` -> info by job id.
    Records with an ERROR (e.g. "Job <123> is not found") are left out."""
    infos: dict[str, SchedulerInfo] = {}
    for record in json_records(text):
        batch_id = _record_id(record)
        if not batch_id or record.get("ERROR") or "STAT" not in record:
            continue
        info = state_info(record["STAT"], record.get("EXIT_CODE", ""),
                          record.get("EXIT_REASON", ""))
        info.extra = _extra(record, info.status)
        infos[batch_id] = info
    return infos


def parse_bjobs_plain(text: str, delimiter: str = DELIMITER) -> dict[str, SchedulerInfo]:
    """``bjobs -noheader -o "<FIELDS> delimiter='^'"``; empty fields print as ``-``."""
    names = [n.upper() for n in FIELDS.split()]
    infos: dict[str, SchedulerInfo] = {}
    for line in text.splitlines():
        parts = line.split(delimiter, len(names) - 1)
        if len(parts) != len(names) or not parts[0].strip().isdigit():
            continue  # "Job <123> is not found" and the like
        record = {k: ("" if v.strip() == "-" else v) for k, v in zip(names, parts, strict=True)}
        info = state_info(record["STAT"], record["EXIT_CODE"], record["EXIT_REASON"])
        info.extra = _extra(record, info.status)
        infos[_record_id(record)] = info
    return infos


_BHIST_JOB = re.compile(r"^Job <(\d+(?:\[\d+\])?)>", re.MULTILINE)  # an element: 123[4]
_BHIST_NAME = re.compile(r"^Job <[^>]+>, Job Name <(.*?)>, User <")
_EVENT = re.compile(r"^\w{3} +\w{3} +\d+ +[\d:]+(?: +\d{4})?: +(.*)$")


def _unfold(block: str) -> list[str]:
    """bhist -l folds lines at 80 columns and indents the rest: join them again."""
    lines: list[str] = []
    for raw in block.splitlines():
        if raw.startswith(" " * 21) and lines and lines[-1]:
            lines[-1] += raw[21:]  # not lstrip: a fold may fall just before a space
        else:
            lines.append(raw)
    return lines


def parse_bhist(text: str) -> dict[str, SchedulerInfo]:
    """Jobs that ``bhist -l`` shows ended: DONE, or EXIT with its code and reason.
    A job whose history has no end is left out (it is not known to be live either)."""
    infos: dict[str, SchedulerInfo] = {}
    starts = [m.start() for m in _BHIST_JOB.finditer(text)]
    for begin, end in zip(starts, [*starts[1:], len(text)], strict=False):
        lines = _unfold(text[begin:end])
        match = _BHIST_JOB.match(lines[0])
        if match is None:
            continue
        batch_id = match.group(1)
        stat: str | None = None
        code = ""
        reason = ""
        for line in lines[1:]:
            event = _EVENT.match(line)
            if event is None:
                continue
            what = event.group(1)
            if what.startswith("Done successfully"):
                stat, code = "DONE", "0"
            elif what.startswith("Exited with exit code"):
                stat = "EXIT"
                found = re.match(r"Exited with exit code (-?\d+)", what)
                code = found.group(1) if found else ""
            elif what.startswith("Exited"):
                stat = "EXIT"
                found = re.search(r"exit code (-?\d+)", what)
                code = found.group(1) if found else ""
            elif what.startswith("Completed <exit>"):
                stat = "EXIT"
                reason = what.partition(";")[2].strip().rstrip(";.").strip()
            elif what.startswith(("Starting", "Running with")) and stat is None:
                stat = "RUN"
            elif what.startswith("Submitted") and stat is None:
                stat = "PEND"
        if stat in ("DONE", "EXIT"):
            extra: dict[str, Any] = {"lsf_source": "bhist"}
            named = _BHIST_NAME.match(lines[0])
            if named:
                extra["lsf_job_name"] = named.group(1)
            infos[batch_id] = state_info(stat, code, reason, extra)
        # A job bhist shows unfinished but bjobs did not list is not trusted as live:
        # leave it out, so that it is UNKNOWN (or settled by its exit_code file).
    return infos
