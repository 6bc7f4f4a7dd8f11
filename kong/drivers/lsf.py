"""IBM Spectrum LSF (10.1): job scripts with ``#BSUB`` lines, submitted with ``bsub``.

Profile options (each also a per-job override in ``create_job(...)``): queue (-q),
project (-P), walltime (-W; kong's common [[D-]HH:]MM:SS or minutes), memory (MB: -M
and rusage[mem]), cores (the default of ``create_job``'s ``cores``: -n), resources
(-R, a resource requirement string), extra (more #BSUB lines), arrays and array_size
(job arrays, ``kong.drivers.arrays``), scratch_dir, poll_interval.

Job arrays. The jobs of one submit with equal directives go as ``bsub -J
"name[1-N]"`` (at most the cluster's MAX_JOB_ARRAY_SIZE, from ``bparams -a``); an
element's batch id is LSF's own ``123[4]``. bjobs lists an array's elements under its
id (JOBID 123, JOBINDEX 4, JOB_NAME ``name[4]``), so the status query asks for the
arrays' ids; ``bkill "123[4]" "123[7]"`` kills those elements only, in one command
(as ``bkill 12 13`` does plain jobs: a kill is one bkill, a line per id).

Mostly data on top of :class:`~kong.drivers.batch.BatchDriver`: the directives, the
submit command, and (in ``kong.drivers.lsf_parsers``) the state table and parsers for
what ``bsub``, ``bjobs`` and ``bhist`` print. One status refresh is one remote
command: ``bjobs -a -o ... -json`` for the jobs' ids, then ``bhist -l`` in the same
shell for ids ``bjobs`` no longer knows
(finished longer than CLEAN_PERIOD ago). A job neither knows stays UNKNOWN unless its
script left an exit code (the BatchDriver's fallback).
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from kong.drivers.arrays import ARRAY_OPTIONS, parse_element_token
from kong.drivers.base import QueueLimits, TokenLookup
from kong.drivers.batch import (
    BATCH_OPTIONS,
    BUSY,
    SchedulerInfo,
    walltime_minutes,
)
from kong.drivers.batch_arrays import ArrayBatchDriver
from kong.drivers.lsf_limits import parse_bqueues
from kong.drivers.lsf_parsers import (
    DELIMITER,
    FIELDS,
    json_records,
    parse_bhist,
    parse_bjobs_json,
    parse_bjobs_plain,
    parse_bsub,
)
from kong.drivers.sh import load
from kong.errors import DriverError
from kong.model.job import Job
from kong.remote.statusview import Verdict

if TYPE_CHECKING:
    from kong.remote.base import CommandResult

#: an array element's batch id, as LSF writes it: 123[4]
_ELEMENT_ID = re.compile(r"^(\d+)\[(\d+)\]$")
#: what bkill says of one job or element: "Job <123[4]> is being terminated",
#: "Job <123[4]>: Job has already finished", ...
_BKILL_ANSWER = re.compile(r"Job <(\d+(?:\[\d+\])?)>:?\s*(.*?)\s*(?=Job <\d|$)")

# bjobs for many ids, in one command; ids come on stdin. Those bjobs does not know
# any more (aged out of mbatchd's memory) are looked up in the event log with bhist.
# JSON needs LSF 10.1.0.2; older bjobs get the delimited -noheader form. The answer
# counts only if it ends with END: a cut connection must not make jobs "missing".
_QUERY = load("lsf_query.sh")

# Every job of this user that LSF still lists, with its name (for reconcile); "$1"
# is the submit lock, "$2" the delimiter.
_NAMES = load("wait_for_submits.sh", "lsf_names.sh")


#: seconds to wait before asking LSF again when mbatchd says "Please wait"
NOT_READY_RETRIES = (1.0, 2.0, 4.0)

#: LSF's default CLEAN_PERIOD: how long mbatchd shows a finished job (bjobs -a)
CLEAN_PERIOD = 3600.0


class LSFDriver(ArrayBatchDriver):
    name = "lsf"
    submit_tool = "bsub"
    KILL_FINISHED = ("already finished",)
    KILL_GONE = ("no matching job",)
    #: indices start at 1 (LSF's are positive); LSB_JOBINDEX tells an element its own
    ARRAY_FIRST_INDEX = 1
    ARRAY_INDEX_VARIABLE = "LSB_JOBINDEX"
    #: lsb.params' MAX_JOB_ARRAY_SIZE unless the site sets it
    DEFAULT_MAX_ARRAY_SIZE = 1000
    ELEMENT_ID = _ELEMENT_ID
    OPTIONS: ClassVar[dict[str, type | tuple[type, ...]]] = {
        **BATCH_OPTIONS,
        **ARRAY_OPTIONS,
        "walltime": (str, int),
        "queue": str,  # bsub -q
        "project": str,  # bsub -P
        "resources": str,  # bsub -R, a resource requirement string
        "memory": int,  # MB, default for jobs created without memory=
        "cores": int,  # default for jobs created without cores= (bsub -n)
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._json = True  # until bjobs shows it has no -json

    def check_options(self, options: dict[str, Any]) -> None:
        super().check_options(options)
        for key in ("memory", "cores"):
            value = options.get(key)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise DriverError(f"option {key!r} of driver lsf: must be at least 1, "
                                  f"got {value!r}")

    def queue_of(self, job: Job) -> str:
        return str(self.job_options(job).get("queue") or "")

    def queue_limits(self) -> dict[str, QueueLimits]:
        """Every queue's RUNLIMIT, MEMLIMIT and PROCLIMIT from one ``bqueues -l``."""
        result = self.transport.run(["bqueues", "-l"])
        if result.exit_code != 0:
            raise DriverError(f"lsf on {self.transport.label}: cannot read the queues' limits: "
                              f"{result.stderr.decode(errors='replace').strip()[:200]}")
        return parse_bqueues(result.text())

    # -- the script -----------------------------------------------------------------

    def header_lines(self, job: Job, options: dict[str, Any], token: str) -> list[str]:
        paths = self.job_paths(job)
        return [
            f"#BSUB -J {token}",
            # LSF's own file, for the job report it appends (mailed instead with -N)
            f"#BSUB -o {_word(self.lsf_log(job))}",
            *self._directives(job, options),
            # The job writes its logs itself, after every #BSUB line: LSF copies a job's
            # output into the -o file only when it ends (unless the site sets
            # LSB_STDOUT_DIRECT), and kong's logs are read while jobs run.
            f"exec >>{shlex.quote(paths.stdout)} 2>>{shlex.quote(paths.stderr)}",
        ]

    def array_header(self, job: Job, options: dict[str, Any], name: str, count: int,
                     log_dir: str) -> list[str]:
        # LSF's job report of an element goes to the array's dir (the dispatcher
        # links it beside the job's logs); the job's stdout and stderr are its own.
        return [f'#BSUB -J "{name}[{self.ARRAY_FIRST_INDEX}-{count}]"',
                f"#BSUB -o {_word(f'{log_dir}/%I.txt')}",
                *self._directives(job, options)]

    def array_submit_argv(self, dispatcher: str) -> list[str]:
        return self.submit_argv_of(dispatcher)

    def element_batch_id(self, array_id: str, index: int) -> str:
        return f"{array_id}[{index}]"

    def max_array_size_script(self) -> str:
        return "bparams -a | awk '$1 == \"MAX_JOB_ARRAY_SIZE\" { print $3 }'"

    def _directives(self, job: Job, options: dict[str, Any]) -> list[str]:
        """The #BSUB lines of a job's resources and options (not its name or files)."""
        lines = [f"#BSUB -n {job.cores}"]
        if job.cores > 1:
            # -n alone may spread the slots over hosts; kong's cores are one process's
            lines.append('#BSUB -R "span[hosts=1]"')
        if options.get("queue"):
            lines.append(f"#BSUB -q {_word(options['queue'])}")
        if options.get("project"):
            lines.append(f"#BSUB -P {_word(options['project'])}")
        if options.get("walltime") is not None:
            minutes = walltime_minutes(options["walltime"])
            lines.append(f"#BSUB -W {minutes // 60}:{minutes % 60:02d}")
        memory = job.memory if job.memory is not None else options.get("memory")
        if memory is not None:
            # -M is the limit; rusage reserves it so the scheduler picks a host with room.
            # Units spelled out: without them LSF reads LSF_UNIT_FOR_LIMITS (often KB).
            lines.append(f"#BSUB -M {int(memory)}MB")
            lines.append(f'#BSUB -R "rusage[mem={int(memory)}MB]"')
        if options.get("resources"):
            lines.append(f"#BSUB -R {_word(options['resources'])}")
        for line in options.get("extra") or []:
            lines.append(line if line.lstrip().startswith("#") else f"#BSUB {line}")
        return lines

    def lsf_log(self, job: Job) -> str:
        """The -o file: LSF's job report, and what runs before the job script's exec."""
        return f"{self.job_paths(job).log_dir}/lsf.txt"

    def submit_argv(self, job: Job, script: str, token: str) -> list[str]:
        return self.submit_argv_of(script)

    @staticmethod
    def submit_argv_of(script: str) -> list[str]:
        # bsub reads #BSUB lines only from a script given on its stdin
        return ["sh", "-c", 'exec bsub < "$1"', "sh", script]

    def parse_submit(self, output: str) -> str:
        return parse_bsub(output)

    def kill_argv(self, batch_id: str) -> list[str]:
        return ["bkill", batch_id]

    def kill_token_argv(self, token: str) -> list[str]:
        # job id 0 with -J: every job of that name (a bare -J kills only the newest);
        # an element's token, name[4], names that element of array "name" alone
        return ["bkill", "-J", token, "0"]

    def kill_many_argv(self, batch_ids: Sequence[str]) -> list[str]:
        return ["bkill", *batch_ids]

    def kill_many_answers(self, batch_ids: Sequence[str], rc: int,
                          output: str) -> dict[str, tuple[int, str]]:
        """bkill's line about each job or element (its lines joined on one): "Job <12>
        is being terminated", "Job <12>: Job has already finished", "Job <12>: No
        matching job found", ... whatever its exit code (255 when one was not killed)."""
        return {m.group(1): (0 if "being terminated" in m.group(2) else 1,
                             f"Job <{m.group(1)}>: {m.group(2)}")
                for m in _BKILL_ANSWER.finditer(output)}

    # -- asking LSF -----------------------------------------------------------------

    #: the kong agent's shared view (kong.remote.statusview) judges _QUERY's answer as
    #: _run does; mbatchd's "Cannot connect to LSF. Please wait" makes it back off
    STATUS_VERDICT: ClassVar[Verdict | None] = Verdict(
        done_line="KONG-END", error_prefix="ERR|",
        throttle_words=("cannot connect to lsf", "please wait", "too many", "try again"))

    def status_command(self) -> list[str] | None:
        return self.sh_argv(_QUERY, FIELDS, DELIMITER, "json" if self._json else "plain")

    def parse_status(self, result: CommandResult) -> dict[str, SchedulerInfo]:
        return self._parse_query(self._checked(result))

    def query(self, jobs: Sequence[Job]) -> dict[str, SchedulerInfo]:
        ids = "".join(f"{j.batch_job_id}\n" for j in jobs if j.batch_job_id)
        if not ids:
            return {}
        output = self._run(_QUERY, ids, FIELDS, DELIMITER, "json" if self._json else "plain")
        return self.own_infos(self._parse_query(output), jobs)

    def _parse_query(self, output: str) -> dict[str, SchedulerInfo]:
        infos: dict[str, SchedulerInfo] = {}
        for kind, text in _sections(output):
            if kind == "KONG-JSON":
                infos.update(parse_bjobs_json(text))
            elif kind == "KONG-PLAIN":
                plain = parse_bjobs_plain(text)
                if plain and self._json:
                    self._json = False  # this bjobs has no -json: stop asking for it
                infos.update(plain)
            elif kind == "KONG-BHIST":
                for batch_id, info in parse_bhist(text).items():
                    infos.setdefault(batch_id, info)
        return infos

    def own_infos(
        self, infos: dict[str, SchedulerInfo], jobs: Sequence[Job]
    ) -> dict[str, SchedulerInfo]:
        expected = {
            j.batch_job_id: self.token(j, int((j.data or {}).get("attempt") or 1)) for j in jobs
        }
        by_id = {j.batch_job_id: j for j in jobs}
        for batch_id, info in list(infos.items()):
            name = info.extra.pop("lsf_job_name", None)
            if name and batch_id in expected and not self._own_name(
                    name, batch_id, expected[batch_id]):
                # LSF hands ids out again after MAX_JOBID: this one is another job
                del infos[batch_id]
            elif "usage" in info.extra and batch_id in by_id:
                job = by_id[batch_id]  # bjobs -o prints no slots or request: kong's own
                info.extra["usage"].setdefault("cpus", job.cores)
                if job.memory is not None:
                    info.extra["usage"].setdefault("req_mem_mb", float(job.memory))
        return infos

    def _own_name(self, name: str, batch_id: str, token: str) -> bool:
        """Whether LSF's name of ``batch_id`` is the job's: its token, or for an
        element (``123[4]``) the name of element 4 of an array of this kong's."""
        element = self.split_element_id(batch_id)
        if element is None:
            return name == token
        named = parse_element_token(name)
        return (named is not None and named[1] == element[1]
                and named[0].startswith(f"kong-{self.install_id}-"))

    def find_tokens(self, tokens: Sequence[str]) -> TokenLookup:
        if not tokens:
            return TokenLookup({})
        # an element's token is found by its array's name: one bsub took all or none
        wanted = set(self._names(tokens))
        output = self._run(_NAMES, "", self.submit_lock, DELIMITER)
        busy = self.busy_message() if BUSY in output.splitlines() else None
        found: dict[str, str] = {}
        for kind, text in _sections(output):
            if kind == "KONG-JSON":
                rows = [(r.get("JOBID", ""), r.get("JOB_NAME", "")) for r in json_records(text)]
            else:
                rows = [
                    (parts[0], parts[1])
                    for line in text.splitlines()
                    if len(parts := line.split(DELIMITER, 1)) == 2
                ]
            for batch_id, job_name in rows:
                # an element is listed as its array's id with the name "name[4]"
                element = parse_element_token(job_name)
                name = job_name if element is None else element[0]
                # the newest submission wins, as ids grow
                if name in wanted and batch_id.isdigit() and (
                    name not in found or int(batch_id) > int(found[name])
                ):
                    found[name] = batch_id
        # bjobs -a lists a finished job for CLEAN_PERIOD (an hour by default) only
        return TokenLookup(self._elements(tokens, found), busy=busy,
                           history_seconds=CLEAN_PERIOD)

    def _run(self, script: str, stdin: str, *args: str) -> str:
        """Run one of the scripts above; its answer counts only when it ran to the end.
        LSF's "Cannot connect to LSF. Please wait ..." (mbatchd busy) is retried."""
        for delay in (*NOT_READY_RETRIES, None):
            result = self.transport.run(self.sh_argv(script, *args), stdin=stdin.encode())
            text = result.text()
            errors = [line[4:].strip() for line in text.splitlines() if line.startswith("ERR|")]
            if errors and delay is not None and _not_ready(errors[0]):
                time.sleep(delay)
                continue
            return self._checked(result)
        raise AssertionError("unreachable")

    def _checked(self, result: CommandResult) -> str:
        text = result.text()
        errors = [line[4:].strip() for line in text.splitlines() if line.startswith("ERR|")]
        if errors:
            raise DriverError(f"LSF on {self.transport.label}: {errors[0]}")
        if not text.rstrip().endswith("KONG-END"):
            err = result.stderr.decode(errors="replace").strip().splitlines()
            raise DriverError(
                f"LSF query on {self.transport.label} failed: "
                f"{err[-1] if err else f'exit code {result.exit_code}'}"
            )
        return text


def _not_ready(message: str) -> bool:
    lower = message.lower()
    return "cannot connect to lsf" in lower or "please wait" in lower


def _sections(output: str) -> Iterator[tuple[str, str]]:
    """Split the remote scripts' output at their KONG-* marker lines."""
    kind: str | None = None
    lines: list[str] = []
    for line in output.splitlines():
        if line in ("KONG-JSON", "KONG-PLAIN", "KONG-BHIST", "KONG-END"):
            if kind is not None:
                yield kind, "\n".join(lines)
            kind, lines = line, []
        elif kind is not None:
            lines.append(line)
    if kind is not None:
        yield kind, "\n".join(lines)


def _word(value: str) -> str:
    """One #BSUB argument. LSF splits #BSUB lines like a shell; IBM's examples quote
    with double quotes (``#BSUB -R "span[hosts=1]"``), so those come first."""
    text = str(value)
    if text and re.fullmatch(r"[\w./:=+,@%-]+", text):
        return text
    if not re.search(r'["\\$`]', text):
        return f'"{text}"'
    return shlex.quote(text)
