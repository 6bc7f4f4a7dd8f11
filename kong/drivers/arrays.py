"""Job arrays: many kong jobs of one bulk submit as one scheduler submission.

A batch driver that can (Slurm ``--array``, LSF ``-J name[1-N]``) submits the jobs
of one submit that share every scheduler directive (same cores, memory, options)
as one array, chunked to the cluster's array size limit. Each kong job stays a job
of its own: its own script, dirs, logs, exit code, batch id (the element's, e.g.
Slurm ``123_4``), kill of only it, resubmit as a plain job.

Tokens. The token of a plain job is its job name. An array has one name, the
token its first job would have had plus ``-array``; each element's token is
``<array name>[<index>]``, recorded by ``kong.lifecycle`` before the submit like
any token. Since one submit command takes the whole array or none of it, the
array's name alone says "found" (then the element is ``<array id>_<index>``) or
"not found" for every element, and the scheduler's silence means what it means
for a plain job.

The dispatcher. The array's one script (``dispatch.sh`` under the base dir's
``.arrays/<name>/``) carries the directives and finds its element's kong job by
the scheduler's index in a map uploaded beside it (``<index>\\t<script>\\t<stdout>
\\t<stderr>`` per line), then runs that job's own script with that job's own logs
(``kong/drivers/sh/array_element.sh``). What the scheduler itself writes for an
element (a time-limit notice, say) goes to ``.arrays/<name>/<index>.txt``, which
the element moves (a hard link) to ``scheduler.txt`` in its job's log dir.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from kong.drivers.script import JobPaths
from kong.drivers.sh import load

T = TypeVar("T")

#: what the profile option ``arrays`` turns off, and ``array_size`` caps
ARRAY_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "arrays": bool,  # default true: jobs of one submit with equal options go as arrays
    "array_size": int,  # at most this many jobs per array (besides the cluster's limit)
}

ARRAY_SUFFIX = "-array"

_ELEMENT = re.compile(r"^(kong-.+" + re.escape(ARRAY_SUFFIX) + r")\[(\d+)\]$")

#: the part of every dispatcher after its directives and two variable lines
ELEMENT_SCRIPT = load("array_element.sh")


def array_name(first_token: str) -> str:
    """The name of an array whose first job's plain token would be ``first_token``
    (unique as that token is: attempts only grow)."""
    return f"{first_token}{ARRAY_SUFFIX}"


_NAME = re.compile(r"^kong-[A-Za-z0-9_.-]+" + re.escape(ARRAY_SUFFIX) + r"$")


def is_array_name(name: str) -> bool:
    """Whether ``name`` is an array's name as kong makes them (one path component:
    a name read back from the database may be deleted as a dir under ``.arrays/``)."""
    return bool(_NAME.match(name)) and ".." not in name


def element_token(name: str, index: int) -> str:
    return f"{name}[{index}]"


def parse_element_token(token: str) -> tuple[str, int] | None:
    """(array name, index) of an element's token; None for a plain job's token."""
    match = _ELEMENT.match(token)
    return None if match is None else (match.group(1), int(match.group(2)))


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    size = max(1, size)
    for start in range(0, len(items), size):
        yield items[start:start + size]


_FOLDED = re.compile(r"^(\d+)_\[([0-9,\-]+)(?:%\d+)?\]$")


def expand_element_ids(batch_id: str) -> list[str]:
    """``123_[0-2,5]`` (pending elements folded by squeue/sacct) as ``123_0`` ...
    ``123_5``; any other id as itself."""
    match = _FOLDED.match(batch_id)
    if match is None:
        return [batch_id]
    array_id, spec = match.groups()
    ids: list[str] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            ids.extend(f"{array_id}_{i}" for i in range(int(first), int(last or first) + 1))
    return ids


@dataclass(frozen=True)
class ArrayElement:
    job_id: int
    index: int
    paths: JobPaths


@dataclass(frozen=True)
class ArraySubmission:
    """One array on its way to the scheduler: its name, dir and elements in order."""

    name: str
    dir: str
    elements: tuple[ArrayElement, ...]

    @property
    def dispatcher(self) -> str:
        return f"{self.dir}/dispatch.sh"

    @property
    def map_path(self) -> str:
        return f"{self.dir}/map"

    def map_text(self) -> str:
        return "".join(f"{e.index}\t{e.paths.script}\t{e.paths.stdout}\t{e.paths.stderr}\n"
                       for e in self.elements)

    def dispatcher_text(self, header: Sequence[str], index_variable: str) -> str:
        return "".join([
            "#!/bin/sh\n",
            *(f"{line}\n" for line in header),
            f"# kong job array {self.name}: element index -> kong job in {self.map_path}\n",
            f"kong_map={shlex.quote(self.map_path)}\n",
            f'kong_index="${{{index_variable}:-}}"\n',
            ELEMENT_SCRIPT,
        ])


def mappable(paths: JobPaths) -> bool:
    """Whether a job's paths fit one line of the map (no tab or newline in them)."""
    return not any(c in p for p in (paths.script, paths.stdout, paths.stderr) for c in "\t\n")
