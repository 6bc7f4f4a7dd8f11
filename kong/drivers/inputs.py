"""A job's inputs as entries of the submit's one upload (see ``kong.staging``).

Dirs are expanded into their files here, at submit time, so what arrives is what
the laptop holds when the job is submitted (a resubmit sends the inputs again).
Each file is a ``LocalFile``: the transport reads it while it uploads and sends a
file that several jobs of the submit share only once.
"""

from __future__ import annotations

import os
from pathlib import Path

from kong.errors import DriverError
from kong.model.job import Job
from kong.remote.base import LocalFile


def input_files(job: Job, output_dir: str) -> dict[str, LocalFile]:
    """Remote path -> laptop file, for every file of the job's recorded inputs."""
    files: dict[str, LocalFile] = {}
    for entry in (job.data or {}).get("inputs", []):
        local, name = Path(entry["local"]), entry["name"]
        target = f"{output_dir.rstrip('/')}/{name}"
        if local.is_file():
            files[target] = LocalFile(str(local))
        elif local.is_dir():
            for parent, dirs, names in os.walk(local):
                dirs.sort()
                rel = os.path.relpath(parent, local)
                for each in sorted(names):
                    path = os.path.join(parent, each)
                    if os.path.isfile(path):
                        sub = each if rel == "." else f"{rel}/{each}".replace(os.sep, "/")
                        files[f"{target}/{sub}"] = LocalFile(path)
        else:
            raise DriverError(f"input {local} of job {job.job_id} is gone from this machine")
    return files
