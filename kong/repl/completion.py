"""Completion of folder paths and job ids, shared by the REPL and click's shell completion.

A completion runs on every key press, so it asks the database only about the
one folder being typed into (its children, and a few job ids when digits are
typed), never about the whole tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kong.state import State

#: at most this many job ids are offered; a folder may hold 100,000 jobs
JOB_LIMIT = 50


@dataclass(frozen=True)
class Candidate:
    """One completion: ``text`` replaces the word being typed."""

    text: str
    display: str
    meta: str
    is_folder: bool


def complete_spec(
    state: State, word: str, *, folders_only: bool = False, job_limit: int = JOB_LIMIT
) -> list[Candidate]:
    """Folder paths (relative, absolute, with ``..``) and job ids that start with ``word``."""
    from sqlalchemy import String, cast, func, select

    from kong import db
    from kong.model.folder import Folder
    from kong.model.job import Job

    head, slash, partial = word.rpartition("/")
    if slash:
        base = Folder.find_by_path(head or "/", state.cwd)
        prefix = head + "/"
    else:
        base = state.cwd
        prefix = ""
    if base is None:
        return []
    out: list[Candidate] = []
    if partial and "..".startswith(partial):
        out.append(Candidate(prefix + "../", "../", "parent", True))
    s = db.session()
    query = select(Folder.name).where(Folder.parent_id == base.folder_id)
    if partial:
        # LIKE is case-insensitive in SQLite: it narrows, the Python test decides.
        query = query.where(Folder.name.startswith(partial, autoescape=True))
    for name in s.scalars(query.order_by(Folder.name)):
        if name.startswith(partial):
            out.append(Candidate(f"{prefix}{name}/", f"{name}/", "folder", True))
    if not folders_only and partial.isdigit():
        jobs = s.execute(
            select(Job.job_id, Job.status, Job.command)
            .where(Job.folder_id == base.folder_id,
                   cast(Job.job_id, String).startswith(partial))
            .order_by(func.length(cast(Job.job_id, String)), Job.job_id)
            .limit(job_limit)
        )
        for job_id, status, command in jobs:
            out.append(Candidate(f"{prefix}{job_id}", str(job_id),
                                 f"{status.name.lower()}: {command[:40]}", False))
    db.end_read()
    return out
