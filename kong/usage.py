"""What a job used and when it ran, in one shape for every driver.

Drivers put a ``usage`` dict into ``SchedulerInfo.extra`` (kong.lifecycle keeps it
as ``job.data["usage"]``) with any of these keys; a key the scheduler's
accounting does not record is left out, so that it reads "n/a", never 0:

``elapsed``     wall-clock seconds the job ran
``cpu_time``    user + system CPU seconds of the job's processes
``max_rss_mb``  peak resident memory in MiB (what schedulers print as M)
``cpus``        CPUs allocated
``req_mem_mb``  memory requested, MiB
``source``      where the figures come from (sacct, condor, bjobs, qacct, runner)

Times (``submit_time``, ``start_time``, ``end_time`` in ``job.data``) are ISO 8601
strings, in the cluster's local time when the scheduler gives no zone, or epoch
seconds (the local runner): :func:`as_datetime` reads both.

The parsers of scheduler formats here are pure functions (tests/test_usage.py).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

USAGE_KEYS = ("elapsed", "cpu_time", "max_rss_mb", "cpus", "req_mem_mb")

_UNITS = {"": 1 / 1024 / 1024, "B": 1 / 1024 / 1024, "K": 1 / 1024, "M": 1.0,
          "G": 1024.0, "T": 1024.0 * 1024, "P": 1024.0 ** 3}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGTPB]?)(?:I?B)?([cn]?)\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")


def size_mb(text: str | None, default_unit: str = "") -> float | None:
    """Slurm's and LSF's sizes (``204800K``, ``200M``, ``1.5G``, ``4000Mc``,
    ``200 Mbytes``) in MiB; None for an empty or unreadable field. A bare number
    is read in ``default_unit``."""
    if text is None:
        return None
    cleaned = text.strip().replace("bytes", "").replace("Bytes", "")
    if not cleaned or cleaned in ("-", "N/A", "n/a", "Unknown"):
        return None
    m = _SIZE.match(cleaned)
    if m is None:
        return None
    unit = (m.group(2) or default_unit).upper()
    if unit not in _UNITS:
        return None
    return float(m.group(1)) * _UNITS[unit]


def duration_seconds(text: str | None) -> float | None:
    """Slurm's ``[D-][HH:]MM:SS[.mmm]`` (Elapsed, TotalCPU) in seconds; None if unreadable."""
    if not text:
        return None
    m = _DURATION.match(text.strip())
    if m is None:
        return None
    days, hours, minutes, seconds = m.groups()
    return (int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60
            + float(seconds))


def as_datetime(value: Any) -> datetime | None:
    """A stored time (ISO string or epoch seconds) as an aware datetime; naive ISO
    times are the cluster's local time, read as this machine's local time."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.astimezone()
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            try:  # epoch seconds that a database's JSON function handed back as text
                return datetime.fromtimestamp(float(value), UTC)
            except ValueError:
                return None
        return parsed if parsed.tzinfo else parsed.astimezone()
    return None


def iso(value: Any) -> str | None:
    """A stored time as ISO 8601 with its zone (for ``--json``)."""
    parsed = as_datetime(value)
    return parsed.isoformat(timespec="seconds") if parsed else None


def _seconds(later: Any, earlier: Any) -> float | None:
    end, start = as_datetime(later), as_datetime(earlier)
    if end is None or start is None:
        return None
    return max(0.0, (end - start).total_seconds())


def job_times(data: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Submit/start/end times, queue wait and run time (seconds) of one job's data.

    The submit time is the scheduler's, else the moment kong handed the job over
    (``submitted_at``). A running job's run time and a queued job's wait grow with
    ``now``.
    """
    now = now or datetime.now(UTC)
    submit = data.get("submit_time") or data.get("submitted_at")
    start = data.get("start_time")
    end = data.get("end_time")
    usage = data.get("usage") or {}
    run = _seconds(end, start) if end else (_seconds(now, start) if start else None)
    if end and isinstance(usage.get("elapsed"), (int, float)):
        run = float(usage["elapsed"])  # the scheduler's own count beats two clocks
    wait = _seconds(start or (None if end else now), submit)
    return {"submit_time": iso(submit), "start_time": iso(start), "end_time": iso(end),
            "queue_wait": wait, "run_time": run}


def efficiency(usage: Mapping[str, Any], req_mem_mb: float | None = None
               ) -> dict[str, float | None]:
    """CPU efficiency (CPU time / (elapsed x CPUs)) and memory efficiency (peak /
    requested), as fractions; None where a figure is missing."""
    cpu, elapsed, cpus = usage.get("cpu_time"), usage.get("elapsed"), usage.get("cpus")
    cpu_eff = None
    if isinstance(cpu, (int, float)) and isinstance(elapsed, (int, float)) and elapsed > 0:
        cpu_eff = float(cpu) / (float(elapsed) * (cpus if isinstance(cpus, int) and cpus else 1))
    requested = usage.get("req_mem_mb") or req_mem_mb
    rss = usage.get("max_rss_mb")
    mem_eff = None
    if isinstance(rss, (int, float)) and isinstance(requested, (int, float)) and requested > 0:
        mem_eff = float(rss) / float(requested)
    return {"cpu_efficiency": cpu_eff, "memory_efficiency": mem_eff}


def clean(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Only the figures that are there (None and unreadable values dropped)."""
    return {k: v for k, v in usage.items() if v is not None}


# -- Slurm: sacct rows of a job and its steps --------------------------------------------

#: sacct fields of the usage query (without -X: one row per allocation and per step)
SACCT_USAGE_FIELDS = ("JobID", "Elapsed", "TotalCPU", "MaxRSS", "ReqMem", "AllocCPUS")


def fold_sacct_steps(lines: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Usage per job id from ``sacct -n -P --format=JobID,Elapsed,TotalCPU,MaxRSS,
    ReqMem,AllocCPUS`` rows, folded the way seff does.

    Slurm prints one row for the allocation (``123``) and one per step: ``123.batch``
    (the job script), ``123.extern`` (the allocation's own processes) and
    ``123.0``, ``123.1``... (each ``srun``). Memory is sampled per step only, so the
    peak is the largest MaxRSS of any step (per task, as seff reports it); elapsed,
    CPUs and requested memory come from the allocation row, and CPU time is the
    allocation's TotalCPU (Slurm sums its steps there), else the steps' sum.
    """
    jobs: dict[str, dict[str, Any]] = {}
    step_cpu: dict[str, float] = {}
    for line in lines:
        parts = line.rstrip("\n").split("|")
        if len(parts) < len(SACCT_USAGE_FIELDS) or not parts[0]:
            continue
        job_id, elapsed, total_cpu, max_rss, req_mem, alloc = parts[:6]
        base, dot, _step = job_id.partition(".")
        entry = jobs.setdefault(base, {"source": "sacct"})
        rss = size_mb(max_rss)
        if rss is not None:
            entry["max_rss_mb"] = max(entry.get("max_rss_mb", 0.0), rss)
        cpu = duration_seconds(total_cpu)
        if dot:
            if cpu is not None:
                step_cpu[base] = step_cpu.get(base, 0.0) + cpu
            continue
        seconds = duration_seconds(elapsed)
        if seconds is not None:
            entry["elapsed"] = seconds
        if cpu is not None:
            entry["cpu_time"] = cpu
        cpus = int(alloc) if alloc.strip().isdigit() else None
        if cpus:
            entry["cpus"] = cpus
        requested = _slurm_req_mem(req_mem, cpus)
        if requested is not None:
            entry["req_mem_mb"] = requested
    for base, cpu in step_cpu.items():
        if base in jobs and "cpu_time" not in jobs[base]:
            jobs[base]["cpu_time"] = cpu
    return jobs


def _slurm_req_mem(text: str, cpus: int | None) -> float | None:
    # Before 21.08 ReqMem carried "c" (per CPU) or "n" (per node); 0 means "all of it"
    m = _SIZE.match(text or "")
    value = size_mb(text[:-1] if text and text[-1] in "cn" else text)
    if value is None or value <= 0:
        return None
    if m is not None and m.group(3) == "c" and cpus:
        value *= cpus
    return value


# -- aggregating over many jobs ----------------------------------------------------------


def median_max(values: Iterable[float]) -> tuple[float | None, float | None]:
    got = list(values)
    if not got:
        return None, None
    return statistics.median(got), max(got)


#: data keys that :func:`job_accounting` reads
ACCOUNTING_KEYS = ("submit_time", "submitted_at", "start_time", "end_time", "end_reason",
                   "usage")


def job_accounting(data: Mapping[str, Any], memory: int | None = None,
                   now: datetime | None = None) -> dict[str, Any]:
    """Times, end reason, usage and efficiency of one job, for ``info`` and ``--json``:
    every key present, None where the scheduler did not record it."""
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    figures = {k: (usage or {}).get(k) for k in USAGE_KEYS}
    return {
        **job_times(data, now),
        "end_reason": data.get("end_reason"),
        "usage": figures if usage is not None else None,
        **(efficiency(usage, memory) if usage is not None
           else {"cpu_efficiency": None, "memory_efficiency": None}),
    }
