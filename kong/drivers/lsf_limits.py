"""The queue limits of LSF, from ``bqueues -l`` (the one command that shows them).

Per queue, ``bqueues -l`` prints a block that starts ``QUEUE: <name>``; its limits
are a name line (``RUNLIMIT``, ``MEMLIMIT``, ``PROCLIMIT``/``TASKLIMIT``) followed by
a value line. When a queue has both a default and a maximum, they come under
``DEFAULT LIMITS:`` and ``MAXIMUM LIMITS:``; a limit outside those headings is the
maximum. PROCLIMIT/TASKLIMIT may read ``min default max``: the last one is the most.
"""

from __future__ import annotations

import math
import re

from kong.drivers.base import QueueLimits

_NUMBER = re.compile(r"([0-9]*\.?[0-9]+)\s*([KMGTP]?)(?:B\b)?", re.IGNORECASE)
_UNIT_MB = {"": 1 / 1024, "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 ** 2,
            "P": 1024.0 ** 3}  # a bare number is KB, LSF's default unit for limits
_LIMITS = ("RUNLIMIT", "MEMLIMIT", "PROCLIMIT", "TASKLIMIT")


def _minutes(text: str) -> int | None:
    match = re.match(r"\s*([0-9]*\.?[0-9]+)\s*min", text)
    return math.ceil(float(match.group(1))) if match else None


def _mb(text: str) -> int | None:
    match = _NUMBER.match(text.strip())
    if match is None:
        return None
    return math.ceil(float(match.group(1)) * _UNIT_MB[match.group(2).upper()])


def _most(text: str) -> int | None:
    numbers = [int(w) for w in text.split() if w.isdigit()]
    return numbers[-1] if numbers else None


def parse_bqueues(text: str) -> dict[str, QueueLimits]:
    """Each queue's limits; the queue whose description says it is the default one
    also under ""."""
    found: dict[str, dict[str, int | None]] = {}
    default_queue: str | None = None
    queue: str | None = None
    section = "MAXIMUM"
    pending: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("QUEUE:"):
            queue = stripped.split(":", 1)[1].strip()
            found[queue] = {}
            section, pending = "MAXIMUM", None
            continue
        if queue is None:
            continue
        if "this is the default queue" in stripped.lower():
            default_queue = queue
        if stripped in ("DEFAULT LIMITS:", "MAXIMUM LIMITS:"):
            section = stripped.split()[0]
            continue
        if stripped in _LIMITS:
            pending = stripped
            continue
        if pending is not None and stripped:
            limits = found[queue]
            if pending == "RUNLIMIT":
                key, value = "walltime", _minutes(stripped)
                if section == "DEFAULT":
                    key = "default_walltime"
            elif pending == "MEMLIMIT":
                key, value = "memory", _mb(stripped)
            else:
                key, value = "cores", _most(stripped)
            if section == "MAXIMUM" or key == "default_walltime":
                limits[key] = value
            pending = None
    result = {name: QueueLimits(**values) for name, values in found.items()}
    if default_queue is not None:
        result[""] = result[default_queue]
    return result
