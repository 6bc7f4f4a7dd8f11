"""Slurm job arrays (``kong.drivers.arrays``): the ``--array`` directives, the
cluster's MaxArraySize (asked once per profile), element tokens in a reconcile, and
kills of many elements in one ``scancel``. ``SlurmDriver`` (``kong.drivers.slurm``)
is this and the rest of the driver."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kong.drivers.arrays import parse_element_token
from kong.drivers.base import KillOutcome, KillResult
from kong.drivers.batch import BatchDriver
from kong.drivers.sh import load
from kong.model.job import Job

# kill one array element by its array's name and index (its id unknown to kong)
# (its comments dropped: each.sh reads one command per line)
_KILL_ELEMENT = "".join(line for line in load("slurm_kill_element.sh").splitlines()
                        if not line.startswith("#"))
# kill elements of one array in one scancel, naming those that had ended (as above)
_KILL_ARRAY = "".join(line for line in load("slurm_kill_array.sh").splitlines()
                      if not line.startswith("#"))

#: Slurm's default MaxArraySize: indices 0..1000
DEFAULT_MAX_ARRAY_SIZE = 1001


class SlurmArrays(BatchDriver):
    """The array half of the Slurm driver (abstract: ``SlurmDriver`` is the whole)."""

    ARRAYS = True
    ARRAY_FIRST_INDEX = 0
    ARRAY_INDEX_VARIABLE = "SLURM_ARRAY_TASK_ID"

    def kill(self, jobs: Sequence[Job]) -> dict[int, KillResult]:
        """As BatchDriver.kill, but the elements of one array in one ``scancel``: it
        names each element it could not kill, so the answers stay per job."""
        by_array: dict[str, list[Job]] = {}
        plain: list[Job] = []
        for job in jobs:
            array_id, sep, index = str(job.batch_job_id or "").partition("_")
            if sep and index.isdigit():
                by_array.setdefault(array_id, []).append(job)
            elif job.batch_job_id:
                plain.append(job)
        if not by_array:
            return super().kill(jobs)
        commands = {str(j.job_id): self.kill_argv(str(j.batch_job_id)) for j in plain}
        commands.update({f"array-{a}": ["sh", "-c", _KILL_ARRAY, "sh",
                                        *(str(j.batch_job_id) for j in members)]
                         for a, members in by_array.items()})
        answers = self._each_raw(commands)
        results = {int(key): self.classify_kill(*answers[str(j.job_id)])
                   for j in plain if (key := str(j.job_id)) in answers}
        for array_id, members in by_array.items():
            answer = answers.get(f"array-{array_id}")
            if answer is None:
                continue  # cut short: no answer (lifecycle asks for their status)
            rc, output = answer
            said = _scancel_errors(output)
            for job in members:
                if str(job.batch_job_id) in said:
                    results[job.job_id] = self.classify_kill(1, said[str(job.batch_job_id)])
                elif rc == 0 or said:
                    results[job.job_id] = KillResult(KillOutcome.KILLED, "")
                else:  # failed without naming any element: the same answer for all
                    results[job.job_id] = self.classify_kill(rc, output)
        return results

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

    def prepare_submit(self, jobs: Sequence[Job]) -> None:
        if self._max_array_size is None and self.profile.options.get("arrays") is not False:
            self._max_array_size = self._ask_max_array_size()

    def array_limit(self) -> int:
        return self._max_array_size or DEFAULT_MAX_ARRAY_SIZE

    _max_array_size: int | None = None

    @property
    def _array_size_cache(self) -> Path:
        return self.config.data_dir / "arrays" / f"{self.profile.name}.max-array-size"

    def array_refused(self, message: str) -> None:
        # e.g. "Invalid job array specification": the site may have lowered MaxArraySize
        if "array" in message.lower():
            self._max_array_size = None
            self._array_size_cache.unlink(missing_ok=True)

    def _ask_max_array_size(self) -> int:
        """The cluster's MaxArraySize, asked once per profile (kept in the data dir
        for the next kong) with ``scontrol show config``."""
        cache = self._array_size_cache
        try:
            value = int(cache.read_text().strip())
        except (OSError, ValueError):
            value = 0
        if value > 0:
            return value
        output = self.run_script("scontrol show config | awk '$1 == \"MaxArraySize\" "
                                 "{ print $3 }'")
        words = output.split()
        value = int(words[0]) if words and words[0].isdigit() else DEFAULT_MAX_ARRAY_SIZE
        if value > 0:
            from kong.paths import make_private_dir

            make_private_dir(cache.parent)
            cache.write_text(f"{value}\n")
        return max(value, 1)

    def _elements(self, tokens: Sequence[str], found: dict[str, str]) -> dict[str, str]:
        """``found`` (name -> id) per token: a plain token is a name; an element's
        token is found when its array is (one sbatch took all of the array or none),
        as ``<array id>_<index>``."""
        result: dict[str, str] = {}
        for token in tokens:
            element = parse_element_token(token)
            if element is None:
                if token in found:
                    result[token] = found[token]
            elif element[0] in found:
                result[token] = self.element_batch_id(found[element[0]], element[1])
        return result

    def _names(self, tokens: Sequence[str]) -> list[str]:
        """The job names to look for: plain tokens and the arrays of elements'."""
        names = dict.fromkeys(t if (e := parse_element_token(t)) is None else e[0]
                              for t in tokens)
        return list(names)


_SCANCEL_ERROR = re.compile(r"error on job id (\S+?):\s*(.*?)\s*(?=scancel: |$)")


def _scancel_errors(output: str) -> dict[str, str]:
    """What ``scancel`` of many ids said of each id it could not kill, by id, from
    lines like ``scancel: error: Kill job error on job id 123_4: Invalid job id
    specified`` (joined on one line)."""
    return {m.group(1): m.group(2) for m in _SCANCEL_ERROR.finditer(output)}


def sbatch_path(path: str) -> str:
    # sbatch expands %j, %x, ... in --output; "%%" is a literal percent sign.
    path = path.replace("%", "%%")
    return f'"{path}"' if any(c.isspace() for c in path) else path
