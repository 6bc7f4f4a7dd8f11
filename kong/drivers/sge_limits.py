"""The queue limits of Grid Engine, from ``qconf -sq`` of every queue (one round trip).

A queue's ``h_rt`` is its walltime limit (``INFINITY``, ``HH:MM:SS`` or seconds),
``h_vmem`` its memory per slot (kong asks memory per slot, so that is a limit per
core), ``slots`` the most slots one host of it has. A job without ``-q`` may run in
any queue: its limits ("") are the largest of all queues'.
"""

from __future__ import annotations

import math

from kong.drivers.base import QueueLimits
from kong.retry import memory_mb


def _seconds(value: str) -> float | None:
    if value.upper() in ("INFINITY", "NONE", ""):
        return None
    parts = value.split(":")
    if not all(p.isdigit() for p in parts) or len(parts) > 3:
        return None
    total = 0.0
    for part in parts:
        total = total * 60 + int(part)
    return total


def _minutes(value: str) -> int | None:
    seconds = _seconds(value)
    return math.ceil(seconds / 60) if seconds else None


def _mb(value: str) -> int | None:
    if value.upper() == "INFINITY":
        return None
    mb = memory_mb(value)
    return math.ceil(mb) if mb else None


def _largest(values: list[int | None]) -> int | None:
    return None if not values or any(v is None for v in values) else max(
        v for v in values if v is not None)


def parse_queues(text: str) -> dict[str, QueueLimits]:
    """The limits in the output of ``sge_queues.sh``, per queue and under ""."""
    fields: dict[str, dict[str, str]] = {}
    queue: str | None = None
    for line in text.splitlines():
        if line.startswith("KONG-QUEUE "):
            queue = line.split(None, 1)[1].strip()
            fields[queue] = {}
        elif queue is not None and line.strip():
            key, _, value = line.strip().partition(" ")
            fields[queue][key] = value.strip()
    limits = {
        name: QueueLimits(
            walltime=_minutes(f.get("h_rt", "INFINITY")),
            memory_per_core=_mb(f.get("h_vmem", "INFINITY")),
            cores=int(f["slots"]) if f.get("slots", "").isdigit() else None,
        )
        for name, f in fields.items()
    }
    if limits:
        every = list(limits.values())
        limits[""] = QueueLimits(
            walltime=_largest([q.walltime for q in every]),
            memory_per_core=_largest([q.memory_per_core for q in every]),
            cores=_largest([q.cores for q in every]),
        )
    return limits
