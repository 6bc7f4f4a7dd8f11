"""What HTCondor's job ads say of a finished job's times, usage and end reason
(pure parsers over ``condor_q``/``condor_history -json`` ads; tests/test_usage_parsers.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def _epoch(value: Any) -> str | None:
    """An ad's epoch seconds (0: never) as ISO 8601 UTC."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return datetime.fromtimestamp(value, UTC).isoformat()


def _number(value: Any) -> float | None:
    # unevaluated expressions come as strings ("/Expr(...)/"): not a figure
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def condor_times(ad: dict[str, Any], finished: bool) -> dict[str, Any]:
    """Submit (QDate), start (the current run's) and end (CompletionDate, or the moment
    a removed or held job left the running state) of one ad."""
    end = ad.get("CompletionDate") or (ad.get("EnteredCurrentStatus") if finished else None)
    start = ad.get("JobCurrentStartDate") or ad.get("JobStartDate")
    times = {"submit_time": _epoch(ad.get("QDate")), "start_time": _epoch(start),
             "end_time": _epoch(end) if finished else None}
    return {k: v for k, v in times.items() if v is not None}


def condor_usage(ad: dict[str, Any]) -> dict[str, Any]:
    """Usage of a finished job: CPU time is RemoteUserCpu + RemoteSysCpu, the peak
    memory ResidentSetSize (KiB, the largest seen), else MemoryUsage (MB)."""
    usage: dict[str, Any] = {"source": "condor"}
    user, system = _number(ad.get("RemoteUserCpu")), _number(ad.get("RemoteSysCpu"))
    if user is not None:
        usage["cpu_time"] = user + (system or 0.0)
    start = _number(ad.get("JobCurrentStartDate") or ad.get("JobStartDate"))
    end = _number(ad.get("CompletionDate"))
    wall = _number(ad.get("RemoteWallClockTime"))
    if start and end and end >= start:
        usage["elapsed"] = end - start
    elif wall:
        usage["elapsed"] = wall
    rss = _number(ad.get("ResidentSetSize"))
    memory = _number(ad.get("MemoryUsage"))
    if rss:
        usage["max_rss_mb"] = rss / 1024
    elif memory:
        usage["max_rss_mb"] = memory
    cpus, requested = _number(ad.get("RequestCpus")), _number(ad.get("RequestMemory"))
    if cpus:
        usage["cpus"] = int(cpus)
    if requested:
        usage["req_mem_mb"] = requested
    return usage


#: HoldReasonCode 34: the job went over its memory (cgroup) limit; 3 with kong's own
#: periodic_hold_reason: its walltime (see HTCondorDriver.description)
_HOLD_MEMORY = 34


def _limit_reason(text: Any, code: Any) -> str | None:
    words = str(text or "").lower()
    if code == _HOLD_MEMORY or ("memory" in words and ("exceed" in words or "limit" in words
                                                     or "over" in words)):
        return "OUT_OF_MEMORY"
    if "walltime of" in words and "exceeded" in words:
        return "TIMEOUT"
    return None


def condor_end_reason(ad: dict[str, Any]) -> str | None:
    """The end reason of a finished job's ad: its exit (code or signal), the limit it
    was held for, or CANCELLED for a job removed (condor_rm) without one."""
    code = ad.get("JobStatus")
    if code == 4:
        if ad.get("ExitBySignal") is True and isinstance(ad.get("ExitSignal"), int):
            return f"SIGNAL({ad['ExitSignal']})"
        return f"EXIT({ad['ExitCode']})" if isinstance(ad.get("ExitCode"), int) else None
    if code == 5:
        return _limit_reason(ad.get("HoldReason"), ad.get("HoldReasonCode"))
    if code == 3:
        return _limit_reason(ad.get("LastHoldReason"), ad.get("LastHoldReasonCode")) \
            or "CANCELLED"
    return None
