"""Benchmark: REPL start-up to the first prompt, and ``kong ls`` on 100,000 jobs.

Run: ``python benchmarks/bench_repl.py [--jobs N] [--runs R]``. Prints its figures.

Start-up is measured as a person sees it: ``kong`` is spawned on a pseudo
terminal and the clock stops when the prompt's text has been written to the
terminal. Both the first prompt (drawn before the database layer is loaded)
and the prompt showing the profile (the State is ready) are timed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pty
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# The console script beside this interpreter: a version manager's shim on PATH
# (pyenv's adds 0.3-0.8 s) would be measured as kong's start-up.
_BESIDE = Path(sys.executable).with_name("kong")
KONG = str(_BESIDE) if _BESIDE.exists() else (shutil.which("kong") or "kong")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def time_to_prompt(env: dict[str, str], timeout: float = 10.0) -> tuple[float, float]:
    """Seconds until the first prompt and until the prompt names the profile."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.execvpe(KONG, [KONG], env)
    start = time.perf_counter()
    first = ready = None
    seen = b""
    try:
        while ready is None and time.perf_counter() - start < timeout:
            r, _, _ = select.select([fd], [], [], 0.01)
            if not r:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            seen += chunk
            if b"\x1b[6n" in chunk:  # answer the cursor position request, as a terminal does
                os.write(fd, b"\x1b[1;1R")
            text = _ANSI.sub("", seen.decode("utf-8", "replace"))
            if first is None and "kong [" in text and " >" in text:
                first = time.perf_counter() - start
            # The prompt is redrawn in place: only the changed part, "local]", is written.
            if "local]" in text:
                ready = time.perf_counter() - start
    finally:
        os.write(fd, b"\x04")  # Ctrl-D: leave the shell
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        os.close(fd)
    if first is None or ready is None:
        raise RuntimeError(f"no prompt within {timeout} s; output: {seen[-400:]!r}")
    return first, ready


def make_jobs(home: Path, n: int) -> None:
    """A folder /big with ``n`` jobs, inserted in bulk with SQLAlchemy core."""
    env_home = os.environ.get("KONG_HOME")
    os.environ["KONG_HOME"] = str(home)
    try:
        from kong import db
        from kong.config import Config
        from kong.model.folder import Folder
        from kong.model.job import Job, JobStatus

        config = Config()
        db.init(config.database_url)
        root = Folder.get_root()
        big = root.add_folder("big")
        now = datetime.now(UTC)
        statuses = [s.name for s in JobStatus]
        rows = [
            {
                "batch_job_id": str(100000 + i),
                "driver": "local",
                "profile": "local",
                "folder_id": big.folder_id,
                "command": f"python train.py --seed {i} --lr 0.0{i % 10}",
                "data": {"exit_code": 0},
                "status": statuses[i % len(statuses)],
                "created_at": now - timedelta(seconds=n - i),
                "updated_at": now,
                "cores": 1,
                "memory": None,
            }
            for i in range(n)
        ]
        with db.write() as sess:
            sess.execute(Job.__table__.insert(), rows)
        db.dispose()
    finally:
        if env_home is None:
            del os.environ["KONG_HOME"]
        else:
            os.environ["KONG_HOME"] = env_home


def time_command(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, check=True)
    return time.perf_counter() - start, len(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "kong-home"
        home.mkdir()
        env = {**os.environ, "KONG_HOME": str(home), "TERM": "xterm-256color"}
        env.pop("KONG_CONFIG_DIR", None)
        # The first run creates the database; people start kong on an existing one.
        subprocess.run([KONG, "pwd"], env=env, check=True, capture_output=True)

        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"machine: {os.cpu_count()} CPUs, load average {load} (figures are wall clock)")
        firsts, readies = [], []
        for _ in range(args.runs):
            first, ready = time_to_prompt(env)
            firsts.append(first)
            readies.append(ready)
        print(f"REPL start-up, {args.runs} runs (median / min / max):")
        print(f"  first prompt:        {statistics.median(firsts) * 1000:6.0f} ms"
              f"  / {min(firsts) * 1000:4.0f} / {max(firsts) * 1000:4.0f}")
        print(f"  prompt with profile: {statistics.median(readies) * 1000:6.0f} ms"
              f"  / {min(readies) * 1000:4.0f} / {max(readies) * 1000:4.0f}")

        start = time.perf_counter()
        make_jobs(home, args.jobs)
        print(f"inserted {args.jobs} jobs in {time.perf_counter() - start:.2f} s")

        for argv, label in (
            ([KONG, "ls", "/big"], "kong ls /big"),
            ([KONG, "ls", "-s", "failed", "/big"], "kong ls -s failed /big"),
            ([KONG, "ls", "--json", "/big"], "kong ls --json /big"),
            ([KONG, "ls", "/"], "kong ls / (folder counts)"),
        ):
            times = []
            size = 0
            for _ in range(3):
                t, size = time_command(argv, env)
                times.append(t)
            print(f"{label:28s} {statistics.median(times):6.2f} s median of 3 "
                  f"(min {min(times):.2f}), {size / 1e6:.1f} MB of output")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
