"""Parsing the words of a JobSpec: ids, ranges, paths; no database access.

Everything a user types reaches SQLite eventually, so the words are checked here
first: text must be encodable (a shell passes undecodable bytes as lone surrogates,
``$'\\xff'`` arrives as ``'\\udcff'``), digits are ASCII digits only (``"²".isdigit()``
is true but no job id), and an id must fit SQLite's 64-bit INTEGER. Each refusal is
a KongError subclass with one line of message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kong.errors import (
    ArgumentTypeError,
    ArgumentValueError,
    JobSpecError,
    KongError,
    NoSuchJobOrFolder,
)

#: the largest value an SQLite INTEGER holds; no job id can be larger
MAX_ID = 2**63 - 1

#: the most cores a job may ask for (beyond any machine; keeps SQLite's INTEGER safe)
MAX_CORES = 2**31 - 1

#: folders deeper than this are refused (paths of thousands of levels help nobody and
#: each level is one lookup)
MAX_DEPTH = 256

_ID = re.compile(r"[0-9]+", re.ASCII)
_RANGE = re.compile(r"([0-9]+)\.\.([0-9]+)", re.ASCII)
_GLOB_CHARS = re.compile(r"[*?\[]")


def check_text(value: object, what: str, error: type[KongError] = JobSpecError) -> str:
    """``value`` if it is a ``str`` SQLite can store; a clear error otherwise."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{what} must be a str, not {type(value).__name__}: {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise error(f"{what} {value!r} is not valid text (undecodable bytes)") from None
    return value


def shown(text: str) -> str:
    """``text`` for a one-line message: as typed when printable, else its repr
    (a newline in a path must not split the error line)."""
    return text if text.isprintable() else repr(text)


def is_id(word: str) -> bool:
    return _ID.fullmatch(word) is not None


def is_glob(word: str) -> bool:
    return _GLOB_CHARS.search(word) is not None


def job_id(value: int | str) -> int:
    """The job id ``value`` names; ids no job can have are "no job with id ..."."""
    number = int(value)
    if not 0 <= number <= MAX_ID:
        from kong.model.job import JobDoesNotExist

        raise JobDoesNotExist(f"no job with id {number}")
    return number


@dataclass(frozen=True)
class Range:
    """``a..b``: job ids from ``start`` to ``end`` inclusive."""

    start: int
    end: int

    @classmethod
    def parse(cls, word: str) -> Range | None:
        """The range ``word`` spells, or None when it is no range; bad ranges raise."""
        match = _RANGE.fullmatch(word)
        if match is None:
            return None
        start, end = int(match.group(1)), int(match.group(2))
        if start > end:
            raise JobSpecError(f"bad range {word}: {start} is after {end}")
        if end > MAX_ID:
            raise JobSpecError(f"bad range {word}: job ids end at {MAX_ID}")
        return cls(start, end)


@dataclass(frozen=True)
class Spec:
    """A JobSpec string split into its folder part and its last word.

    ``folder`` is None when the spec has no ``/`` (``"4"``, ``"2..5"``, ``"runs"``).
    """

    text: str
    folder: str | None
    last: str

    @classmethod
    def parse(cls, value: str) -> Spec:
        text = check_text(value, "JobSpec").strip()
        if not text:
            raise NoSuchJobOrFolder("empty JobSpec: give a job id, a range or a folder")
        head, sep, last = text.rpartition("/")
        if not sep:
            return cls(text, None, text)
        return cls(text, head or "/", last)

    @property
    def job_id(self) -> int | None:
        """The id of ``4`` or ``folder/4``."""
        return job_id(self.last) if is_id(self.last) else None

    @property
    def range(self) -> Range | None:
        return Range.parse(self.last)

    @property
    def selects_jobs_only(self) -> bool:
        """True for ids, ranges and ``dir/*``: words that can never name a folder."""
        return is_id(self.last) or _RANGE.fullmatch(self.last) is not None or self.last == "*"


#: ``create_job``'s positional arguments after the folder, in the drivers' order
_POSITIONAL = ("command", "cores", "memory", "cwd", "env")


def job_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``create_job``'s arguments as keywords, checked before anything is written.

    Types are a ``TypeError`` (``ArgumentTypeError``), values kong refuses a
    ``ValueError`` (``ArgumentValueError``); both are KongErrors. The driver checks its
    own options on top.
    """
    if len(args) > len(_POSITIONAL):
        raise ArgumentTypeError(f"create_job takes at most {len(_POSITIONAL)} positional "
                                f"arguments ({', '.join(_POSITIONAL)}), got {len(args)}")
    named = dict(zip(_POSITIONAL, args, strict=False))
    for key in named:
        if key in kwargs:
            raise ArgumentTypeError(f"create_job got {key} twice")
    named.update(kwargs)
    for refused in ("driver", "batch_job_id"):
        if refused in named:
            raise ArgumentValueError(f"create_job does not take {refused}=: kong picks the "
                                     f"driver from the profile (profile=)")
    if "command" not in named:
        raise ArgumentTypeError("create_job needs a command")
    command = check_text(named["command"], "command", ArgumentValueError)
    if "\0" in command:
        raise ArgumentValueError("a command cannot contain a NUL character")
    if "cores" in named:
        _check_count("cores", named["cores"], MAX_CORES)
    if named.get("memory") is not None:
        _check_count("memory", named["memory"], MAX_ID)
    if named.get("cwd") is not None:
        check_text(named["cwd"], "cwd", ArgumentValueError)
    env = named.get("env")
    if env is not None:
        if not isinstance(env, Mapping):
            raise ArgumentTypeError(f"env must be a mapping of names to values, not "
                                    f"{type(env).__name__}")
        for name, value in env.items():
            check_text(name, "an environment variable name", ArgumentValueError)
            check_text(value, f"the value of {name}", ArgumentValueError)
    for key, value in named.items():
        if key not in _POSITIONAL and isinstance(value, str):
            check_text(value, f"option {key}", ArgumentValueError)
    return named


def _check_count(key: str, value: object, largest: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{key} must be an int, not {type(value).__name__}: {value!r}")
    if not 1 <= value <= largest:
        raise ArgumentValueError(f"{key} must be from 1 to {largest}, got {value}")
