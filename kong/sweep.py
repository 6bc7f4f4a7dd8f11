"""Parameter sweeps: parsing ``-p name=values``, expanding them, filling a template.

No database access here: ``kong.state.State.sweep`` turns the expanded points into
jobs (one transaction, ``kong.lifecycle.create_many``).

Values are text, kept as typed (``0.10`` stays ``0.10``), except those a range
makes (``1..3``, ``0..1:0.25``), which are written in their shortest form. A
command template's ``{name}`` is replaced by ``shlex.quote(value)``: the command is
still one shell line of the user's, and a value with a space, a quote or ``;``
stays one word and runs nothing. Folder and environment templates get the value
as it is (they never reach a shell unquoted).
"""

from __future__ import annotations

import itertools
import math
import re
import shlex
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from kong.errors import ArgumentValueError, FolderError

#: a sweep larger than this asks first (``-y`` / ``confirm=``)
CONFIRM_ABOVE = 10_000

#: a sweep larger than this is refused: its one transaction holds every row in memory
#: (100,000 jobs: 11 CPU s and 360 MB here), and more is a typo rather than a plan
MAX_JOBS = 200_000

#: values one range may make (``1..10000000000`` is a typo, not a plan)
MAX_RANGE = MAX_JOBS

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_INT_RANGE = re.compile(r"(-?[0-9]+)\.\.(-?[0-9]+)", re.ASCII)
_NUMBER = r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_STEP_RANGE = re.compile(rf"({_NUMBER})\.\.({_NUMBER}):({_NUMBER})", re.ASCII)
#: what a range that did not parse looks like (``1..``, ``..5``, ``0..1:``); text such
#: as ``../data`` or ``v1..v2`` is a value
_LOOKS_LIKE_RANGE = re.compile(r"[-+0-9.eE]*\.\.[-+0-9.eE:]*", re.ASCII)


class SweepError(ArgumentValueError):
    """A sweep that cannot be made: bad parameter, range, template or size."""


@dataclass(frozen=True)
class Parameter:
    """One ``-p name=values``: its name and its values, in order."""

    name: str
    values: tuple[str, ...]


def _number_text(value: Decimal) -> str:
    """``0.5`` for ``Decimal('0.50')``, ``10`` for ``Decimal('1E+1')``."""
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "") else text


def _expand_item(item: str, name: str) -> list[str]:
    """The values of one comma-separated item: itself, or the numbers of its range."""
    if (match := _INT_RANGE.fullmatch(item)) is not None:
        start, stop = int(match.group(1)), int(match.group(2))
        if start > stop:
            raise SweepError(f"parameter {name}: range {item} is empty ({start} is after "
                             f"{stop})")
        if stop - start + 1 > MAX_RANGE:
            raise SweepError(f"parameter {name}: range {item} has {stop - start + 1} values, "
                             f"more than {MAX_RANGE}")
        return [str(n) for n in range(start, stop + 1)]
    if (match := _STEP_RANGE.fullmatch(item)) is not None:
        return _step_range(item, name, *match.groups())
    if _LOOKS_LIKE_RANGE.fullmatch(item) and any(c.isdigit() for c in item):
        raise SweepError(f"parameter {name}: bad range {item!r} (ranges are A..B of whole "
                         f"numbers, or START..STOP:STEP)")
    return [item]


def _step_range(item: str, name: str, start_text: str, stop_text: str,
                step_text: str) -> list[str]:
    """``START..STOP:STEP``, STOP included when a step lands on it (as in MATLAB's
    ``0:0.1:1``; not its colons, which would make ``12:30:00`` a range).

    Decimal arithmetic: ``0:1:0.1`` gives ``0.3``, not ``0.30000000000000004``.
    """
    try:
        start, stop, step = Decimal(start_text), Decimal(stop_text), Decimal(step_text)
    except InvalidOperation:  # the pattern admits only numbers; kept for safety
        raise SweepError(f"parameter {name}: bad range {item!r}") from None
    if step == 0:
        raise SweepError(f"parameter {name}: range {item} has a step of 0")
    count_float = (stop - start) / step
    if count_float < 0:
        raise SweepError(f"parameter {name}: range {item} is empty (the step goes away "
                         f"from {stop_text})")
    count = math.floor(count_float) + 1
    if count > MAX_RANGE:
        raise SweepError(f"parameter {name}: range {item} has {count} values, more than "
                         f"{MAX_RANGE}")
    return [_number_text(start + i * step) for i in range(count)]


def parse_parameter(text: str) -> Parameter:
    """``x=0.1,0.2`` / ``seed=1..100`` / ``lr=0..1:0.25`` / ``a=1..3,10``: a Parameter.

    Items are separated by commas; an item is a value or a range. A value cannot hold a
    comma (give such values with ``parameters=`` from Python).
    """
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep:
        raise SweepError(f"expected NAME=VALUES, got {text!r}")
    return make_parameter(name, _split_values(name, values))


def _split_values(name: str, values: str) -> list[str]:
    items = values.split(",")
    if values == "" or any(item == "" for item in items):
        raise SweepError(f"parameter {name or '?'}: empty value in {values!r}")
    out: list[str] = []
    for item in items:
        out.extend(_expand_item(item, name))
        if len(out) > MAX_RANGE:
            raise SweepError(f"parameter {name}: more than {MAX_RANGE} values")
    return out


def make_parameter(name: str, values: Iterable[Any]) -> Parameter:
    """A Parameter from Python values (each turned into text with ``str``)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SweepError(f"bad parameter name {name!r}: use letters, digits and _ "
                         f"(not first a digit)")
    if isinstance(values, (str, bytes)):
        raise SweepError(f"parameter {name}: give a list of values, not one string "
                         f"(or NAME=VALUES text to parse_parameter)")
    texts = tuple(v if isinstance(v, str) else value_text(v) for v in values)
    if not texts:
        raise SweepError(f"parameter {name} has no values")
    for value in texts:
        if "\0" in value:
            raise SweepError(f"parameter {name}: a value cannot contain a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SweepError(f"parameter {name}: value {value!r} is not valid text") from None
    return Parameter(name, texts)


def value_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    return str(value)


def parameters(spec: Mapping[str, Iterable[Any]] | Sequence[str]) -> list[Parameter]:
    """Parameters from ``{"x": [0.1, 0.2]}`` or from ``["x=0.1,0.2", "seed=1..3"]``;
    a name given twice is refused."""
    if isinstance(spec, Mapping):
        found = [make_parameter(name, values) for name, values in spec.items()]
    elif isinstance(spec, (str, bytes)):
        raise SweepError("give parameters as a list of NAME=VALUES or a mapping")
    else:
        found = [parse_parameter(text) for text in spec]
    seen: set[str] = set()
    for param in found:
        if param.name in seen:
            raise SweepError(f"parameter {param.name} is given twice (give all its values "
                             f"in one -p {param.name}=A,B)")
        seen.add(param.name)
    if not found:
        raise SweepError("a sweep needs at least one parameter (-p NAME=VALUES)")
    return found


def count(params: Sequence[Parameter], zipped: bool = False) -> int:
    """How many jobs the sweep makes (without making them)."""
    if zipped:
        lengths = {len(p.values) for p in params}
        if len(lengths) > 1:
            shown = ", ".join(f"{p.name} has {len(p.values)}" for p in params)
            raise SweepError(f"--zip needs the same number of values for every parameter "
                             f"({shown})")
        return lengths.pop()
    return math.prod(len(p.values) for p in params)


def points(params: Sequence[Parameter], zipped: bool = False) -> Iterator[dict[str, str]]:
    """Each job's values: the product (the last parameter varies fastest), or the zip."""
    names = [p.name for p in params]
    combos = zip(*(p.values for p in params), strict=True) if zipped else itertools.product(
        *(p.values for p in params))
    for combo in combos:
        yield dict(zip(names, combo, strict=True))


# -- templates --------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A text with ``{name}`` (or ``{name:spec}``) placeholders; ``{{``/``}}`` for braces."""

    text: str
    what: str
    fields: tuple[tuple[str, str | None, str], ...]  # (literal, name or None, spec)

    @classmethod
    def parse(cls, text: str, what: str) -> Template:
        fields: list[tuple[str, str | None, str]] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise SweepError(f"bad {what} template {text!r}: {exc} (write {{{{ and }}}} "
                             f"for a literal brace)") from None
        for literal, name, spec, conversion in parsed:
            if name is None:
                fields.append((literal, None, ""))
                continue
            if not _NAME.fullmatch(name) or conversion or "{" in (spec or ""):
                raise SweepError(f"bad placeholder {{{name}}} in the {what} (placeholders "
                                 f"are {{NAME}}; write {{{{ and }}}} for a literal brace)")
            fields.append((literal, name, spec or ""))
        return cls(text, what, tuple(fields))

    @property
    def names(self) -> set[str]:
        return {name for _, name, _ in self.fields if name is not None}

    def check(self, known: Iterable[str]) -> None:
        """Every placeholder must be a parameter: a typo must not reach a shell."""
        allowed = set(known)
        for name in sorted(self.names - allowed):
            have = ", ".join(sorted(allowed)) or "none"
            raise SweepError(f"unknown placeholder {{{name}}} in the {self.what} (parameters:"
                             f" {have}; write {{{{ and }}}} for a literal brace, as in "
                             f"${{{{HOME}}}})")
        for _, field, spec in self.fields:
            if field is not None and spec:
                try:
                    format("", spec)
                except ValueError as exc:
                    raise SweepError(f"bad format {{{field}:{spec}}} in the {self.what}: "
                                     f"{exc}") from None

    def fill(self, values: Mapping[str, str], quote: bool) -> str:
        parts: list[str] = []
        for literal, name, spec in self.fields:
            parts.append(literal)
            if name is not None:
                value = format(values[name], spec) if spec else values[name]
                parts.append(shlex.quote(value) if quote else value)
        return "".join(parts)


def folder_parts(template: Template, values: Mapping[str, str]) -> list[str]:
    """The folder path a ``--folders`` template names for one job, as its parts."""
    from kong.model.folder import check_folder_name

    path = template.fill(values, quote=False)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if path.startswith("/") or ".." in path.split("/"):
        raise SweepError(f"--folders {template.text!r} must stay below the target folder "
                         f"(no leading / or ..), got {path!r}")
    if not parts:
        raise SweepError(f"--folders {template.text!r} names no folder for {values}")
    for name in values:
        if name in template.names and "/" in values[name]:
            raise SweepError(f"--folders: the value {values[name]!r} of {name} contains a /")
    for part in parts:
        try:
            check_folder_name(part)
        except FolderError as exc:
            raise SweepError(f"--folders {template.text!r}: {exc}") from None
    return parts


def read_commands(lines: Iterable[str]) -> list[str]:
    """The commands of a ``--from-file``: one a line; blank lines and ``#`` comments
    (a line whose first non-blank character is ``#``) are skipped."""
    commands = []
    for line in lines:
        text = line.rstrip("\r\n")
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        commands.append(text)
    return commands
