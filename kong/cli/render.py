"""Small helpers that turn State's answers into what the CLI's tables and bars need."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def folder_paths_of(folder_ids: set[int], at_least: int = 2) -> dict[int, str] | None:
    """Paths of the folders of a listing; a table shows them only when the listing
    spans several folders (ls -R, ranges, globs)."""
    if len(folder_ids) < at_least:
        return None
    from kong import db
    from kong.model.folder import Folder

    session = db.session()
    paths = {}
    for folder_id in folder_ids:
        folder = session.get(Folder, folder_id)
        paths[folder_id] = folder.path if folder is not None else "?"
    return paths


def job_row(job: Any) -> Any:
    from kong.model.job import JobRow

    return JobRow(job.job_id, job.batch_job_id, job.driver, job.profile, job.folder_id,
                  job.command, job.status, job.created_at.timestamp(),
                  job.updated_at.timestamp(), job.cores, job.memory)


def bulk_progress(bar: Any) -> Callable[[int, int], None]:
    task = bar.task_ids[0]

    def progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return progress

