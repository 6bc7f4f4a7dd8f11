"""Slurm job arrays (``kong.drivers.arrays``, ``kong.drivers.batch_arrays``): the
``--array`` directives, the cluster's MaxArraySize (``scontrol show config``), and
the kill of one element by its array's name. ``SlurmDriver`` (``kong.drivers.slurm``)
is this and the rest of the driver."""

from __future__ import annotations

from typing import Any

from kong.drivers.batch_arrays import ArrayBatchDriver
from kong.drivers.sh import load
from kong.model.job import Job

# kill one array element by its array's name and index (its id unknown to kong)
# (its comments dropped: each.sh reads one command per line)
_KILL_ELEMENT = "".join(line for line in load("slurm_kill_element.sh").splitlines()
                        if not line.startswith("#"))

#: Slurm's default MaxArraySize: indices 0..1000
DEFAULT_MAX_ARRAY_SIZE = 1001


class SlurmArrays(ArrayBatchDriver):
    """The array half of the Slurm driver (abstract: ``SlurmDriver`` is the whole)."""

    ARRAY_FIRST_INDEX = 0
    ARRAY_INDEX_VARIABLE = "SLURM_ARRAY_TASK_ID"
    DEFAULT_MAX_ARRAY_SIZE = DEFAULT_MAX_ARRAY_SIZE

    def max_array_size_script(self) -> str:
        return "scontrol show config | awk '$1 == \"MaxArraySize\" { print $3 }'"

    # -- arrays -------------------------------------------------------------------------

    def array_header(self, job: Job, options: dict[str, Any], name: str, count: int,
                     log_dir: str) -> list[str]:
        paths = self.job_paths(job)
        own = {f"#SBATCH --output={sbatch_path(paths.stdout)}",
               f"#SBATCH --error={sbatch_path(paths.stderr)}"}
        header = [line for line in self.header_lines(job, options, name) if line not in own]
        # Slurm's own words about an element (a time-limit notice) go to the array's
        # dir; the job's stdout and stderr are its own (the dispatcher opens them).
        return [f"#SBATCH --array=0-{count - 1}",
                f"#SBATCH --output={sbatch_path(log_dir)}/%a.txt", *header]

    def array_submit_argv(self, dispatcher: str) -> list[str]:
        return ["sbatch", "--parsable", dispatcher]


def sbatch_path(path: str) -> str:
    # sbatch expands %j, %x, ... in --output; "%%" is a literal percent sign.
    path = path.replace("%", "%%")
    return f'"{path}"' if any(c.isspace() for c in path) else path
