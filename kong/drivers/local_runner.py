#!/usr/bin/env python3
"""kong's runner for the local driver: runs job scripts in the background.

This file is copied to the host that runs the jobs (this machine, or a remote
host without a scheduler) and must only use the standard library.

    python3 local_runner.py start SLOTS SLOT_DIR [GRACE]  < job dirs, one per line
    python3 local_runner.py status                        < job dirs
    python3 local_runner.py kill [GRACE]                  < job dirs

``start`` detaches a runner process that claims the jobs, launches them, at most
SLOTS cores at a time across all runners on the host (one ``flock``ed file per
slot), and returns at once with one line per dir: ``started DIR RUNNER_PID``,
``exists DIR [PID]`` or ``missing DIR``. The detached runner itself writes each
claim, so a claim always names a runner that really took the job: a claim whose
runner died before starting the job (``QUEUED`` with a dead runner) is taken
over by the next ``start``; any other ``state`` is never started again, so
repeating a ``start`` whose connection dropped cannot run a job twice.

``kill`` asks queued jobs not to start and sends SIGTERM to running ones, then
SIGKILL to those still alive after GRACE seconds; it returns once they are gone.
The runner applies the same grace to a job over its walltime.

Files in a job dir: ``job.sh`` (the script), ``limits`` (optional JSON:
``cores``, ``walltime`` in seconds, ``grace`` in seconds), ``state`` (``QUEUED
RUNNER_PID START``, ``STARTING RUNNER_PID START``, ``RUNNING PID TIME PID_START
RUNNER_PID START``, ``KILLED RUNNER_PID START``; RUNNER_PID START is the claim of
one runner process; START and PID_START are kernel start times where /proc has
them, else ``-``), ``exit_code`` (written by job.sh itself), ``kill`` (a request
to kill), ``timeout`` (the runner stopped the job at its walltime), ``usage``
(JSON: ``end_time``, ``elapsed``, ``cpu_time``, ``max_rss_mb`` of the ended job),
``log/stdout.txt``, ``log/stderr.txt``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass

DEFAULT_GRACE = 10.0


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:  # gone, or its dir removed under us
        return None


def _process_start(pid: int) -> str | None:
    """The kernel's start time of a process (Linux), so a reused pid is not taken for it."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, start: str = "-") -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive: it has finished and waits to be reaped
    stat = _read(f"/proc/{pid}/stat")
    if stat and stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return start == "-" or _process_start(pid) in (None, start)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _job_dirs() -> list[str]:
    # Only whole lines: a sender killed mid-write leaves a truncated last path, which
    # could name another job's dir.
    data = sys.stdin.read()
    lines = data.split("\n")[:-1]
    return [line for line in lines if line.strip()]


def _token() -> str:
    """This runner's claim: its pid and start time (``-`` where /proc is missing)."""
    pid = os.getpid()
    return f"{pid} {_process_start(pid) or '-'}"


def _owner_alive(state: str) -> bool:
    """Whether the runner named by a QUEUED/STARTING/KILLED state still lives."""
    parts = state.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False
    return _alive(int(parts[1]), parts[2] if len(parts) > 2 else "-")


# -- start: claim, detach, run ----------------------------------------------------------


def start(slots: int, slot_dir: str, dirs: list[str], grace: float) -> None:
    os.makedirs(slot_dir, exist_ok=True)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child > 0:
        os.close(write_end)
        os.waitpid(child, 0)
        _relay(read_end)
        return
    # Detach twice so the runner outlives the command (and an SSH channel) that started it.
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)  # jobs inherit these; job.sh traps them
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        token = _token()
        claimed, lines = _claim(dirs, slot_dir, token)
        with contextlib.suppress(OSError):  # the starter is gone: the claims stand
            os.write(write_end, "".join(lines).encode())
        os.close(write_end)
        if claimed:
            Runner(slots, slot_dir, token, grace).run(claimed)
    finally:
        os._exit(0)


def _relay(read_end: int) -> None:
    """Copy the runner's answer to stdout; a closed stdout (kong gone) is no error."""
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    data = b"".join(chunks)
    try:
        while data:
            data = data[os.write(1, data):]
    except OSError:
        os._exit(0)


def _claim(dirs: list[str], slot_dir: str, token: str) -> tuple[list[str], list[str]]:
    """Claim each dir for this runner; one claimer at a time on the host."""
    claimed: list[str] = []
    lines: list[str] = []
    lock = os.open(os.path.join(slot_dir, "claim.lock"), os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        for d in dirs:
            state = _read(os.path.join(d, "state"))
            # Free to take: no claim; a queued claim whose runner died before starting
            # it; an empty file (older runners claimed that way before they forked, and
            # such a claim outlived a runner that never came up).
            free = not state or (state.startswith("QUEUED") and not _owner_alive(state))
            if state and not free:
                owner = state.split()[1] if state.startswith("QUEUED") else ""
                lines.append(f"exists {d} {owner}".rstrip() + "\n")
                continue
            try:
                _write(os.path.join(d, "state"), f"QUEUED {token}")
            except OSError:
                lines.append(f"missing {d}\n")
                continue
            claimed.append(d)
            lines.append(f"started {d} {os.getpid()}\n")
    finally:
        os.close(lock)
    return claimed, lines


def _take_slots(slots: int, slot_dir: str, need: int) -> list[int] | None:
    taken: list[int] = []
    for i in range(slots):
        fd = os.open(os.path.join(slot_dir, f"{i}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        taken.append(fd)
        if len(taken) == need:
            return taken
    for fd in taken:
        os.close(fd)
    return None


@dataclass
class _Queued:
    dir: str
    cores: int = 1
    walltime: float | None = None
    grace: float | None = None


@dataclass
class _Running:
    job: _Queued
    proc: subprocess.Popen[bytes]
    slots: list[int]
    started: float
    stop_sent: float | None = None
    killed_hard: bool = False


class Runner:
    """One detached runner: its claimed jobs, queued and running."""

    def __init__(self, slots: int, slot_dir: str, token: str, grace: float) -> None:
        self.slots = slots
        self.slot_dir = slot_dir
        self.token = token
        self.grace = grace
        self.running: list[_Running] = []

    def owns(self, d: str, word: str) -> bool:
        """Whether the dir still holds this runner's claim (not removed, not resubmitted)."""
        state = _read(os.path.join(d, "state")) or ""
        parts = state.split()
        return bool(parts) and parts[0] == word and state.endswith(f" {self.token}")

    def run(self, dirs: list[str]) -> None:
        pending = deque(_limits(d) for d in dirs)
        # Wake up as soon as a job ends (SIGCHLD), not at the next tick of a poll.
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        while pending or self.running:
            for job in list(self.running):
                try:
                    self._watch(job)
                except Exception:  # one job's trouble must not stop the rest
                    self._drop(job)
            while pending:
                try:
                    launched = self._launch(pending[0])
                except Exception:
                    launched = True  # a job that cannot start is given up, not retried
                if not launched:
                    break
                pending.popleft()
            select.select([wake_r], [], [], 0.2)
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_r, 4096):
                    pass

    def _launch(self, job: _Queued) -> bool:
        """Start the job if a slot is free; True when the job leaves the queue."""
        d = job.dir
        if not self.owns(d, "QUEUED"):
            return True  # removed or resubmitted: the new claim is another runner's
        if os.path.exists(os.path.join(d, "kill")):
            _write(os.path.join(d, "state"), f"KILLED {self.token}")
            return True
        slots = _take_slots(self.slots, self.slot_dir, max(1, min(job.cores, self.slots)))
        if slots is None:
            return False
        try:
            _write(os.path.join(d, "state"), f"STARTING {self.token}")
            log_dir = os.path.join(d, "log")
            with contextlib.suppress(FileExistsError):
                os.mkdir(log_dir)  # never makedirs: that would recreate a removed job dir
            with open(os.path.join(log_dir, "stdout.txt"), "ab") as out, open(
                os.path.join(log_dir, "stderr.txt"), "ab"
            ) as err:
                proc = subprocess.Popen(
                    ["/bin/sh", os.path.join(d, "job.sh")],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    close_fds=True,
                )
        except BaseException:
            for fd in slots:
                os.close(fd)
            raise
        running = _Running(job, proc, slots, time.monotonic())
        self.running.append(running)
        try:
            started = _process_start(proc.pid) or "-"
            _write(os.path.join(d, "state"),
                   f"RUNNING {proc.pid} {time.time():.3f} {started} {self.token}")
        except OSError:
            self._stop(running)  # its dir went away while it started: nobody can see it
        return True

    def _watch(self, job: _Running) -> None:
        reaped = _reap(job.proc)
        if reaped is not None:
            self._finish(job, *reaped)
            return
        now = time.monotonic()
        d = job.job.dir
        if job.stop_sent is None:
            if job.job.walltime is not None and now - job.started > job.job.walltime:
                with contextlib.suppress(OSError):
                    _write(os.path.join(d, "timeout"), str(time.time()))
                self._stop(job)
            elif os.path.exists(os.path.join(d, "kill")) or not self.owns(d, "RUNNING"):
                # kong asked to kill it (the kill command may not have lived to finish),
                # or its dir was removed or resubmitted: this copy must not run on
                self._stop(job)
        elif not job.killed_hard and now - job.stop_sent > self._grace(job.job):
            _signal_group(job.proc.pid, signal.SIGKILL)
            job.killed_hard = True

    def _grace(self, job: _Queued) -> float:
        return job.grace if job.grace is not None else self.grace

    def _stop(self, job: _Running) -> None:
        _signal_group(job.proc.pid, signal.SIGTERM)
        job.stop_sent = time.monotonic()

    def _finish(self, job: _Running, code: int, usage: resource.struct_rusage | None = None
                ) -> None:
        self._drop(job)
        d = job.job.dir
        if not self.owns(d, "RUNNING"):
            return
        with contextlib.suppress(OSError):
            # What the job's process tree used (wait4 folds in every descendant the
            # job script waited for). ``status`` reads it with exit_code, which
            # job.sh wrote a moment before it exited (or the runner writes below).
            record: dict[str, object] = {"end_time": time.time(),
                                         "elapsed": time.monotonic() - job.started}
            if usage is not None:
                record["cpu_time"] = usage.ru_utime + usage.ru_stime
                record["max_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
            _write(os.path.join(d, "usage"), json.dumps(record))
        if not os.path.exists(os.path.join(d, "exit_code")):
            # job.sh was killed before its exit trap could run
            with contextlib.suppress(OSError):
                _write(os.path.join(d, "exit_code"), str(128 - code if code < 0 else code))

    def _drop(self, job: _Running) -> None:
        if job in self.running:
            self.running.remove(job)
            for fd in job.slots:
                os.close(fd)  # frees the slots for any runner on this host


def _reap(proc: subprocess.Popen[bytes]) -> tuple[int, resource.struct_rusage | None] | None:
    """The exit code and rusage of a job script that ended, or None while it runs."""
    try:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    except ChildProcessError:  # reaped already (Popen's own bookkeeping)
        code = proc.poll()
        return None if code is None else (code, None)
    if pid == 0:
        return None
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # so that Popen never waits for it again
    return code, usage


def _usage(d: str, state: str | None, deadline: float) -> dict[str, object] | None:
    """The runner's usage record of a job that ended. job.sh writes its exit_code
    just before it exits; the runner that reaps it writes ``usage`` a moment later,
    so while that runner lives, wait for it until ``deadline`` (one for the whole
    status call: a runner of an older kong never writes one)."""
    path = os.path.join(d, "usage")
    fields = (state or "").split()
    runner_lives = (len(fields) > 5 and fields[0] == "RUNNING" and fields[4].isdigit()
                    and _alive(int(fields[4]), fields[5]))
    if not runner_lives:
        deadline = 0.0
    while True:
        text = _read(path)
        if text:
            try:
                record = json.loads(text)
            except ValueError:
                return None
            return record if isinstance(record, dict) else None
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def _limits(d: str) -> _Queued:
    try:
        raw = json.loads(_read(os.path.join(d, "limits")) or "{}")
    except ValueError:
        raw = {}
    if not isinstance(raw, dict):
        raw = {}
    cores = raw.get("cores")
    walltime = raw.get("walltime")
    grace = raw.get("grace")
    return _Queued(
        d,
        cores=cores if isinstance(cores, int) and cores > 0 else 1,
        walltime=float(walltime) if isinstance(walltime, (int, float)) else None,
        grace=float(grace) if isinstance(grace, (int, float)) else None,
    )


# -- status and kill --------------------------------------------------------------------


def _emit(lines: list[str]) -> None:
    """Print the answer; a reader that is gone (kong interrupted) is no error."""
    try:
        sys.stdout.write("".join(lines))
        sys.stdout.flush()
    except OSError:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing left to flush at exit


def status(dirs: list[str]) -> None:
    lines = []
    usage_deadline = time.monotonic() + 2.0
    for d in dirs:
        state = _read(os.path.join(d, "state"))
        exit_code = _read(os.path.join(d, "exit_code"))
        info: dict[str, object] = {
            "dir": d,
            "killed": os.path.exists(os.path.join(d, "kill")),
            "timed_out": os.path.exists(os.path.join(d, "timeout")),
        }
        if exit_code is not None and exit_code.lstrip("-").isdigit():
            info.update(state="EXITED", exit_code=int(exit_code))
            fields = (state or "").split()
            if len(fields) > 2 and fields[0] == "RUNNING":
                with contextlib.suppress(ValueError):
                    info["start_time"] = float(fields[2])
            usage = _usage(d, state, usage_deadline)
            if usage is not None:
                info["usage"] = usage
        elif state is None:
            info["state"] = "NONE"
        else:
            word, _, rest = state.partition(" ")
            fields = rest.split()
            if word == "KILLED":
                info["state"] = "KILLED"
            elif word == "RUNNING":
                pid = int(fields[0]) if fields and fields[0].isdigit() else 0
                alive = pid > 0 and _alive(pid, fields[2] if len(fields) > 4 else "-")
                info.update(state="RUNNING" if alive else "RUNNING_LOST", pid=pid)
                if len(fields) > 1:
                    info["start_time"] = float(fields[1])
            else:
                # QUEUED, or STARTING for the instant before the job's process exists
                pid = int(fields[0]) if fields and fields[0].isdigit() else 0
                alive = _owner_alive(state)
                info.update(state="QUEUED" if alive else f"{word or 'QUEUED'}_LOST", pid=pid)
        lines.append(json.dumps(info) + "\n")
    _emit(lines)


def kill(dirs: list[str], grace: float) -> None:
    groups: list[int] = []
    lines = []
    for d in dirs:
        try:
            _write(os.path.join(d, "kill"), str(time.time()))
        except OSError:
            continue  # no such job dir (never submitted, or removed meanwhile)
        state = (_read(os.path.join(d, "state")) or "").split()
        deadline = time.monotonic() + 2
        while state[:1] == ["STARTING"] and time.monotonic() < deadline:
            time.sleep(0.01)  # the runner is starting it this instant: TERM what it starts
            state = (_read(os.path.join(d, "state")) or "").split()
        if state[:1] == ["RUNNING"] and len(state) > 1 and state[1].isdigit():
            pid = int(state[1])
            # the job's own start time, where known: never signal a reused pid
            job_start = state[3] if len(state) > 5 else "-"
            if job_start == "-" or _process_start(pid) in (None, job_start):
                groups.append(pid)
                _signal_group(pid, signal.SIGTERM)
        lines.append(f"killed {d}\n")
    _emit(lines)
    # A job killed by kong must be gone when kong says so: TERM, a grace, then KILL.
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        groups = [g for g in groups if _group_alive(g)]
        if groups:
            time.sleep(0.05)
    for g in groups:
        _signal_group(g, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while groups and time.monotonic() < deadline:
        groups = [g for g in groups if _group_alive(g)]
        if groups:
            time.sleep(0.05)


def main() -> None:
    cmd = sys.argv[1]
    if cmd == "start":
        # The claim is made whole even if kong (our parent, or its terminal) goes away:
        # what was claimed runs, and the next submit finds it.
        for sig in (signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        grace = float(sys.argv[4]) if len(sys.argv) > 4 else DEFAULT_GRACE
        start(int(sys.argv[2]) or os.cpu_count() or 1, sys.argv[3], _job_dirs(), grace)
    elif cmd == "status":
        status(_job_dirs())
    elif cmd in ("kill", "remove"):
        for sig in (signal.SIGINT, signal.SIGHUP):  # the runner escalates if we die anyway
            signal.signal(sig, signal.SIG_IGN)
        dirs = _job_dirs()
        kill(dirs, float(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_GRACE)
        if cmd == "remove":
            # Whatever ran in them is gone now: nothing writes into (or recreates) a
            # dir after it is removed. One command for both, one round trip.
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
