"""The State API's reports: jobs per status, output sizes, chosen data keys, accounting
and run times of many jobs, each in a few queries, and ``report`` (``kong.report``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from kong import db, lifecycle
from kong.model.folder import Folder
from kong.model.job import Job, JobStatus
from kong.selection import JobSpec
from kong.state_core import StateCore, load_job_data


class Reports(StateCore):
    """What the jobs asked for, used and are: counts, sizes, data, accounting, reports."""

    def status_counts(
        self, folder: str | Folder = ".", recursive: bool = True
    ) -> dict[JobStatus, int]:
        """Jobs per status in a folder (and below it), counted by the database."""
        target = self._folder(folder)
        query = (
            select(Job.status, func.count())
            .where(self._in_folder(target, recursive))
            .group_by(Job.status)
        )
        counts = {status: 0 for status in JobStatus}
        for status, n in db.session().execute(query):
            counts[status] = n
        return counts

    def folder_counts(self, folders: Sequence[Folder]) -> dict[int, dict[JobStatus, int]]:
        """For each folder, jobs per status in it and below it: one query for all."""
        result: dict[int, dict[JobStatus, int]] = {
            f.folder_id: {s: 0 for s in JobStatus} for f in folders
        }
        if not folders:
            return result
        top = (
            select(Folder.folder_id.label("top"), Folder.folder_id.label("fid"))
            .where(Folder.folder_id.in_([f.folder_id for f in folders]))
            .cte("tops", recursive=True)
        )
        child = aliased(Folder)
        top = top.union_all(
            select(top.c.top, child.folder_id).join(top, child.parent_id == top.c.fid)
        )
        query = (
            select(top.c.top, Job.status, func.count())
            .join(Job, Job.folder_id == top.c.fid)
            .group_by(top.c.top, Job.status)
        )
        for top_id, status, n in db.session().execute(query):
            result[top_id][status] = n
        return result

    def sizes(self, jobs: Sequence[Job]) -> dict[int, int]:
        """Bytes in each job's output dir (one command per profile)."""
        result: dict[int, int] = {}
        for sizes in self._each_profile(jobs, lambda d, g: d.sizes(g)).values():
            result.update(sizes)
        return result

    def job_data(self, job_ids: Sequence[int], keys: Sequence[str]) -> dict[int, dict[str, Any]]:
        """Selected keys of the ``data`` of many jobs, without loading whole rows; a key
        that is one of a job's sweep parameters gives the parameter's value."""
        out: dict[int, dict[str, Any]] = {}
        s = db.session()
        for start in range(0, len(job_ids), 5000):
            chunk = job_ids[start : start + 5000]
            for job_id, data in s.execute(
                select(Job.job_id, Job.data).where(Job.job_id.in_(chunk))
            ):
                data = data or {}
                # a sweep's parameter first (`ls -x seed`), else the data's own key
                params = data.get("params") or {}
                out[job_id] = {k: params[k] if k in params else data.get(k) for k in keys}
        return out

    def job_accounting(self, job_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Times (submit, start, end, queue wait, run time), end reason, usage and
        efficiency of many jobs, from what kong stored (``kong.usage.job_accounting``)."""
        from kong.usage import job_accounting

        out: dict[int, dict[str, Any]] = {}
        s = db.session()
        for start in range(0, len(job_ids), 5000):
            chunk = job_ids[start : start + 5000]
            for job_id, memory, data in s.execute(
                select(Job.job_id, Job.memory, Job.data).where(Job.job_id.in_(chunk))
            ):
                out[job_id] = job_accounting(data or {}, memory)
        return out

    def job_run_times(self, job_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """End reason ("removing" while an rm has claimed the job) and run time
        (seconds; None before the start) of many jobs, for a listing: read with the
        database's JSON functions, never a whole ``data``."""
        from kong.usage import as_datetime

        data = Job.data
        columns = (Job.job_id, data["end_reason"].as_string(), data["start_time"].as_string(),
                   data["end_time"].as_string(), data[("usage", "elapsed")].as_float(),
                   data[("removing", "since")].as_string())
        out: dict[int, dict[str, Any]] = {}
        now = time.time()
        s = db.session()
        wanted = set(job_ids)
        if len(wanted) > 5000 and max(wanted) - min(wanted) < 4 * len(wanted):
            # a big listing is mostly one id range: one scan of it beats IN lists
            queries = [select(*columns).where(Job.job_id.between(min(wanted), max(wanted)))]
        else:
            queries = [select(*columns).where(Job.job_id.in_(job_ids[i : i + 5000]))
                       for i in range(0, len(job_ids), 5000)]
        for query in queries:
            for job_id, reason, started, ended, elapsed, removing in s.execute(query):
                if job_id not in wanted:
                    continue
                run = None
                if ended and elapsed is not None:
                    run = float(elapsed)
                elif started:
                    begin, end = as_datetime(started), as_datetime(ended)
                    if begin is not None:
                        stop = end.timestamp() if end is not None else now
                        run = max(0.0, stop - begin.timestamp())
                # an rm claimed it (and runs, or was cut short: rm again finishes it)
                out[job_id] = {"end_reason": "removing" if removing else reason,
                               "run_time": run}
        return out

    def report(
        self, specs: JobSpec | Sequence[JobSpec] = ".", recursive: bool = False,
        query: bool = True,
    ) -> list[Any]:
        """What the selected jobs asked for and used, per folder (``kong.report``).

        Finished jobs that have no usage stored are asked for it first, in one
        scheduler query per profile (``query=False``: stored data only).
        """
        from kong import report

        jobs = self.select_jobs(specs, recursive)
        if query:
            load_job_data(jobs)
            missing = [j for j in jobs if j.status.finished and j.batch_job_id
                       and not (j.data or {}).get("usage")]
            if missing:
                db.require_writable()
                self._each_profile(missing, lifecycle.backfill_usage)
        load_job_data(jobs)
        paths: dict[int, str] = {}
        figures = []
        for job in jobs:
            if job.folder_id not in paths:
                paths[job.folder_id] = job.folder.path
            figures.append(report.JobFigures(paths[job.folder_id], job.status.name,
                                             job.cores, job.memory, job.data or {}))
        db.end_read()
        return report.build(figures)
