"""Failed jobs run again with more of what they lacked: resource changes, retry policies
and the scheduler's limits, as plain arithmetic.

A change is what a user writes after ``--walltime``, ``--memory`` or ``--cores`` (or
in a ``retry:`` policy): ``x2`` (times), ``+1:00:00`` / ``+4G`` / ``+2`` (more by),
or a plain value (``4:00:00``, ``8G``, ``4``: exactly that). Walltimes are whole
minutes (as Slurm keeps them), memory whole MB.

A policy (``retry: {on: [TIMEOUT, OUT_OF_MEMORY], max: 3, walltime: x2, memory: x2}``)
says which end reasons ``refresh``/``wait`` answer with a new attempt, how many such
attempts a job gets, and what grows: the walltime after a TIMEOUT, memory and cores
after an OUT_OF_MEMORY; any other reason in ``on`` runs the job again as it was.

Nothing here talks to a cluster or writes a row: ``kong.lifecycle`` asks for plans
and carries them out; the queue limits come from the driver (asked once per driver).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kong.drivers.base import END_REASONS, QueueLimits
from kong.errors import DriverError, KongError

if TYPE_CHECKING:
    from kong.drivers.base import DriverBase
    from kong.model.job import Job

RESOURCES = ("walltime", "memory", "cores")

#: what grows after which end reason, under a policy
GROWS_ON = {"TIMEOUT": ("walltime",), "OUT_OF_MEMORY": ("memory", "cores")}

#: a policy's ``on`` when it names none
DEFAULT_ON = ("TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL")
DEFAULT_MAX = 3

POLICY_KEYS = ("on", "max", *RESOURCES)


class RetryError(KongError, ValueError):
    """A resource change, end reason or retry policy kong cannot read."""


class LimitReached(KongError):
    """A job cannot get more: it has the queue's maximum already."""


# -- changes ----------------------------------------------------------------------------


_FACTOR = re.compile(r"[x*]\s*([0-9]*\.?[0-9]+)")
_SIZE = re.compile(r"([0-9]*\.?[0-9]+)\s*([KMGT]?)B?", re.IGNORECASE)
_UNIT_MB = {"": 1.0, "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 ** 2}
_EXPECTED = {
    "walltime": "x2, +1:00:00 or 4:00:00 ([D-]HH:MM:SS or minutes)",
    "memory": "x1.5, +4G or 8G (MB, or a size with K, M, G or T)",
    "cores": "x2, +2 or 4",
}


@dataclass(frozen=True)
class Change:
    """How one resource changes: ``times`` a factor, ``plus`` an amount, or ``set`` to one."""

    resource: str
    kind: str  # "times" | "plus" | "set"
    value: float
    text: str

    def apply(self, current: int | None) -> int:
        """The new amount (whole minutes, MB or cores; never below 1)."""
        if self.kind == "set":
            return max(1, math.ceil(self.value))
        if current is None:
            raise RetryError(f"{self.resource} {self.text}: the job asked for no "
                             f"{self.resource} to change; give one (e.g. {_example(self)})")
        if self.kind == "times":
            return max(1, math.ceil(current * self.value - 1e-9))
        return max(1, math.ceil(current + self.value))


def _example(change: Change) -> str:
    return {"walltime": "--walltime 2:00:00", "memory": "--memory 4G",
            "cores": "--cores 4"}[change.resource]


def parse_change(resource: str, text: str | int | float) -> Change:
    """A change of ``resource`` as written by a user; RetryError (one line) if unreadable."""
    if resource not in RESOURCES:
        raise RetryError(f"cannot change {resource!r} (expected one of: {', '.join(RESOURCES)})")
    word = str(text).strip()
    bad = RetryError(f"{resource} {word!r}: expected {_EXPECTED[resource]}")
    if isinstance(text, bool) or not word:
        raise bad
    factor = _FACTOR.fullmatch(word.lower())
    if factor is not None:
        value = float(factor.group(1))
        if not value > 0 or not math.isfinite(value):
            raise RetryError(f"{resource} {word!r}: the factor must be more than 0")
        return Change(resource, "times", value, word)
    kind, amount = ("plus", word[1:].strip()) if word.startswith("+") else ("set", word)
    amount_value = _amount(resource, amount)
    if amount_value is None:
        raise bad
    if not amount_value > 0:
        raise RetryError(f"{resource} {word!r}: must be more than 0")
    return Change(resource, kind, amount_value, word)


def _amount(resource: str, text: str) -> float | None:
    if resource == "walltime":
        from kong.drivers.batch import walltime_minutes

        try:
            return float(walltime_minutes(text))
        except DriverError:
            return None
    if resource == "memory":
        return memory_mb(text)
    return float(text) if text.isdigit() else None


def memory_mb(value: Any) -> float | None:
    """MB of a memory amount: an int (MB) or a size like ``4G``, ``512M``, ``1.5GB``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    match = _SIZE.fullmatch(str(value).strip())
    if match is None:
        return None
    return float(match.group(1)) * _UNIT_MB[match.group(2).upper()]


def parse_changes(walltime: str | None = None, memory: str | None = None,
                  cores: str | None = None) -> list[Change]:
    """The changes a resubmit asks for (None: that resource stays as it is)."""
    given = {"walltime": walltime, "memory": memory, "cores": cores}
    return [parse_change(name, text) for name, text in given.items() if text is not None]


# -- end reasons ------------------------------------------------------------------------


_CODED = re.compile(r"(EXIT|SIGNAL)(?:\((-?[0-9]+)\))?")


def parse_reason(text: str) -> str:
    """An end reason as a user writes it (``timeout``, ``oom``, ``EXIT(1)``, ``exit``)."""
    word = str(text).strip().upper().replace("-", "_")
    word = {"OOM": "OUT_OF_MEMORY", "MEMORY": "OUT_OF_MEMORY", "CANCELED": "CANCELLED"}.get(
        word, word)
    if word in END_REASONS or _CODED.fullmatch(word):
        return word
    raise RetryError(f"unknown end reason {text!r} (expected one of: "
                     f"{', '.join(END_REASONS)}, EXIT, EXIT(n), SIGNAL, SIGNAL(n))")


def reason_matches(end_reason: str | None, wanted: Iterable[str]) -> bool:
    """Whether a job's end reason is one of ``wanted`` (``EXIT`` matches any EXIT(n))."""
    if not end_reason:
        return False
    for word in wanted:
        if word == end_reason or (word in ("EXIT", "SIGNAL")
                                  and end_reason.startswith(f"{word}(")):
            return True
    return False


# -- policies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    on: tuple[str, ...] = DEFAULT_ON
    max: int = DEFAULT_MAX
    changes: dict[str, Change] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The normalised form kept in the config and in a job's data."""
        return {"on": list(self.on), "max": self.max,
                **{name: change.text for name, change in self.changes.items()}}


class PolicyError(RetryError):
    """A bad retry policy; ``key`` names the key at fault (None: the policy itself)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def parse_policy(raw: Any) -> Policy:
    """A retry policy from its mapping; PolicyError naming the key at fault."""
    if isinstance(raw, Policy):
        return raw
    if not isinstance(raw, Mapping):
        raise PolicyError(f"expected a mapping such as {{on: [TIMEOUT], max: 3, walltime: x2}}, "
                          f"got {raw!r}")
    # YAML 1.1 (PyYAML) reads a bare `on:` key as the boolean true
    raw = {("on" if key is True else key): value for key, value in raw.items()}
    for key in raw:
        if key not in POLICY_KEYS:
            raise PolicyError(f"unknown key (expected one of: {', '.join(POLICY_KEYS)})", str(key))
    on_raw = raw.get("on", list(DEFAULT_ON))
    if isinstance(on_raw, str):
        on_raw = [on_raw]
    if not isinstance(on_raw, list) or not on_raw:
        raise PolicyError("expected a list of end reasons, e.g. [TIMEOUT, OUT_OF_MEMORY]", "on")
    try:
        on = tuple(parse_reason(word) for word in on_raw)
    except RetryError as exc:
        raise PolicyError(str(exc), "on") from None
    max_raw = raw.get("max", DEFAULT_MAX)
    if isinstance(max_raw, bool) or not isinstance(max_raw, int) or max_raw < 0:
        raise PolicyError(f"expected a number of retries (0 or more), got {max_raw!r}", "max")
    changes: dict[str, Change] = {}
    for name in RESOURCES:
        if raw.get(name) is None:
            continue
        try:
            changes[name] = parse_change(name, raw[name])
        except RetryError as exc:
            raise PolicyError(str(exc), name) from None
    return Policy(on, max_raw, changes)


def policy_of(driver: DriverBase, job: Job) -> Policy | None:
    """The job's own policy, else its profile's; None: no automatic retry."""
    raw = (job.data or {}).get("retry")
    if raw is None:
        raw = getattr(driver.profile, "retry", None)
    return parse_policy(raw) if raw else None


# -- what a job has, and what it may get ------------------------------------------------


@dataclass(frozen=True)
class Resources:
    walltime: int | None  # minutes
    memory: int | None  # MB
    cores: int

    def as_dict(self) -> dict[str, int | None]:
        return {"walltime": self.walltime, "memory": self.memory, "cores": self.cores}

    def as_history(self) -> dict[str, int | None]:
        """As kept in a job's ``history`` (one column each in ``kong info``)."""
        return {"walltime_minutes": self.walltime, "memory_mb": self.memory,
                "cores": self.cores}


def resources_of(driver: DriverBase, job: Job) -> Resources:
    """What the job's next submit asks for (its own values over its profile's)."""
    from kong.drivers.batch import walltime_minutes

    options = driver.job_options(job)
    walltime: int | None = None
    raw_walltime = options.get("walltime")
    if raw_walltime is not None and str(raw_walltime).strip() not in ("0", ""):
        walltime = walltime_minutes(raw_walltime)
    memory: int | None = job.memory
    if memory is None:
        for key in ("memory", "request_memory"):
            mb = memory_mb(options.get(key))
            if mb is not None:
                memory = math.ceil(mb)
                break
    return Resources(walltime, memory, int(job.cores or 1))


@dataclass(frozen=True)
class Plan:
    """A job's next attempt: its resources, and what kong has to say about them."""

    resources: Resources
    notes: tuple[str, ...] = ()


def queue_limits(driver: DriverBase, job: Job) -> QueueLimits:
    """The limits of the job's queue (asked of the scheduler once per driver)."""
    queue = driver.queue_of(job)
    # a queue the scheduler did not list has no limits kong knows of
    return driver.known_queue_limits.get(queue, QueueLimits())


def _queue_label(driver: DriverBase, job: Job) -> str:
    queue = driver.queue_of(job)
    return f"queue {queue}" if queue else "the default queue"


def plan(driver: DriverBase, job: Job, changes: Sequence[Change]) -> Plan:
    """The job's resources after ``changes``, capped at its queue's limits.

    A change that would exceed a limit is capped there (with a note); a job that has
    the limit already cannot get more, and that is a ``LimitReached``."""
    current = resources_of(driver, job)
    if not changes:
        return Plan(current)
    limits = queue_limits(driver, job)
    values = current.as_dict()
    notes: list[str] = []
    where = _queue_label(driver, job)
    for change in changes:
        old = values[change.resource]
        if old is None and change.resource == "walltime" and change.kind != "set":
            old = limits.default_walltime or limits.walltime
        new = change.apply(old)
        cap = _cap(change.resource, limits, int(values["cores"] or 1))
        if cap is not None and new > cap:
            if old is not None and old >= cap and change.kind != "set":
                raise LimitReached(
                    f"job {job.job_id}: {change.resource} {_show(change.resource, old)} is "
                    f"{where}'s maximum already; {change.text} would exceed it")
            notes.append(f"{change.resource} {change.text} capped at {where}'s maximum "
                         f"{_show(change.resource, cap)} (asked {_show(change.resource, new)})")
            new = cap
        values[change.resource] = new
    return Plan(Resources(values["walltime"], values["memory"], int(values["cores"] or 1)),
                tuple(notes))


def _cap(resource: str, limits: QueueLimits, cores: int) -> int | None:
    if resource == "walltime":
        return limits.walltime
    if resource == "cores":
        return limits.cores
    caps = [c for c in (limits.memory,
                        limits.memory_per_core * cores if limits.memory_per_core else None)
            if c is not None]
    return min(caps) if caps else None


def _show(resource: str, amount: int) -> str:
    if resource == "walltime":
        hours, minutes = divmod(amount, 60)
        return f"{hours}:{minutes:02d}:00"
    if resource == "memory":
        return f"{amount / 1024:g}G" if amount % 1024 == 0 else f"{amount}M"
    return str(amount)


def auto_plan(driver: DriverBase, job: Job) -> Plan | str | None:
    """What a policy says of a job that just finished: a Plan for its next attempt,
    a note why it is not retried (max reached, at the limit), or None (no policy, or
    its end is not one the policy answers)."""
    policy = policy_of(driver, job)
    data = job.data or {}
    end_reason = data.get("end_reason")
    if policy is None or data.get("killed") or not reason_matches(end_reason, policy.on):
        return None
    done = int(data.get("retries", 0))
    if done >= policy.max:
        times = "retry" if done == 1 else "retries"
        return f"not retried: {end_reason} after {done} {times} (max {policy.max})"
    grows = GROWS_ON.get(str(end_reason), ())
    changes = [policy.changes[name] for name in grows if name in policy.changes]
    try:
        return plan(driver, job, changes)
    except (LimitReached, RetryError) as exc:
        return f"not retried: {exc}"

