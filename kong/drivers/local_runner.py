#!/usr/bin/env python3
"""kong's runner for the local driver: runs job scripts in the background.

This file is copied to the host that runs the jobs (this machine, or a remote
host without a scheduler) and must only use the standard library.

    python3 local_runner.py start SLOTS SLOT_DIR   < job dirs, one per line
    python3 local_runner.py status                 < job dirs
    python3 local_runner.py kill                   < job dirs

``start`` detaches a runner process that launches the jobs, at most SLOTS at a
time across all runners on the host (one ``flock``ed file per slot), and returns
at once. A job dir that already has a ``state`` file is never started again, so
repeating a ``start`` whose connection dropped cannot run a job twice.

Files in a job dir: ``job.sh`` (the script), ``state`` ("QUEUED runner_pid",
"RUNNING pid", "KILLED"), ``exit_code`` (written by job.sh itself), ``kill``
(a request to kill), ``log/stdout.txt``, ``log/stderr.txt``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive: it has finished and waits to be reaped
    stat = _read(f"/proc/{pid}/stat")
    return not (stat and stat.rsplit(")", 1)[-1].split()[0] == "Z")


def _job_dirs() -> list[str]:
    return [line for line in sys.stdin.read().splitlines() if line.strip()]


def start(slots: int, slot_dir: str, dirs: list[str]) -> None:
    accepted = []
    for d in dirs:
        try:
            fd = os.open(os.path.join(d, "state"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            print(f"exists {d}")
            continue
        except FileNotFoundError:
            print(f"missing {d}")
            continue
        os.close(fd)
        accepted.append(d)
    if not accepted:
        sys.stdout.flush()
        return
    os.makedirs(slot_dir, exist_ok=True)
    # Detach twice so the runner outlives the command (and an SSH channel) that started it.
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        runner_pid = os.read(read_end, 32).decode().strip()
        for d in accepted:
            print(f"started {d} {runner_pid}")
        sys.stdout.flush()
        return
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.close(read_end)
    for d in accepted:
        _write(os.path.join(d, "state"), f"QUEUED {os.getpid()}")
    os.write(write_end, str(os.getpid()).encode())
    os.close(write_end)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    run(slots, slot_dir, accepted)
    os._exit(0)


def _take_slot(slots: int, slot_dir: str) -> int | None:
    for i in range(slots):
        fd = os.open(os.path.join(slot_dir, f"{i}.lock"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            os.close(fd)
    return None


def run(slots: int, slot_dir: str, dirs: list[str]) -> None:
    pending = deque(dirs)
    # Keep each Popen and reap through it: a dropped Popen reaps its child in __del__,
    # and a later os.waitpid() on that pid would raise and kill the runner.
    running: dict[int, tuple[str, int, subprocess.Popen[bytes]]] = {}
    while pending or running:
        for pid in list(running):
            d, slot, proc = running[pid]
            code = proc.poll()
            if code is not None:
                del running[pid]
                os.close(slot)  # frees the slot for any runner on this host
                if not os.path.exists(os.path.join(d, "exit_code")):
                    # job.sh was killed before its exit trap could run
                    _write(os.path.join(d, "exit_code"), str(128 - code if code < 0 else code))
        while pending:
            d = pending[0]
            if os.path.exists(os.path.join(d, "kill")):
                pending.popleft()
                _write(os.path.join(d, "state"), "KILLED")
                continue
            free_slot = _take_slot(slots, slot_dir)
            if free_slot is None:
                break
            pending.popleft()
            log_dir = os.path.join(d, "log")
            os.makedirs(log_dir, exist_ok=True)
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
                    pass_fds=(),
                )
            running[proc.pid] = (d, free_slot, proc)
            _write(os.path.join(d, "state"), f"RUNNING {proc.pid} {time.time():.3f}")
        time.sleep(0.05 if running else 0.2)


def status(dirs: list[str]) -> None:
    for d in dirs:
        state = _read(os.path.join(d, "state"))
        exit_code = _read(os.path.join(d, "exit_code"))
        info: dict[str, object] = {"dir": d, "killed": os.path.exists(os.path.join(d, "kill"))}
        if exit_code is not None and exit_code.lstrip("-").isdigit():
            info.update(state="EXITED", exit_code=int(exit_code))
        elif state is None:
            info["state"] = "NONE"
        elif state == "KILLED":
            info["state"] = "KILLED"
        else:
            word, _, rest = state.partition(" ")
            pid = int(rest.split()[0]) if rest.split() and rest.split()[0].isdigit() else 0
            alive = pid > 0 and _alive(pid)
            info.update(state=word if alive else f"{word}_LOST", pid=pid)
            if word == "RUNNING" and len(rest.split()) > 1:
                info["start_time"] = float(rest.split()[1])
        print(json.dumps(info))


def kill(dirs: list[str]) -> None:
    for d in dirs:
        if not os.path.isdir(d):
            continue
        _write(os.path.join(d, "kill"), str(time.time()))
        state = _read(os.path.join(d, "state")) or ""
        if state.startswith("RUNNING "):
            pid = int(state.split()[1])
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        print(f"killed {d}")


def main() -> None:
    cmd = sys.argv[1]
    if cmd == "start":
        start(int(sys.argv[2]) or os.cpu_count() or 1, sys.argv[3], _job_dirs())
    elif cmd == "status":
        status(_job_dirs())
    elif cmd == "kill":
        kill(_job_dirs())
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
