"""Many jobs in one call: ``State.create_jobs`` and ``State.sweep`` (their bodies).

Everything is checked before anything is written; then all the rows (and a
sweep's new folders) go into the database in one transaction
(``kong.lifecycle.create_many``), so a refusal, a crash or Ctrl-C leaves none.
One process and one transaction for 2,000 jobs is what makes a sweep take a
second where 2,000 ``kong create-job`` calls take minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.exc import IntegrityError

from kong import db, lifecycle, sweep
from kong.errors import ArgumentTypeError, ArgumentValueError, ConfigError, NoSuchFolder
from kong.jobspec import MAX_DEPTH, check_text, job_arguments
from kong.model.folder import Folder
from kong.model.job import Job
from kong.selection import forget_collections

if TYPE_CHECKING:
    from kong.state_core import Confirmation, StateCore

#: the data key a sweep keeps each job's parameter values under
PARAMS = "params"


def create_jobs(
    state: StateCore,
    jobs: Iterable[str | Mapping[str, Any]],
    folder: str | Folder | None = None,
    profile: str | None = None,
    **common: Any,
) -> list[Job]:
    """The body of ``State.create_jobs`` (see there)."""
    folder_of: dict[Any, Folder] = {}
    base = state._folder(folder or state.cwd)
    arguments: list[dict[str, Any]] = []
    targets: list[Folder] = []
    extra: list[dict[str, Any]] = []
    for item in jobs:
        if isinstance(item, str):
            kwargs = {**common, "command": item}
        elif isinstance(item, Mapping):
            kwargs = {**common, **item}
        else:
            raise ArgumentTypeError(f"create_jobs takes commands (str) or mappings of "
                                    f"create_job's arguments, not {type(item).__name__}")
        if "profile" in kwargs:
            raise ArgumentValueError("create_jobs makes all its jobs with one profile: give "
                                     "profile= once (call it once per profile)")
        where = kwargs.pop("folder", None)
        params = kwargs.pop(PARAMS, None)
        if where is None:
            targets.append(base)
        else:
            key = where.folder_id if isinstance(where, Folder) else where
            if key not in folder_of:
                folder_of[key] = state._folder(where)
            targets.append(folder_of[key])
        extra.append({PARAMS: _params(params)} if params is not None else {})
        arguments.append(job_arguments((), kwargs))
    return _create(state, profile, arguments, lambda: targets, extra)


def _params(params: Any) -> dict[str, str]:
    if not isinstance(params, Mapping):
        raise ArgumentTypeError(f"params must be a mapping of names to values, not "
                                f"{type(params).__name__}")
    return {p.name: p.values[0] for p in (sweep.make_parameter(str(k), [v])
                                          for k, v in params.items())}


def _create(
    state: StateCore,
    profile: str | None,
    arguments: list[dict[str, Any]],
    folders: Callable[[], Sequence[Folder]],
    extra: Sequence[dict[str, Any]],
) -> list[Job]:
    db.require_writable()  # before anything is done that could not be recorded
    if not arguments:
        return []
    if profile is not None:
        check_text(profile, "profile", ConfigError)
    driver = state.driver(state.config.profile(profile or state.profile).name)
    try:
        created = lifecycle.create_many(driver, arguments, folders, extra)
    except IntegrityError:  # a folder's row went between our lookup and the insert
        raise NoSuchFolder("a folder of these jobs was removed meanwhile; nothing was "
                           "created") from None
    for job in created:
        job.config = state.config
    forget_collections()
    return created


def run_sweep(
    state: StateCore,
    command: str,
    parameters: Mapping[str, Iterable[Any]] | Sequence[str],
    zipped: bool = False,
    folders: str | None = None,
    folder: str | Folder | None = None,
    profile: str | None = None,
    confirm: Confirmation | None = None,
    env: Mapping[str, str] | None = None,
    **common: Any,
) -> list[Job]:
    """The body of ``State.sweep`` (see there)."""
    check_text(command, "command template", sweep.SweepError)
    params = sweep.parameters(parameters)
    names = [p.name for p in params]
    template = sweep.Template.parse(command, "command")
    template.check(names)
    folder_template = None
    if folders is not None:
        folder_template = sweep.Template.parse(check_text(folders, "--folders"), "--folders")
        folder_template.check(names)
    env_templates = {k: sweep.Template.parse(check_text(v, f"the value of {k}"),
                                             f"value of {k}")
                     for k, v in (env or {}).items()}
    for t in env_templates.values():
        t.check(names)
    total = sweep.count(params, zipped)
    if total > sweep.MAX_JOBS:
        raise sweep.SweepError(f"the sweep makes {total:,} jobs, more than kong makes in one "
                               f"go ({sweep.MAX_JOBS:,}); split it")
    if total > sweep.CONFIRM_ABOVE:
        question = f"Create {total:,} jobs?"
        if confirm is None:
            raise sweep.SweepError(f"the sweep makes {total:,} jobs: confirm it (kong sweep "
                                   f"-y, or confirm= from Python)")
        if not confirm(question):
            return []
    base = state._folder(folder or state.cwd)
    arguments: list[dict[str, Any]] = []
    extra: list[dict[str, Any]] = []
    paths: list[tuple[str, ...]] = []
    for values in sweep.points(params, zipped):
        kwargs = {**common, "command": template.fill(values, quote=True)}
        if env_templates:
            kwargs["env"] = {k: t.fill(values, quote=False) for k, t in env_templates.items()}
        arguments.append(kwargs)
        extra.append({PARAMS: values})
        if folder_template is not None:
            paths.append(tuple(sweep.folder_parts(folder_template, values)))
    if arguments:  # the shared options once: each job's differ only in command and env
        job_arguments((), arguments[0])
        for kwargs in arguments[1:]:
            check_text(kwargs["command"], "command", sweep.SweepError)
    if paths:
        deepest = max(len(p) for p in paths)
        if _depth(base) + deepest > MAX_DEPTH:
            raise sweep.SweepError(f"--folders: folders nest at most {MAX_DEPTH} levels deep")

    def targets() -> list[Folder]:
        if not paths:
            return [base] * len(arguments)
        made: dict[tuple[str, ...], Folder] = {}
        return [_subfolder(base, path, made) for path in paths]

    return _create(state, profile, arguments, targets, extra)


def _subfolder(base: Folder, path: tuple[str, ...], made: dict[tuple[str, ...], Folder]
               ) -> Folder:
    """``base/path``, made where missing (mkdir -p), inside the caller's transaction."""
    if path in made:
        return made[path]
    parent = base if len(path) == 1 else _subfolder(base, path[:-1], made)
    child = parent.subfolder(path[-1])
    if child is None:
        child = Folder(name=path[-1], parent_id=parent.folder_id)
        s = db.session()
        s.add(child)
        s.flush()
    made[path] = child
    return child


def _depth(folder: Folder) -> int:
    depth, current = 0, folder
    while current.parent_id is not None and current.parent is not None:
        depth, current = depth + 1, current.parent
    return depth


# -- selecting by parameter -------------------------------------------------------------


def parse_where(texts: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``["x=0.1,0.2", "seed=3"]``: each key with the values it may have."""
    out: dict[str, tuple[str, ...]] = {}
    for text in texts:
        key, sep, values = check_text(text, "--where").partition("=")
        key = key.strip()
        if not sep or not key:
            raise sweep.SweepError(f"--where takes KEY=VALUE (or KEY=A,B), got {text!r}")
        if key in out:
            raise sweep.SweepError(f"--where {key} is given twice (give KEY=A,B for either)")
        out[key] = tuple(values.split(","))
    return out


def matching_ids(job_ids: Sequence[int], where: Mapping[str, Sequence[str]]) -> set[int]:
    """Those of ``job_ids`` whose parameter (or, without one, data value) KEY is one of
    the given values, for every KEY; compared as text, as the values were typed."""
    conditions = []
    for key, values in where.items():
        value = func.coalesce(
            cast(Job.data[(PARAMS, key)].as_string(), String),
            cast(Job.data[key].as_string(), String),
        )
        conditions.append(value.in_([str(v) for v in values]))
    s = db.session()
    found: set[int] = set()
    for start in range(0, len(job_ids), 5000):
        chunk = job_ids[start:start + 5000]
        found.update(s.scalars(select(Job.job_id).where(Job.job_id.in_(chunk), *conditions)))
    return found


def where_mapping(where: Mapping[str, Any] | Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``where`` as ``matching_ids`` takes it, from Python's or the command line's form."""
    if isinstance(where, Mapping):
        out: dict[str, tuple[str, ...]] = {}
        for key, value in where.items():
            values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
            out[check_text(key, "a where key")] = tuple(
                v if isinstance(v, str) else sweep.value_text(v) for v in values)
        return out
    if isinstance(where, str):
        return parse_where([where])
    return parse_where(list(where))
