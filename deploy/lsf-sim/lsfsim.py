#!/usr/bin/env python3
"""LSF SIMULATOR: bsub, bjobs, bkill, bhist and bparams of IBM Spectrum LSF 10.1, simulated.

This is NOT IBM Spectrum LSF. It is a stand-in for tests, because real LSF cannot be
installed here. One file serves every command: it is installed as ``bsub``,
``bjobs``, ``bkill``, ``bhist`` and ``bparams`` (symlinks) and dispatches on the name
it was run as. It prints the formats IBM documents for LSF 10.1 (see README.md for the pages)
and really runs the submitted scripts, as background processes of the calling user,
with the ``LSB_*`` environment variables LSF sets.

There is no daemon: every command first runs a scheduling pass (start pending jobs
while job slots are free), and every job's runner process runs one when its job
ends. State lives in a spool directory (``$LSF_SIM_SPOOL``, default
``/var/spool/lsf-sim``), one JSON file per job (per element of a job array: each is
scheduled, run, listed and killed on its own, under its array's job id), written
atomically under a lock, with an index of the live jobs and one of the finished by
their finish time: a command's cost grows with the live jobs (and bjobs -a's with
those finished within CLEAN_PERIOD), not with every job the simulator ever took.
Settings (``KEY=VALUE`` lines) are read from ``$LSF_SIM_CONF`` (default
``/etc/lsf-sim.conf``):

    CLUSTER=kong-sim           cluster name
    SLOTS=8                    job slots of the one execution host
    QUEUES=normal short long   queue names; the first is the default queue
    CLEAN_PERIOD=3600          seconds a finished job stays visible to bjobs
    JOB_TERMINATE_INTERVAL=10  seconds between bkill's SIGINT+SIGTERM and SIGKILL
    MINUTE=60                  seconds in a minute of bsub -W (simulator only: tests
                               shorten it to see a run limit hit quickly)
    JSON=Y                     N: bjobs refuses -json, as before LSF 10.1.0.2
    MAX_JOB_ARRAY_SIZE=1000    lsb.params: the largest index of a job array
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SPOOL = Path(os.environ.get("LSF_SIM_SPOOL", "/var/spool/lsf-sim"))
CONF = Path(os.environ.get("LSF_SIM_CONF", "/etc/lsf-sim.conf"))
FINISHED = ("DONE", "EXIT")


# -- settings and state ---------------------------------------------------------------


def settings() -> dict[str, str]:
    values = {
        "CLUSTER": "kong-sim",
        "SLOTS": "8",
        "QUEUES": "normal short long",
        "CLEAN_PERIOD": "3600",
        "JOB_TERMINATE_INTERVAL": "10",
        "MINUTE": "60",
        "JSON": "Y",
        "MAX_JOB_ARRAY_SIZE": "1000",
    }
    with contextlib.suppress(OSError):
        for line in CONF.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith("#"):
                values[key.strip()] = value.strip().strip('"')
    return values


def host() -> str:
    return socket.gethostname().split(".")[0]


def user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def jobs_dir() -> Path:
    return SPOOL / "jobs"


# The spool. A command reads the live jobs, those finished within CLEAN_PERIOD (bjobs
# -a) and the ones it is asked for by id: never every job the simulator ever took, so
# its cost does not grow with the jobs it keeps (real mbatchd keeps them in memory).
#
#   jobs/123.json     a job's record (an array element's: jobs/123_4.json), beside
#                     jobs/123.sh (its script), jobs/123.env (its environment) and,
#                     for an array, jobs/123.array (its indices, to find it by id)
#   live/123, 123_4   an empty file per unfinished job (PEND, PSUSP, RUN): what the
#                     scheduling pass, bjobs and bkill without ids read
#   finished/<n>      the stems of the jobs that finished in the minute n of the epoch,
#                     one a line: bjobs -a reads the minutes within CLEAN_PERIOD only
#
# Every write is under the lock. Readers without it (bjobs, bhist) read live/ first,
# then finished/: a job that ends in between is in one or the other (save files it
# under finished/ before it leaves live/).
FINISHED_MINUTE = 60  # seconds of finish times per file of finished/


def live_dir() -> Path:
    return SPOOL / "live"


def finished_dir() -> Path:
    return SPOOL / "finished"


@contextlib.contextmanager
def locked() -> Iterator[None]:
    SPOOL.mkdir(parents=True, exist_ok=True)
    with open(SPOOL / "lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def key(job: dict[str, Any]) -> str:
    """How LSF names one job: ``123``, or ``123[4]`` for element 4 of array 123."""
    return f"{job['id']}[{job['index']}]" if job.get("index") else str(job["id"])


def stem(job_key: str) -> str:
    """A job's name in the spool: ``123``, ``123_4`` for ``123[4]``."""
    return job_key.replace("[", "_").rstrip("]")


def key_of(job_stem: str) -> str:
    job_id, _, index = job_stem.partition("_")
    return f"{job_id}[{index}]" if index else job_id


def submission_order(job_stem: str) -> tuple[int, int]:
    job_id, _, index = job_stem.partition("_")
    return int(job_id), int(index or 0)


def _path(job_key: str) -> Path:
    return jobs_dir() / f"{stem(job_key)}.json"


def save(job: dict[str, Any]) -> None:
    """Write a job's record; file it as live, or under its finish time."""
    job_stem = stem(key(job))
    path = jobs_dir() / f"{job_stem}.json"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(job))
    tmp.rename(path)
    if job["stat"] in FINISHED:
        file_finished(job_stem, job.get("finish_time"))
        with contextlib.suppress(FileNotFoundError):
            (live_dir() / job_stem).unlink()
    else:
        live_dir().mkdir(exist_ok=True)
        (live_dir() / job_stem).touch()


def file_finished(job_stem: str, finish_time: float | None) -> None:
    """Under the minute of its finish time; a job saved again as finished (a runner
    recording the end of a job a scheduling pass gave up on) is filed again: readers
    take each job once and let its record's finish time decide."""
    finished_dir().mkdir(exist_ok=True)
    minute = int((finish_time or 0) // FINISHED_MINUTE)
    with open(finished_dir() / str(minute), "a") as fh:
        fh.write(job_stem + "\n")


def load(job_key: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(_path(job_key).read_text()))
    except (OSError, ValueError):
        return None


def _sorted(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(jobs, key=lambda j: (j["id"], j.get("index") or 0))


def live_stems() -> list[str]:
    try:
        return sorted(os.listdir(live_dir()), key=submission_order)
    except FileNotFoundError:
        return []


def live_jobs() -> list[dict[str, Any]]:
    """The unfinished jobs (and any a record now says finished), first come first."""
    return _sorted([job for s in live_stems() if (job := load(key_of(s))) is not None])


def visible_jobs(clean_period: float) -> list[dict[str, Any]]:
    """What bjobs -a lists: the unfinished jobs and those finished within CLEAN_PERIOD,
    read from live/ and the minutes of finished/ that can hold such a job."""
    jobs = {key(job): job for job in live_jobs()}
    cutoff = time.time() - clean_period
    try:
        minutes = os.listdir(finished_dir())
    except FileNotFoundError:
        minutes = []
    for minute in minutes:
        # the minute n holds finish times in [n, n + 1) minutes
        if not minute.isdigit() or (int(minute) + 1) * FINISHED_MINUTE <= cutoff:
            continue
        with contextlib.suppress(OSError):
            for job_stem in (finished_dir() / minute).read_text().split():
                job_key = key_of(job_stem)
                if job_key not in jobs and (job := load(job_key)) is not None:
                    jobs[job_key] = job
    return _sorted([job for job in jobs.values() if visible(job, clean_period)])


def jobs_of(job_id: int) -> list[dict[str, Any]]:
    """Job ``job_id``: the plain job, or every element of the array, found by id."""
    job = load(str(job_id))
    if job is not None:
        return [job]
    try:
        indices = json.loads((jobs_dir() / f"{job_id}.array").read_text())
    except (OSError, ValueError):
        return []
    return [job for index in indices if (job := load(f"{job_id}[{index}]")) is not None]


def every_job() -> list[dict[str, Any]]:
    """Every job the simulator ever took: for bhist -a without ids only (its answer is
    that long anyway)."""
    jobs = []
    for path in jobs_dir().glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            jobs.append(json.loads(path.read_text()))
    return _sorted(jobs)


_JOB_REF = re.compile(r"^(\d+)(?:\[([0-9,:\-]+)\])?$")


def parse_indices(spec: str) -> list[int] | None:
    """An index list, ``1-10:2,15``: start[-end[:step]], comma-separated, positive."""
    indices: list[int] = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:-(\d+)(?::(\d+))?)?\s*", part)
        if match is None:
            return None
        start = int(match.group(1))
        end = int(match.group(2) or start)
        step = int(match.group(3) or 1)
        if start < 1 or end < start or step < 1:
            return None
        indices.extend(range(start, end + 1, step))
    return sorted(set(indices))


def job_refs(words: list[str]) -> list[tuple[int, list[int] | None, str]] | None:
    """Job ids as bjobs, bkill and bhist take them: ``123`` (a job, or every element
    of array 123) or ``"123[4]"``, ``"123[1-3,7]"`` (elements); each with its words."""
    refs = []
    for word in words:
        match = _JOB_REF.match(word)
        if match is None:
            return None
        indices = parse_indices(match.group(2)) if match.group(2) else None
        if match.group(2) and indices is None:
            return None
        refs.append((int(match.group(1)), indices, word))
    return refs


def select(ref: tuple[int, list[int] | None, str]) -> list[dict[str, Any]]:
    """The jobs a reference names (finished or not, visible to bjobs or not)."""
    job_id, indices, _word = ref
    return [j for j in jobs_of(job_id) if indices is None or (j.get("index") or 0) in indices]


def name_matches(job: dict[str, Any], wanted: str) -> bool:
    """-J: a job's name (``*`` at the end: any rest), an array's name (every element),
    or ``name[4]``/``name[1-3]`` (those elements of array ``name``)."""
    match = re.fullmatch(r"(.*)\[([0-9,:\-]+)\]", wanted)
    if match and job.get("array") is not None:
        indices = parse_indices(match.group(2)) or []
        return job["array"] == match.group(1) and job["index"] in indices
    pattern = re.escape(wanted).replace(r"\*", ".*")
    own = job["array"] if job.get("array") is not None else job["name"]
    return re.fullmatch(pattern, own) is not None


def next_id() -> int:
    path = SPOOL / "next_id"
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):
        value = 1
    path.write_text(f"{value + 1}\n")
    return value


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie counts as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


# -- scheduling (no daemon: every command runs a pass) -----------------------------------


def live_index() -> list[dict[str, Any]]:
    """The live jobs, under the lock, with live/ put right where a record was changed
    or removed behind the simulator's back: a record gone takes its job out of live/,
    one that says finished moves it under its finish time (bjobs -a still lists it)."""
    jobs = []
    for job_stem in live_stems():
        job = load(key_of(job_stem))
        if job is None:
            if not (jobs_dir() / f"{job_stem}.json").exists():
                with contextlib.suppress(FileNotFoundError):
                    (live_dir() / job_stem).unlink()
            continue  # else being rewritten in place: the next pass sees it
        if job["stat"] in FINISHED:
            file_finished(job_stem, job.get("finish_time"))
            with contextlib.suppress(FileNotFoundError):
                (live_dir() / job_stem).unlink()
            continue
        jobs.append(job)
    return _sorted(jobs)


def schedule() -> None:
    slots = int(settings()["SLOTS"])
    with locked():
        jobs = live_index()
        for job in jobs:
            # A runner that died without recording its job's end: LSF would lose
            # contact with the job; here it has certainly ended.
            if job["stat"] == "RUN" and job.get("runner_started") and not pid_alive(
                job.get("runner_pid")
            ):
                job.update(stat="EXIT", finish_time=time.time(), exit_code=None,
                           exit_reason="TERM_EXTERNAL_SIGNAL: job killed by a signal "
                           "external to LSF")
                save(job)
        used = sum(j["slots"] for j in jobs if j["stat"] == "RUN")
        # an array's job slot limit (-J "name[1-9]%2"): its running elements
        running: dict[int, int] = {}
        for job in jobs:
            if job["stat"] == "RUN":
                running[job["id"]] = running.get(job["id"], 0) + 1
        for job in jobs:
            if job["stat"] != "PEND":
                continue  # PSUSP: held (bsub -H) until released
            limit = job.get("slot_limit")
            if limit and running.get(job["id"], 0) >= limit:
                continue  # the array's other elements wait; other jobs may go
            if used + job["slots"] > slots and used > 0:
                break  # first come, first served: no backfill
            used += job["slots"]
            running[job["id"]] = running.get(job["id"], 0) + 1
            job.update(stat="RUN", start_time=time.time(), exec_host=host(),
                       runner_started=True)
            save(job)
            runner = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--run-job", key(job)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,
            )
            job["runner_pid"] = runner.pid
            save(job)


# -- formats ---------------------------------------------------------------------------


def fmt_time(ts: float | None, suffix: str = "") -> str:
    """bjobs' short time: ``Dec 28 19:56`` (day padded with a space)."""
    if ts is None:
        return ""
    return time.strftime("%b %e %H:%M", time.localtime(ts)) + suffix


def fmt_long_time(ts: float) -> str:
    """bhist -l / bjobs -l event time: ``Thu Aug  1 12:43:25``."""
    return time.strftime("%a %b %e %H:%M:%S", time.localtime(ts))


def field_value(job: dict[str, Any], name: str) -> str:
    stat = job["stat"]
    if name == "jobid":
        return str(job["id"])  # an element's too: its index is the field jobindex
    if name == "jobindex":
        return str(job.get("index") or 0)
    if name == "stat":
        return str(stat)
    if name == "user":
        return str(job["user"])
    if name == "queue":
        return str(job["queue"])
    if name in ("job_name", "name"):
        return str(job["name"])
    if name in ("proj_name", "project", "proj"):
        return str(job.get("project") or "default")
    if name == "from_host":
        return str(job["from_host"])
    if name == "exec_host":
        if not job.get("exec_host"):
            return ""
        return ":".join([job["exec_host"]] * job["slots"])
    if name == "exit_code":
        code = job.get("exit_code")
        # LSF leaves EXIT_CODE empty for a job that ended well
        return "" if code in (None, 0) or stat != "EXIT" else str(code)
    if name == "exit_reason":
        return str(job.get("exit_reason") or "")
    if name == "submit_time":
        return fmt_time(job["submit_time"])
    if name == "start_time":
        return fmt_time(job.get("start_time"))
    if name == "finish_time":
        if stat not in FINISHED:
            return ""
        return fmt_time(job.get("finish_time"), " L" if job.get("runlimit") else "")
    if name in ("nreq_slot", "slots", "nalloc_slot"):
        return str(job["slots"])
    if name == "output_file":
        return str(job.get("output") or "")
    if name == "error_file":
        return str(job.get("error") or "")
    if name in ("sub_cwd", "cwd"):
        return str(job["cwd"])
    if name == "runtimelimit":
        limit = job.get("runlimit")
        return "" if not limit else f"{limit // 60:02d}:{limit % 60:02d}:00"
    if name == "pend_reason":
        return "Job slot limit reached" if stat == "PEND" else ""
    if name == "pids":
        return str(job.get("job_pid") or "")
    if name == "command":
        return str(job["command"])
    # usage, as LSF prints it (written by run_job from the job's rusage at its end)
    if name == "cpu_used":
        cpu = job.get("cpu_used")
        return "" if cpu is None else f"{cpu:.1f} second(s)"
    if name == "max_mem":
        kb = job.get("max_mem_kb")
        return "" if kb is None else f"{kb / 1024:.0f} Mbytes"
    if name == "run_time":
        start, end = job.get("start_time"), job.get("finish_time") or time.time()
        return "" if start is None else f"{max(0, int(end - start))} second(s)"
    raise KeyError(name)


FIELD_NAMES = frozenset({
    "jobid", "jobindex", "stat", "user", "queue", "job_name", "name", "proj_name", "project",
    "proj",
    "from_host", "exec_host", "exit_code", "exit_reason", "submit_time", "start_time",
    "finish_time", "nreq_slot", "slots", "nalloc_slot", "output_file", "error_file", "sub_cwd",
    "cwd", "runtimelimit", "pend_reason", "pids", "command", "cpu_used", "max_mem",
    "run_time",
})


def json_key(name: str) -> str:
    aliases = {"name": "JOB_NAME", "project": "PROJ_NAME", "proj": "PROJ_NAME",
               "cwd": "SUB_CWD", "slots": "NREQ_SLOT"}
    return aliases.get(name, name.upper())


def json_text(value: str) -> str:
    # LSF escapes '/' in its JSON output (e.g. "EXEC_CWD":"\/home\/user")
    return json.dumps(value).replace("/", "\\/")


# -- bsub ------------------------------------------------------------------------------

# options that take a value; the rest of the known options are flags
BSUB_VALUE_OPTS = {
    "-J", "-o", "-oo", "-e", "-eo", "-q", "-P", "-n", "-W", "-M", "-R", "-cwd", "-G", "-app",
    "-m", "-u", "-b", "-w", "-E", "-Ep", "-L", "-sla", "-g", "-gpu", "-We", "-c", "-D", "-S",
    "-F", "-C", "-v", "-Jd", "-a", "-ext", "-Lp", "-k", "-i", "-is", "-outdir", "-t", "-T",
    "-env", "-rnc", "-jsdl", "-U", "-data", "-datagrp",
}
BSUB_FLAGS = {"-x", "-B", "-N", "-r", "-rn", "-hl", "-K", "-H", "-I", "-Ip", "-Is", "-ti",
              "-tty", "-XF", "-ul"}


def parse_bsub_words(words: list[str], opts: dict[str, Any]) -> list[str]:
    """Fill ``opts`` from bsub words; return the command words that follow them."""
    i = 0
    while i < len(words):
        word = words[i]
        if word in BSUB_VALUE_OPTS:
            if i + 1 >= len(words):
                raise SystemExit(f"bsub: option requires an argument -- {word[1:]}")
            value = words[i + 1]
            if word == "-R":
                opts.setdefault("-R", []).append(value)
            else:
                opts[word] = value
            i += 2
        elif word in BSUB_FLAGS:
            opts[word] = True
            i += 1
        elif word.startswith("-") and word != "-":
            raise SystemExit(f"bsub: illegal option -- {word[1:]}\n"
                             "Usage: bsub [options] command [arguments]")
        else:
            return words[i:]
    return []


def parse_minutes(value: str) -> int:
    """bsub -W [hour:]minute."""
    parts = value.split("/")[0].split(":")
    if len(parts) == 1:
        return int(parts[0])
    return int(parts[0]) * 60 + int(parts[1])


def parse_array_spec(name: str) -> tuple[str, list[int], int | None] | str | None:
    """``name[index_list]%slot_limit`` of bsub -J: (name, indices, limit); None for a
    plain job's name; LSF's words for a bad one."""
    match = re.fullmatch(r"(.*)\[([^\]]*)\](?:%(\d+))?", name)
    if match is None:
        return None
    array_name, spec, limit = match.groups()
    indices = parse_indices(spec)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", array_name) or indices is None or \
            len(name) > 255 or (limit is not None and int(limit) < 1):
        return "Bad job name"
    return array_name, indices, int(limit) if limit else None


def cmd_bsub(argv: list[str]) -> int:
    cli: dict[str, Any] = {}
    command_words = parse_bsub_words(argv, cli)
    script_opts: dict[str, Any] = {}
    if command_words:
        command = shlex.join(command_words)
        script = command + "\n"
    else:
        # `bsub < script`: the script comes on stdin, its #BSUB lines are options
        script = sys.stdin.read()
        if not script.strip():
            print("bsub> ", end="")
            print("No command is specified. Job not submitted.", file=sys.stderr)
            return 255
        for line in script.splitlines():
            stripped = line.strip()
            if stripped.startswith("#BSUB"):
                try:
                    parse_bsub_words(shlex.split(stripped[5:]), script_opts)
                except ValueError as exc:
                    print(f"bsub: bad #BSUB line {stripped!r}: {exc}", file=sys.stderr)
                    return 255
        command = next(
            (ln.strip() for ln in script.splitlines()
             if ln.strip() and not ln.strip().startswith("#")),
            "",
        )
    # command-line options override the script's #BSUB lines
    resources = script_opts.get("-R", []) + cli.get("-R", [])
    opts = {**script_opts, **cli}
    conf = settings()
    queues = conf["QUEUES"].split()
    queue = opts.get("-q")
    if queue is not None and queue not in queues:
        print(f"{queue}: No such queue. Job not submitted.", file=sys.stderr)
        return 255
    try:
        slots = int(str(opts.get("-n", "1")).split(",")[0])
        runlimit = parse_minutes(opts["-W"]) if "-W" in opts else None
    except ValueError as exc:
        print(f"bsub: bad value: {exc}. Job not submitted.", file=sys.stderr)
        return 255
    if slots > int(conf["SLOTS"]):
        print(f"Bad argument for option -n: {slots} exceeds the slots of every host. "
              "Job not submitted.", file=sys.stderr)
        return 255
    name = opts.get("-J") or command[:4094]
    array = parse_array_spec(name) if "-J" in opts else None
    if array is not None:
        if isinstance(array, str):
            print(f"{array}. Job not submitted.", file=sys.stderr)
            return 255
        if array[1][-1] > int(conf["MAX_JOB_ARRAY_SIZE"]):
            print("Job array index too large. Job not submitted.", file=sys.stderr)
            return 255
    cwd = opts.get("-cwd") or os.getcwd()
    env = dict(os.environ)
    with locked():
        jobs_dir().mkdir(parents=True, exist_ok=True)
        job_id = next_id()

        def expand(path: str | None, index: int = 0) -> str | None:
            if path is None:
                return None
            path = path.replace("%J", str(job_id)).replace("%I", str(index))
            return path if path.startswith("/") else os.path.join(cwd, path)

        job_file = jobs_dir() / f"{job_id}.sh"
        job_file.write_text(script)
        job_file.chmod(0o700)
        # the submission environment, once per job id (not in every element's record:
        # the scheduling pass reads every live record)
        env_file = jobs_dir() / f"{job_id}.env"
        env_file.write_text(json.dumps(env))
        job = {
            "id": job_id,
            "index": 0,
            "array": None,
            "slot_limit": None,
            "name": name,
            "user": user(),
            "queue": queue or queues[0],
            "project": opts.get("-P"),
            "from_host": host(),
            "cwd": cwd,
            "command": command,
            "job_file": str(job_file),
            "output": expand(opts.get("-oo") or opts.get("-o")),
            "output_overwrite": "-oo" in opts,
            "error": expand(opts.get("-eo") or opts.get("-e")),
            "error_overwrite": "-eo" in opts,
            "slots": slots,
            "runlimit": runlimit,
            "memlimit": opts.get("-M"),
            "resreq": resources,
            "env_file": str(env_file),
            "stat": "PSUSP" if opts.get("-H") else "PEND",
            "submit_time": time.time(),
            "start_time": None,
            "finish_time": None,
            "exit_code": None,
            "exit_reason": None,
            "exec_host": None,
            "kill_time": None,
            "events": [],
        }
        if array is None:
            save(job)
        else:  # one job id, one record per element (each is scheduled on its own)
            array_name, indices, slot_limit = array
            # its elements, to find them by the array's id alone
            (jobs_dir() / f"{job_id}.array").write_text(json.dumps(indices))
            for index in indices:
                save({**job, "index": index, "array": array_name, "slot_limit": slot_limit,
                      "name": f"{array_name}[{index}]",
                      "output": expand(opts.get("-oo") or opts.get("-o"), index),
                      "error": expand(opts.get("-eo") or opts.get("-e"), index)})
    if queue is None:
        print(f"Job <{job_id}> is submitted to default queue <{job['queue']}>.")
    else:
        print(f"Job <{job_id}> is submitted to queue <{job['queue']}>.")
    sys.stdout.flush()
    schedule()
    return 0


# -- the runner of one job (LSF's sbatchd/res, simulated) -------------------------------


def job_environment(job: dict[str, Any]) -> dict[str, str]:
    env = dict(job.get("env") or json.loads(Path(job["env_file"]).read_text()))
    hosts = [job["exec_host"]] * job["slots"]
    env.update(
        LSB_JOBID=str(job["id"]),
        LSB_JOBNAME=job["name"],
        LSB_QUEUE=job["queue"],
        LSB_HOSTS=" ".join(hosts),
        LSB_MCPU_HOSTS=f"{job['exec_host']} {job['slots']}",
        LSB_DJOB_NUMPROC=str(job["slots"]),
        LSB_MAX_NUM_PROCESSORS=str(job["slots"]),
        LSB_JOBINDEX=str(job.get("index") or 0),  # 0: no array's element
        LSB_JOBFILENAME=job["job_file"],
        LSB_EXEC_CLUSTER=settings()["CLUSTER"],
        LSB_SUB_HOST=job["from_host"],
        LS_SUBCWD=job["cwd"],
        LSB_SUBCWD=job["cwd"],
        LSB_JOBEXIT_STAT="",
        LSF_SIMULATOR="1",
    )
    del env["LSB_JOBEXIT_STAT"]
    if job.get("output"):
        env["LSB_OUTPUTFILE"] = job["output"]
    if job.get("error"):
        env["LSB_ERRORFILE"] = job["error"]
    if job.get("project"):
        env["LSB_PROJECT_NAME"] = job["project"]
    return env


def open_log(path: str | None, overwrite: bool) -> Any:
    if path is None:
        return open(os.devnull, "wb")
    try:
        return open(path, "wb" if overwrite else "ab")
    except OSError:
        # LSF writes to /tmp when the path is not accessible
        return open(os.path.join("/tmp", os.path.basename(path)), "ab")


def job_report(job: dict[str, Any]) -> str:
    """The job report LSF appends to the -o file when -N is not given."""
    conf = settings()
    state = "Done" if job["stat"] == "DONE" else "Exited"
    if job["stat"] == "DONE":
        result = "Successfully completed."
    elif job.get("exit_code") is not None:
        result = f"Exited with exit code {job['exit_code']}."
    else:
        result = "Exited."
    return (
        "\n------------------------------------------------------------\n"
        f"Sender: LSF System <lsfadmin@{job['exec_host']}>\n"
        f"Subject: Job {key(job)}: <{job['name']}> in cluster <{conf['CLUSTER']}> {state}\n\n"
        f"Job <{job['name']}> was submitted from host <{job['from_host']}> by user "
        f"<{job['user']}> in cluster <{conf['CLUSTER']}> at "
        f"{fmt_long_time(job['submit_time'])}\n"
        f"Job was executed on host(s) <{job['exec_host']}>, in queue <{job['queue']}>, "
        f"as user <{job['user']}> in cluster <{conf['CLUSTER']}> at "
        f"{fmt_long_time(job['start_time'])}\n"
        f"</home/{job['user']}> was used as the home directory.\n"
        f"<{job['cwd']}> was used as the working directory.\n"
        f"Started at {fmt_long_time(job['start_time'])}\n"
        f"Terminated at {fmt_long_time(job['finish_time'])}\n"
        "Results reported at "
        f"{fmt_long_time(job['finish_time'])}\n\n"
        "Your job looked like:\n\n"
        "------------------------------------------------------------\n"
        "# LSBATCH: User input\n"
        f"{job['command']}\n"
        "------------------------------------------------------------\n\n"
        f"{result}\n\n"
        "The output (if any) is above this job summary.\n\n"
        "PS: This job report was written by the LSF SIMULATOR of kong's tests.\n"
    )


def run_job(job_key: str) -> int:
    job = load(job_key)
    if job is None or job["stat"] != "RUN":
        return 1
    out = open_log(job.get("output"), bool(job.get("output_overwrite")))
    err = out if not job.get("error") else open_log(job["error"], bool(job.get("error_overwrite")))
    try:
        os.chdir(job["cwd"])
    except OSError:
        os.chdir("/tmp")
    proc = subprocess.Popen(
        ["/bin/sh", job["job_file"]],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        env=job_environment(job),
        start_new_session=True,  # its own process group, which bkill signals
    )
    with locked():
        job = load(job_key) or job
        job["job_pid"] = proc.pid
        save(job)
    conf = settings()
    interval = float(conf["JOB_TERMINATE_INTERVAL"])
    minute = float(conf["MINUTE"])
    reason = None
    sent_kill = False
    usr2_time = None
    rusage = None
    while proc.returncode is None:
        pid, wait_status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(wait_status)
            break
        time.sleep(0.1)
        current = load(job_key) or job
        now = time.time()
        if current.get("kill_time") and not sent_kill and now - current["kill_time"] >= interval:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            sent_kill = True
        limit = job.get("runlimit")
        if limit and usr2_time is None and now - job["start_time"] >= limit * minute:
            # Run limit: SIGUSR2, then SIGKILL after the terminate interval
            reason = "TERM_RUNLIMIT: job killed after reaching LSF run time limit"
            usr2_time = now
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGUSR2)
        if usr2_time is not None and not sent_kill and now - usr2_time >= interval:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            sent_kill = True
    status = proc.returncode
    code = status if status >= 0 else 128 - status  # killed by a signal: 128 + signal
    with locked():
        job = load(job_key) or job
        if job.get("kill_time"):
            reason = "TERM_OWNER: job killed by owner"
        job.update(
            stat="DONE" if code == 0 and reason is None else "EXIT",
            finish_time=time.time(),
            exit_code=code,
            exit_reason=reason,
        )
        if rusage is not None:
            job.update(cpu_used=rusage.ru_utime + rusage.ru_stime, max_mem_kb=rusage.ru_maxrss)
        save(job)
    out.write(job_report(job).encode())
    out.close()
    if err is not out:
        err.close()
    schedule()
    return 0


# -- bjobs -----------------------------------------------------------------------------


def parse_format(spec: str) -> tuple[list[str], str | None]:
    delimiter = None
    match = re.search(r"""delimiter=(['"])(.*?)\1""", spec)
    if match:
        delimiter = match.group(2)
        spec = spec[: match.start()] + spec[match.end():]
    names = []
    for word in spec.split():
        name = word.split(":")[0].lower()
        if name not in FIELD_NAMES:
            raise KeyError(name)
        names.append(name)
    return names, delimiter


def visible(job: dict[str, Any], clean_period: float) -> bool:
    """Still in mbatchd's memory (unfinished, or finished within CLEAN_PERIOD)."""
    return job["stat"] not in FINISHED or time.time() - (job.get("finish_time") or 0) < clean_period


def cmd_bjobs(argv: list[str]) -> int:
    show_all = json_out = noheader = False
    fmt = None
    name_filter = None
    words: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "-a":
            show_all = True
        elif word == "-json" and settings()["JSON"].upper().startswith("Y"):
            json_out = True
        elif word == "-noheader":
            noheader = True
        elif word in ("-w", "-W", "-X"):
            pass
        elif word == "-o":
            i += 1
            fmt = argv[i]
        elif word == "-J":
            i += 1
            name_filter = argv[i]
        elif word in ("-u", "-q", "-P", "-m", "-g"):
            i += 1  # accepted; the simulator has one user's jobs
        elif _JOB_REF.match(word):
            words.append(word)
        else:
            print(f"bjobs: illegal option -- {word.lstrip('-')}", file=sys.stderr)
            return 255
        i += 1
    refs = job_refs(words)
    if refs is None:
        print("Bad job ID. Job not found.", file=sys.stderr)
        return 255
    if json_out and noheader:
        print("bjobs: -json cannot be used with -noheader", file=sys.stderr)
        return 255
    if json_out and fmt is None:
        print("bjobs: -json must be used with -o", file=sys.stderr)
        return 255
    schedule()
    clean = float(settings()["CLEAN_PERIOD"])
    errors: list[str] = []
    if refs:
        selected = []
        for ref in refs:
            # an array's id lists every element; "123[4]" only that one
            found = [j for j in select(ref) if visible(j, clean)]
            if found:
                selected.extend(found)
            else:
                errors.append(f"Job <{ref[2]}> is not found")
    elif show_all:
        selected = visible_jobs(clean)
    else:
        selected = [j for j in live_jobs() if j["stat"] not in FINISHED]
    if name_filter is not None:
        selected = [j for j in selected if name_matches(j, name_filter)]
    try:
        names, delimiter = parse_format(fmt) if fmt else (None, None)
    except KeyError as exc:
        print(f"{exc.args[0]}: Illegal field name", file=sys.stderr)
        return 255
    if json_out:
        assert names is not None
        records = []
        for job in selected:
            items = [f'      "{json_key(n)}":{json_text(field_value(job, n))}' for n in names]
            records.append("    {\n" + ",\n".join(items) + "\n    }")
        for message in errors:
            job_ref = message.split("<", 1)[1].split(">", 1)[0]
            records.append(
                f'    {{\n      "JOBID":"{job_ref}",\n      "ERROR":"{message}"\n    }}'
            )
        print("{\n"
              '  "COMMAND":"bjobs",\n'
              f'  "JOBS":{len(selected)},\n'
              '  "RECORDS":[\n'
              + ",\n".join(records)
              + ("\n" if records else "")
              + "  ]\n}")
        return 0
    for message in errors:
        print(message, file=sys.stderr)
    if not selected:
        if not errors:
            if name_filter is not None:
                print(f"Job <{name_filter}> is not found", file=sys.stderr)
            else:
                print("No job found" if show_all else "No unfinished job found",
                      file=sys.stderr)
        return 255 if errors else 0
    if names is not None:
        rows = [[field_value(j, n) or "-" for n in names] for j in selected]
        header = [json_key(n) for n in names]
        if delimiter is not None:
            if not noheader:
                print(delimiter.join(header))
            for row in rows:
                print(delimiter.join(row))
        else:
            print_table(header if not noheader else None, rows)
        return 0
    header = ["JOBID", "USER", "STAT", "QUEUE", "FROM_HOST", "EXEC_HOST", "JOB_NAME",
              "SUBMIT_TIME"]
    rows = []
    for job in selected:
        exec_host = job.get("exec_host") or ""
        if exec_host and job["slots"] > 1:
            exec_host = f"{job['slots']}*{exec_host}"
        rows.append([str(job["id"]), job["user"], job["stat"], job["queue"], job["from_host"],
                     exec_host, job["name"][:10] if len(job["name"]) <= 10
                     else "*" + job["name"][-9:], fmt_time(job["submit_time"])])
    print_table(header if not noheader else None, rows)
    return 0


def print_table(header: list[str] | None, rows: list[list[str]]) -> None:
    table = ([header] if header else []) + rows
    widths = [max(len(r[c]) for r in table) for c in range(len(table[0]))]
    for row in table:
        cells = [v.ljust(w) for v, w in zip(row[:-1], widths[:-1], strict=True)]
        print(" ".join([*cells, row[-1]]))


# -- bkill -----------------------------------------------------------------------------


def cmd_bkill(argv: list[str]) -> int:
    words: list[str] = []
    name_filter = None
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "-J":
            i += 1
            name_filter = argv[i]
        elif word in ("-s", "-C", "-q", "-u", "-m", "-g", "-app", "-sla"):
            i += 1
        elif word in ("-b", "-r", "-d", "-l"):
            pass
        elif _JOB_REF.match(word):
            words.append(word)
        else:
            print(f"bkill: illegal option -- {word.lstrip('-')}", file=sys.stderr)
            return 255
        i += 1
    refs = job_refs(words)
    if refs is None:
        print("Bad job ID. Job not found.", file=sys.stderr)
        return 255
    every = any(ref[0] == 0 for ref in refs)  # job id 0: every job the filters select
    refs = [ref for ref in refs if ref[0] != 0]
    rc = 0
    with locked():
        jobs = live_index()  # the unfinished ones
        # one record per live job, however many words name it: once killed, it is
        # "already finished" to the next
        by_key = {key(j): j for j in jobs}
        # (what bkill names in its answer, the jobs that answer is about)
        targets: list[tuple[str, list[dict[str, Any]]]] = []
        if name_filter is not None and (every or not refs):
            matched = [j for j in jobs if name_matches(j, name_filter)]
            if not every:
                matched = matched[-1:]  # a bare -J: the newest such job only
            if not matched:
                print("No matching job found", file=sys.stderr)
                return 255
            targets += [(key(j), [j]) for j in matched]
        for ref in refs:
            found = [by_key.get(key(j), j) for j in select(ref)]
            if ref[1] is None:
                # a job, or a whole array: one answer for all its elements
                targets.append((str(ref[0]), found))
            else:
                targets += [(key(j), [j]) for j in found]
                have = {j["index"] for j in found}
                targets += [(f"{ref[0]}[{i}]", []) for i in ref[1] if i not in have]
        if not targets:
            # "By default, kills the last job that was submitted by the user"
            if not jobs:
                print("No unfinished job found", file=sys.stderr)
                return 255
            targets = [(key(jobs[-1]), jobs[-1:])]
        for label, members in targets:
            if not members:
                print(f"Job <{label}>: No matching job found", file=sys.stderr)
                rc = 255
                continue
            live = [j for j in members if j["stat"] not in FINISHED]
            if not live:
                print(f"Job <{label}>: Job has already finished", file=sys.stderr)
                rc = 255
                continue
            for job in live:
                terminate(job)
            print(f"Job <{label}> is being terminated")
    schedule()
    return rc


def terminate(job: dict[str, Any]) -> None:
    """bkill of one unfinished job (or element): a job not started ends at once, a
    running one gets SIGINT and SIGTERM (its runner sends SIGKILL later)."""
    if job["stat"] in ("PEND", "PSUSP"):
        job.update(stat="EXIT", finish_time=time.time(), exit_code=None,
                   exit_reason="TERM_OWNER: job killed by owner", kill_time=time.time())
    else:
        if not job.get("kill_time"):
            job["kill_time"] = time.time()
        pid = job.get("job_pid")
        if pid:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, sig)
    save(job)


# -- bhist -----------------------------------------------------------------------------


def wrap(line: str) -> str:
    """bhist -l folds long lines at 80 characters, continuing them indented by 21."""
    out, rest = [], line
    first = True
    while rest:
        width = 80 if first else 59
        out.append(("" if first else " " * 21) + rest[:width])
        rest = rest[width:]
        first = False
    return "\n".join(out)


def history(job: dict[str, Any]) -> str:
    lines = [
        f"Job <{key(job)}>, Job Name <{job['name']}>, User <{job['user']}>, Project "
        f"<{job.get('project') or 'default'}>, Command <{job['command']}>",
        f"{fmt_long_time(job['submit_time'])}: Submitted from host <{job['from_host']}>, "
        f"to Queue <{job['queue']}>, CWD <{job['cwd']}>"
        + (f", Output File <{job['output']}>" if job.get("output") else "")
        + (f", Error File <{job['error']}>" if job.get("error") else "")
        + (f", {job['slots']} Task(s)" if job["slots"] > 1 else "")
        + ";",
    ]
    if job.get("start_time"):
        hosts = f"<{job['exec_host']}>" if job["slots"] == 1 else \
            f"{job['slots']}*<{job['exec_host']}>"
        lines.append(
            f"{fmt_long_time(job['start_time'])}: Dispatched {job['slots']} Task(s) on "
            f"Host(s) {hosts}, Allocated {job['slots']} Slot(s) on Host(s) {hosts}, "
            "Effective RES_REQ <select[type == local] order[r15s:pg] >;"
        )
        lines.append(f"{fmt_long_time(job['start_time'])}: Starting (Pid "
                     f"{job.get('job_pid') or 0});")
        lines.append(
            f"{fmt_long_time(job['start_time'])}: Running with execution home "
            f"</home/{job['user']}>, Execution CWD <{job['cwd']}>, Execution Pid "
            f"<{job.get('job_pid') or 0}>;"
        )
    if job.get("kill_time"):
        lines.append(f"{fmt_long_time(job['kill_time'])}: Signal <KILL> requested by user or "
                     f"administrator <{job['user']}>;")
    end = job.get("finish_time")
    if job["stat"] == "DONE" and end:
        lines.append(f"{fmt_long_time(end)}: Done successfully. The CPU time used is 0.1 "
                     "seconds;")
        lines.append(f"{fmt_long_time(end)}: Post job process done successfully;")
    elif job["stat"] == "EXIT" and end:
        if job.get("exit_code") is not None:
            lines.append(f"{fmt_long_time(end)}: Exited with exit code {job['exit_code']}. "
                         "The CPU time used is 0.1 seconds;")
        else:
            lines.append(f"{fmt_long_time(end)}: Exited; job has been forced to exit;")
        if job.get("exit_reason"):
            lines.append(f"{fmt_long_time(end)}: Completed <exit>; {job['exit_reason']};")
    now = end or time.time()
    start = job.get("start_time") or now
    pend = int(start - job["submit_time"])
    run = int(now - start) if job.get("start_time") else 0
    text = "\n".join(wrap(line) for line in lines)
    return (
        f"{text}\n\n"
        f"Summary of time in seconds spent in various states by  {fmt_long_time(now)}\n"
        "  PEND     PSUSP    RUN      USUSP    SSUSP    UNKWN    TOTAL\n"
        f"  {pend:<9d}{0:<9d}{run:<9d}{0:<9d}{0:<9d}{0:<9d}{pend + run}\n"
    )


def cmd_bhist(argv: list[str]) -> int:
    long_format = show_all = False
    name_filter = None
    words: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "-l":
            long_format = True
        elif word in ("-a", "-d"):
            show_all = True
        elif word in ("-w", "-b", "-UF"):
            pass
        elif word in ("-n", "-u", "-q", "-P", "-m", "-C", "-S", "-D", "-f"):
            i += 1
        elif word == "-J":
            i += 1
            name_filter = argv[i]
        elif _JOB_REF.match(word):
            words.append(word)
        else:
            print(f"bhist: illegal option -- {word.lstrip('-')}", file=sys.stderr)
            return 255
        i += 1
    refs = job_refs(words)
    if refs is None:
        print("Bad job ID. Job not found.", file=sys.stderr)
        return 255
    schedule()
    if refs:  # an array's id: every element's history
        selected = [j for ref in refs for j in select(ref)]
    elif show_all:
        selected = every_job()
    else:
        selected = [j for j in live_jobs() if j["stat"] not in FINISHED]
    if name_filter is not None:
        selected = [j for j in selected if name_matches(j, name_filter)]
    if not selected:
        print("No matching job found", file=sys.stderr)
        return 255
    if long_format:
        rule = "-" * 78
        print(("\n" + rule + "\n\n").join(history(j) for j in selected))
        return 0
    print("Summary of time in seconds spent in various states:")
    rows = []
    for job in selected:
        now = job.get("finish_time") or time.time()
        start = job.get("start_time") or now
        pend = int(start - job["submit_time"])
        run = int(now - start) if job.get("start_time") else 0
        name = job["name"] if len(job["name"]) <= 10 else "*" + job["name"][-9:]
        rows.append([key(job), job["user"], name, str(pend), "0", str(run), "0", "0",
                     "0", str(pend + run)])
    print_table(["JOBID", "USER", "JOB_NAME", "PEND", "PSUSP", "RUN", "USUSP", "SSUSP",
                 "UNKWN", "TOTAL"], rows)
    return 0


# -- bparams ---------------------------------------------------------------------------


def cmd_bparams(argv: list[str]) -> int:
    """The lsb.params the simulator has: ``bparams`` (the short summary), ``-a`` (every
    parameter, ``NAME = value``) and ``-l`` (each under a line that says what it is)."""
    if any(word not in ("-a", "-l") for word in argv):
        bad = next(word for word in argv if word not in ("-a", "-l"))
        print(f"bparams: illegal option -- {bad.lstrip('-')}", file=sys.stderr)
        return 255
    conf = settings()
    params = [
        ("System default queues for automatic queue selection:", "DEFAULT_QUEUE",
         conf["QUEUES"].split()[0]),
        ("The interval for dispatching jobs by master batch daemon:", "MBD_SLEEP_TIME",
         "10 (seconds)"),
        ("The amount of time during which finished jobs are kept in core:", "CLEAN_PERIOD",
         f"{int(float(conf['CLEAN_PERIOD']))} (seconds)"),
        ("The time interval between the job termination signals of bkill:",
         "JOB_TERMINATE_INTERVAL", f"{int(float(conf['JOB_TERMINATE_INTERVAL']))} (seconds)"),
        ("The maximum number of jobs in a job array:", "MAX_JOB_ARRAY_SIZE",
         conf["MAX_JOB_ARRAY_SIZE"]),
    ]
    if "-l" in argv:
        print("\n".join(f"{what}\n    {name} = {value}\n" for what, name, value in params))
    elif "-a" in argv:
        print(f"lsb.params configuration at {fmt_long_time(time.time())}")
        for _what, name, value in params:
            print(f"    {name} = {value.split(' (')[0]}")
    else:
        print(f"Default Queues:  {params[0][2]}\n"
              "MBD_SLEEP_TIME used for calculations:  10 seconds\n"
              "Job Checking Interval:  7 seconds\n"
              "Job Accepting Interval:  0 seconds")
    return 0


COMMANDS = {"bsub": cmd_bsub, "bjobs": cmd_bjobs, "bkill": cmd_bkill, "bhist": cmd_bhist,
            "bparams": cmd_bparams}


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "--run-job":
        return run_job(sys.argv[2])
    name = os.path.basename(sys.argv[0])
    if name not in COMMANDS:
        print(f"LSF simulator: run as one of {', '.join(COMMANDS)} (got {name})",
              file=sys.stderr)
        return 2
    if "-V" in sys.argv[1:]:
        print("IBM Spectrum LSF 10.1 SIMULATOR (kong tests; not IBM software)", file=sys.stderr)
        return 0
    return COMMANDS[name](sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
