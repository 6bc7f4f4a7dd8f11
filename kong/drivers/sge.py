"""The Grid Engine driver (Son of Grid Engine 8.1, Open Grid Scheduler, Univa/Altair
Grid Engine's common ground): ``qsub -terse``, ``qstat -xml`` for live jobs and
``qacct -j`` for finished ones, ``qdel``, all in bulk through the transport.

Mostly data over ``BatchDriver``: the ``#$`` header, the state letters, the parsers
of what Grid Engine prints, and one remote script (``templates/sge_query.sh``) that
answers a status refresh or a token look-up in one round trip.

Grid Engine writes a finished job's accounting record some seconds after the job
has left ``qstat`` (``reporting_params accounting_flush_time``, 15 s by default).
A job in neither is therefore UNKNOWN, never finished: it is finished when
``qacct`` has its record, with its exit status.

Profile options (each also a per-job override in ``create_job(...)``): queue
(``-q``), pe (parallel environment: ``-pe PE <cores>``; needed for cores > 1),
memory (``"4G"`` or MB: the job's total memory, requested per slot as
``memory_resources``, default ``["h_vmem"]``, e.g. ``["h_vmem", "mem_free"]``),
project (``-P``), cores (the default of ``create_job``'s ``cores``), plus the
batch options walltime (``-l h_rt``), extra, scratch_dir and poll_interval.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from kong.drivers.base import QueueLimits, SchedulerInfo, TokenLookup
from kong.drivers.batch import BATCH_OPTIONS, BUSY, BatchDriver, walltime_seconds
from kong.drivers.sge_limits import parse_queues
from kong.drivers.sh import load
from kong.errors import DriverError
from kong.model.job import Job, JobStatus
from kong.usage import size_mb

log = logging.getLogger(__name__)

# The fallback without accounting is announced once per process and cluster.
_warned: set[str] = set()
_warned_lock = threading.Lock()

_QUERY = load("sge_query.sh")

#: what qdel says of one id (see SGEDriver.kill_many_answers)
_QDEL_ANSWER = re.compile(r"has registered the job (\d+) for deletion"
                          r"|has deleted job (\d+)"
                          r"|job (\d+) is already in deletion"
                          r'|denied: job "(\d+)" does not exist')
_FIND = load("wait_for_submits.sh", "sge_query.sh")

#: Grid Engine's state letters (qstat's ``state``), tested in this order: the first
#: letter present decides. E: the job is in error and will not run until an
#: administrator clears it; r/t running or transferring; s/S/T suspended (still
#: holding its slots); d being deleted, R restarted, q/w/h waiting or held.
STATE_LETTERS: tuple[tuple[str, JobStatus], ...] = (
    ("E", JobStatus.FAILED),
    ("r", JobStatus.RUNNING),
    ("t", JobStatus.RUNNING),
    ("s", JobStatus.RUNNING),
    ("S", JobStatus.RUNNING),
    ("T", JobStatus.RUNNING),
    ("d", JobStatus.SUBMITTED),
    ("R", JobStatus.SUBMITTED),
    ("h", JobStatus.SUBMITTED),
    ("q", JobStatus.SUBMITTED),
    ("w", JobStatus.SUBMITTED),
)

#: the state word of a job that left qstat and has no accounting record yet
ACCOUNTING_PENDING = "ACCOUNTING_PENDING"

_MEMORY = re.compile(r"^(\d+)([KMGT]?)$", re.IGNORECASE)
_MEMORY_FACTORS = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
# Characters Grid Engine refuses in a job name (qsub(1), -N) or that kong uses
# in the directives; kong's tokens contain none of them.
_BAD_NAME = re.compile(r"[\s/:@\\*?]")


class SGEDriver(BatchDriver):
    name = "sge"
    submit_tool = "qsub"
    # qdel of a job that ended (or never was): 'denied: job "12" does not exist'
    KILL_GONE = ("does not exist",)
    OPTIONS: ClassVar[dict[str, type | tuple[type, ...]]] = {
        **BATCH_OPTIONS,
        "queue": str,
        "pe": str,
        "memory": (str, int),
        "memory_resources": list,
        "project": str,
        "cores": int,
    }

    def check_options(self, options: dict[str, Any]) -> None:
        super().check_options(options)
        memory = options.get("memory")
        if memory is not None:
            memory_mb(memory)
        resources_ = options.get("memory_resources")
        if resources_ is not None and not all(
            isinstance(r, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", r) for r in resources_
        ):
            raise DriverError(
                "option 'memory_resources' of driver sge: expected a list of resource "
                f"names such as h_vmem or mem_free, got {resources_!r}"
            )
        cores = options.get("cores")
        if isinstance(cores, int) and cores < 1:
            raise DriverError("option 'cores' of driver sge: must be at least 1")
        for key in ("queue", "pe", "project"):
            value = options.get(key)
            if isinstance(value, str) and (not value.strip() or re.search(r"\s", value.strip())):
                raise DriverError(f"option {key!r} of driver sge: expected one word, got {value!r}")

    def new_job(
        self,
        command: str,
        cores: int | None = None,
        memory: int | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """As ``BatchDriver.new_job``; more than one core needs a parallel
        environment (option ``pe``): Grid Engine has no other way to grant slots."""
        merged = {**self.profile.options, **options}
        wanted = cores if cores is not None else int(merged.get("cores") or 1)
        if isinstance(wanted, int) and wanted > 1 and not merged.get("pe"):
            raise DriverError(
                f"{wanted} cores on Grid Engine need a parallel environment: "
                "set option 'pe' (see `qconf -spl` on the cluster)"
            )
        return super().new_job(command, cores=cores, memory=memory, cwd=cwd, env=env,
                               **options)

    def queue_of(self, job: Job) -> str:
        return str(self.job_options(job).get("queue") or "")

    def queue_limits(self) -> dict[str, QueueLimits]:
        """Every queue's h_rt, h_vmem and slots, in one round trip."""
        return parse_queues(self.run_script(load("sge_queues.sh")))

    # -- what BatchDriver needs ---------------------------------------------------------

    def header_lines(self, job: Job, options: dict[str, Any], token: str) -> list[str]:
        paths = self.job_paths(job)
        memory = job.memory if job.memory is not None else options.get("memory")
        return directive_lines(
            token=token,
            stdout=paths.stdout,
            stderr=paths.stderr,
            cores=job.cores,
            pe=options.get("pe"),
            queue=options.get("queue"),
            project=options.get("project"),
            walltime=options.get("walltime"),
            memory=memory,
            memory_resources=options.get("memory_resources") or ["h_vmem"],
            extra=options.get("extra") or (),
        )

    def submit_argv(self, job: Job, script: str, token: str) -> list[str]:
        return ["qsub", "-terse", script]

    def parse_submit(self, output: str) -> str:
        return parse_qsub(output)

    def kill_argv(self, batch_id: str) -> list[str]:
        return ["qdel", batch_id]

    def kill_token_argv(self, token: str) -> list[str]:
        # by name, the user's own jobs only ("The job NAME of user(s) kong does not exist")
        return ["qdel", token]

    def kill_many_argv(self, batch_ids: Sequence[str]) -> list[str]:
        # qdel takes many ids (and deletes them in that order), as words or a comma list
        return ["qdel", *batch_ids]

    def kill_many_answers(self, batch_ids: Sequence[str], rc: int,
                          output: str) -> dict[str, tuple[int, str]]:
        """qdel's line about each id (its lines joined on one): "kong has registered the
        job 12 for deletion" (running), "kong has deleted job 12" (pending), "job 12 is
        already in deletion", 'denied: job "12" does not exist'; exit 1 when one was
        not deleted, so each line decides for its own id."""
        said: dict[str, tuple[int, str]] = {}
        for m in _QDEL_ANSWER.finditer(output):
            batch_id = next(g for g in m.groups() if g is not None)
            said[batch_id] = (1 if m.group(0).startswith("denied") else 0, m.group(0))
        return said

    def query(self, jobs: Sequence[Job]) -> dict[str, SchedulerInfo]:
        ids = [str(j.batch_job_id) for j in jobs if j.batch_job_id]
        if not ids:
            return {}
        answer = self._run(False, ids)
        infos = {batch_id: info for batch_id, (_, info) in answer.live.items()}
        if answer.accounting is None:
            # qacct cannot answer: leave the rest out, so that their exit_code files
            # speak for them (as for Slurm without accounting).
            self._warn_no_accounting(answer.no_accounting)
            return infos
        for batch_id in ids:
            if batch_id in infos:
                continue
            records = [r for r in answer.accounting if r.get("jobnumber") == batch_id]
            if records:
                infos[batch_id] = qacct_info(records[-1])
            else:
                infos[batch_id] = SchedulerInfo(
                    JobStatus.UNKNOWN, ACCOUNTING_PENDING,
                    reason="not in qstat and not (yet) in qacct",
                )
        return infos

    def find_tokens(self, tokens: Sequence[str]) -> TokenLookup:
        if not tokens:
            return TokenLookup({})
        answer = self._run(True, tokens)
        wanted = set(tokens)
        named = [(name, batch_id) for batch_id, (name, _) in answer.live.items()]
        named += [(name, batch_id) for batch_id, (name, _) in answer.ended.items()]
        named += [(r.get("jobname", ""), r.get("jobnumber", "")) for r in answer.accounting or ()]
        found: dict[str, str] = {}
        for name, batch_id in named:
            if name not in wanted or not batch_id.isdigit():
                continue
            # The same token twice would be a double submission; kong follows the newest.
            if name not in found or int(batch_id) > int(found[name]):
                found[name] = batch_id
        # qacct keeps every record; without it an ended job is a zombie for a while
        history = None if answer.accounting is not None else 0.0
        busy = self.busy_message() if answer.busy else None
        return TokenLookup(found, busy=busy, history_seconds=history)

    # -- helpers ------------------------------------------------------------------------

    def _warn_no_accounting(self, why: str) -> None:
        key = self.transport.label
        with _warned_lock:
            if key in _warned:
                return
            _warned.add(key)
        log.warning(
            "kong: sge on %s: qacct cannot read the accounting (%s); finished jobs are "
            "read from their exit_code files instead", key, why.strip() or "no reason given"
        )

    def _run(self, by_name: bool, stdin_lines: Sequence[str]) -> QueryAnswer:
        stdin = "".join(f"{line}\n" for line in stdin_lines).encode()
        pattern = f"kong-{self.install_id}-*"
        mode = "jobname" if by_name else "jobnumber"
        result = self.transport.run(
            self.sh_argv(_FIND if by_name else _QUERY, self.submit_lock, mode, pattern),
            stdin=stdin,
        )
        try:
            return parse_query_output(result.text())
        except DriverError as exc:
            err = result.stderr.decode(errors="replace").strip().splitlines()
            detail = err[-1] if err else f"exit code {result.exit_code}"
            raise DriverError(f"sge on {self.transport.label}: {exc} ({detail})") from None


# -- pure functions: directives, parsers (tested on real and documented output) ----------


def memory_mb(value: str | int) -> int:
    """Megabytes of ``4096``, ``"4096"``, ``"512M"``, ``"4G"``, ``"1T"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise DriverError(f"option 'memory' of driver sge: must be positive, got {value}")
        return value
    match = _MEMORY.match(str(value).strip())
    if not match:
        raise DriverError(
            f"option 'memory' of driver sge: expected MB or a size like 4G, got {value!r}"
        )
    mb = math.ceil(int(match.group(1)) * _MEMORY_FACTORS[match.group(2).upper()])
    if mb < 1:
        raise DriverError(f"option 'memory' of driver sge: must be positive, got {value!r}")
    return mb


def h_rt(walltime: str | int) -> str:
    """kong's walltime (minutes or [D-]HH:MM:SS) as Grid Engine's ``HH:MM:SS``, to the
    second (Grid Engine's execd keeps h_rt to within a few seconds)."""
    seconds = int(walltime_seconds(walltime))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _path(path: str) -> str:
    # qsub -o/-e take [[host]:]path: a colon in the path needs an empty host first.
    # Grid Engine expands $JOB_ID etc. in these paths; kong's paths have no '$'.
    if ":" in path:
        path = ":" + path
    return f'"{path}"' if any(c.isspace() for c in path) else path


def directive_lines(
    *,
    token: str,
    stdout: str,
    stderr: str,
    cores: int,
    pe: str | None,
    queue: str | None,
    project: str | None,
    walltime: str | int | None,
    memory: str | int | None,
    memory_resources: Sequence[str],
    extra: Sequence[str],
) -> list[str]:
    """The ``#$`` lines of a job script. kong's script is POSIX sh; ``-S`` makes Grid
    Engine run it so even where a queue's shell is csh (the default ``shell_start_mode
    posix_compliant`` ignores the ``#!`` line)."""
    if _BAD_NAME.search(token):
        raise DriverError(f"not a valid Grid Engine job name: {token!r}")
    if cores > 1 and not pe:
        raise DriverError(f"{cores} cores on Grid Engine need a parallel environment: set 'pe'")
    lines = [
        f"-N {token}",
        "-S /bin/sh",
        f"-o {_path(stdout)}",
        f"-e {_path(stderr)}",
        "-r n",  # kong resubmits itself; a rerun would write the logs twice
    ]
    if pe:
        lines.append(f"-pe {pe} {cores}")
    if queue:
        lines.append(f"-q {queue}")
    if project:
        lines.append(f"-P {project}")
    if walltime is not None:
        lines.append(f"-l h_rt={h_rt(walltime)}")
    if memory is not None:
        # Grid Engine counts memory per slot; kong's memory is the job's.
        per_slot = math.ceil(memory_mb(memory) / max(cores, 1))
        lines.append("-l " + ",".join(f"{r}={per_slot}M" for r in memory_resources))
    header = [f"#$ {line}" for line in lines]
    for line in extra:
        # "-l gpu=1" is shorthand for "#$ -l gpu=1"
        header.append(f"#$ {line}" if line.lstrip().startswith("-") else line)
    return header


def parse_qsub(output: str) -> str:
    """The job id of ``qsub -terse`` (``123``, or ``123.1-10:1`` for an array),
    warnings around it."""
    for word in reversed(output.split()):
        batch_id = word.split(".", 1)[0]
        if batch_id.isdigit():
            return batch_id
    raise DriverError(f"qsub printed no job id: {output.strip()[:200]!r}")


def qstat_status(state: str) -> JobStatus:
    """kong's status of qstat's state letters (``qw``, ``r``, ``hqw``, ``Eqw``, ``dr``)."""
    for letter, status in STATE_LETTERS:
        if letter in state:
            return status
    return JobStatus.UNKNOWN


def parse_qstat_xml(text: str) -> dict[str, tuple[str, SchedulerInfo]]:
    """``qstat -xml``: (job name, info) by job id, pending and running jobs alike."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise DriverError(f"unreadable qstat -xml output: {exc}") from None
    jobs: dict[str, tuple[str, SchedulerInfo]] = {}
    for item in root.iter("job_list"):
        batch_id = (item.findtext("JB_job_number") or "").strip()
        if not batch_id:
            continue
        state = (item.findtext("state") or "").strip()
        queue = (item.findtext("queue_name") or "").strip()
        status = qstat_status(state)
        extra: dict[str, Any] = {
            "node": queue.partition("@")[2] or None,
            "submit_time": _text(item.findtext("JB_submission_time")),
            "start_time": _text(item.findtext("JAT_start_time")),
            "end_time": None,
        }
        reason = None
        if "E" in state:
            reason = f"Grid Engine holds the job in error state {state} (qstat -j {batch_id})"
        name = (item.findtext("JB_name") or "").strip()
        jobs[batch_id] = (name, SchedulerInfo(status, state, reason=reason, extra=extra))
    return jobs


def parse_qacct(text: str) -> list[dict[str, str]]:
    """``qacct -j`` output: one dict (key -> value, as printed) per record."""
    records: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if re.fullmatch(r"=+", line.strip()):
            current = {}
            records.append(current)
            continue
        if current is None or not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        current[key] = value.strip()
    return [r for r in records if r]


def _failed_code(failed: str) -> int:
    # "0", "100 : assumedly after job", "37  : qmaster enforced h_rt limit"
    head = failed.split(":", 1)[0].strip()
    return int(head) if head.isdigit() else -1


def qacct_info(record: dict[str, str]) -> SchedulerInfo:
    """A finished job's info from its accounting record. ``failed`` non-zero means
    Grid Engine itself ended or could not start the job (limits, qdel, a start
    error); ``exit_status`` is the script's exit code (128 + signal if killed)."""
    failed = record.get("failed", "0")
    code = _failed_code(failed)
    exit_text = record.get("exit_status", "").split()[0] if record.get("exit_status") else ""
    exit_code = int(exit_text) if exit_text.lstrip("-").isdigit() else None
    if code != 0:
        status, state = JobStatus.FAILED, "FAILED"
        reason: str | None = f"failed {failed}"
    elif exit_code == 0:
        status, state, reason = JobStatus.COMPLETED, "COMPLETED", None
    else:
        status, state, reason = JobStatus.FAILED, "EXITED", None
    extra: dict[str, Any] = {
        "node": _text(record.get("hostname")),
        "submit_time": qacct_time(record.get("qsub_time")),
        "start_time": qacct_time(record.get("start_time")),
        "end_time": qacct_time(record.get("end_time")),
        "usage": qacct_usage(record),
    }
    return SchedulerInfo(status, state, exit_code=exit_code, reason=reason, extra=extra,
                         end_reason=sge_end_reason(failed, exit_code))


def sge_end_reason(failed: str, exit_code: int | None) -> str | None:
    """Why Grid Engine ended a job: its ``failed`` text names the limit it enforced
    (``37 : qmaster enforced h_rt limit``); otherwise the exit status (128+n: signal n)."""
    text = failed.lower()
    if _failed_code(failed) != 0:
        if "_rt" in text or "runtime" in text:
            return "TIMEOUT"
        if "vmem" in text or "memory" in text or "rss" in text:
            return "OUT_OF_MEMORY"
    if exit_code is not None and 128 < exit_code < 160:
        return f"SIGNAL({exit_code - 128})"
    return None if exit_code is None else f"EXIT({exit_code})"


def qacct_usage(record: dict[str, str]) -> dict[str, Any]:
    """ru_wallclock and cpu (seconds), the peak RSS (``ru_maxrss 4.402KB``; else
    maxvmem, the virtual peak), slots. A figure of 0 is one qacct did not record."""
    usage: dict[str, Any] = {"source": "qacct"}
    for key, field in (("elapsed", "ru_wallclock"), ("cpu_time", "cpu")):
        text = (record.get(field) or "").split()
        with contextlib.suppress(IndexError, ValueError):
            usage[key] = float(text[0].rstrip("s"))
    for field in ("ru_maxrss", "maxrss", "maxvmem"):
        peak = size_mb(record.get(field), default_unit="B")
        if peak:
            usage["max_rss_mb"] = peak
            break
    slots = (record.get("slots") or "").strip()
    if slots.isdigit() and int(slots) > 0:
        usage["cpus"] = int(slots)
    return usage


def qacct_time(value: str | None) -> str | None:
    """qacct's ``Tue Dec  1 21:00:01 2026`` (ctime) as ISO 8601; as is if not ctime."""
    text = _text(value)
    if text is None or text.startswith("-/"):  # "-/-": never started
        return None
    # 8.1.9 adds milliseconds: "12/01/2026 21:00:01.123"
    for fmt in ("%a %b %d %H:%M:%S %Y", "%m/%d/%Y %H:%M:%S.%f", "%m/%d/%Y %H:%M:%S"):
        try:
            return datetime.strptime(" ".join(text.split()), fmt).isoformat()
        except ValueError:
            continue
    return text


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value if value and value not in ("NONE", "undefined") else None


class QueryAnswer:
    """What ``sge_query.sh`` said: live jobs (qstat) and accounting records (qacct;
    None when qacct could not read the accounting)."""

    def __init__(
        self,
        live: dict[str, tuple[str, SchedulerInfo]],
        accounting: list[dict[str, str]] | None,
        no_accounting: str = "",
        ended: dict[str, tuple[str, SchedulerInfo]] | None = None,
        busy: bool = False,
    ) -> None:
        self.busy = busy  # a submit loop of this kong still ran (find mode)
        self.live = live
        self.accounting = accounting
        self.no_accounting = no_accounting  # qacct's complaint when accounting is None
        self.ended = ended or {}  # qstat -s z: jobs that ended lately (token look-up only)


def parse_query_output(text: str) -> QueryAnswer:
    """Split the answer of ``templates/sge_query.sh`` and parse its parts."""
    lines = text.splitlines()
    for line in lines:
        if line.startswith("ERR|"):
            raise DriverError(line[4:].strip())
    if not lines or lines[-1] != "END":
        raise DriverError("the Grid Engine query was cut short")
    qstat: list[str] = []
    qacct: list[str] = []
    zombies: list[str] = []
    section: str | None = None
    accounting: list[dict[str, str]] | None = []
    why = ""
    busy = False
    for line in lines[:-1]:
        if line in ("QSTAT", "QACCT", "ZOMBIE") and section is None:
            section = line
        elif line in ("ENDQSTAT", "ENDQACCT", "ENDZOMBIE"):
            section = None
        elif section == "ZOMBIE":
            zombies.append(line)
        elif section == "QSTAT":
            qstat.append(line)
        elif section == "QACCT":
            qacct.append(line)
        elif line == BUSY and section is None:
            busy = True
        elif line.startswith("NOACCT|"):
            accounting, why = None, line[len("NOACCT|"):]
    live = parse_qstat_xml("\n".join(qstat)) if qstat else {}
    if accounting is not None:
        accounting = parse_qacct("\n".join(qacct))
    ended = parse_qstat_xml("\n".join(zombies)) if "".join(zombies).strip() else {}
    return QueryAnswer(live, accounting, why, ended, busy)
