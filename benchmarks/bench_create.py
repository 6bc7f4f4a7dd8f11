#!/usr/bin/env python3
"""Benchmark: creating 2,000 jobs from the shell (issue 21: under 2 s).

Each figure is one whole ``kong`` command, a fresh process with stdout to a pipe,
on a database that already exists (its first open, which migrates it, is done
before the clock starts):

* ``kong sweep 'python sim.py --x {x} --seed {seed}' -p x=0.1,0.2 -p seed=1..1000``;
* ``kong create-job --from-file FILE`` with 2,000 lines, and the same from stdin;
* 2,000 ``create_job`` lines piped into the shell (``kong < lines``), the way
  that worked before;
* floors: ``kong ls /`` on the same database (what any kong command costs to
  start) and, for local jobs, a bare ``os.mkdir`` loop making their dirs;
* the peer, measured in the same run: ``kong create-job`` in a shell loop, one
  process per job, on ``--loop`` jobs (50 by default) and scaled to 2,000
  (it grows linearly: each job is a new process and database open).

Two profiles: ``local`` (each job's dirs are made at once, 3 mkdirs a job) and a
Slurm profile (nothing is made or sent until submit: creating jobs talks to no
cluster, so latency does not enter; the profile's host is never contacted).

    python benchmarks/bench_create.py [--jobs 2000] [--loop 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KONG = [sys.executable, "-m", "kong"]
TARGET = 2.0

CONFIG = """\
profiles:
  local:
    driver: local
  cluster:
    driver: slurm
    host: 127.0.0.1
    port: 9
    remote_dir: ~/.kong
"""


def run(home: Path, words: list[str], stdin: str | None = None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the process and its children)."""
    env = {**os.environ, "KONG_HOME": str(home), "KONG_AGENT": "0"}
    env.pop("KONG_CONFIG_DIR", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(words, env=env, input=stdin or "", capture_output=True, text=True,
                          check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(words)} failed: {proc.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def mkdir_floor(where: Path, n: int) -> float:
    """What the disk takes for the dirs of ``n`` local jobs (a dir, log/, output/ each),
    made by a bare loop of os.mkdir in this process: no kong can be faster."""
    base = Path(tempfile.mkdtemp(dir=where))
    start = time.perf_counter()
    for i in range(n):
        job = base / str(i)
        os.mkdir(job, 0o700)
        os.mkdir(job / "log", 0o700)
        os.mkdir(job / "output", 0o700)
    elapsed = time.perf_counter() - start
    shutil.rmtree(base)
    return elapsed


def job_count(home: Path) -> int:
    with sqlite3.connect(home / "kong.sqlite") as conn:
        return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per command (even)")
    parser.add_argument("--loop", type=int, default=50, help="jobs made by the shell loop")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    args = parser.parse_args()
    n = args.jobs
    lines_file = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)  # noqa: SIM115
    with lines_file:
        lines_file.write("".join(f"python sim.py --seed {i}\n" for i in range(n)))
    repl_lines = "".join(f"create_job -- python sim.py --seed {i}\n" for i in range(n))
    rows: list[tuple[str, str, float, float | None, str]] = []
    try:
        for profile in ("local", "cluster"):
            home = Path(tempfile.mkdtemp(prefix="kong-bench-create-"))
            (home / "config.yml").write_text(CONFIG)
            (home / "config.yml").chmod(0o600)
            try:
                run(home, [*KONG, "ls"])  # creates and migrates the database
                p = ["--profile", profile]
                cases = {
                    f"kong sweep ({n} jobs)": (
                        [*KONG, "sweep", "python sim.py --x {x} --seed {seed}", *p,
                         "-p", "x=0.1,0.2", "-p", f"seed=1..{n // 2}"], None),
                    f"kong create-job --from-file FILE ({n})": (
                        [*KONG, "create-job", *p, "--from-file", lines_file.name], None),
                    f"kong create-job --from-file - ({n}, stdin)": (
                        [*KONG, "create-job", *p, "--from-file", "-"],
                        "".join(f"python sim.py --seed {i}\n" for i in range(n))),
                    f"{n} create_job lines piped into kong": (
                        [*KONG, *(["-p", profile])], repl_lines),
                }
                if profile == "local":
                    floor = statistics.median(mkdir_floor(home, n) for _ in range(args.repeat))
                    rows.append((profile, f"floor: os.mkdir of {n} jobs' dirs (3 each)",
                                 floor, None, "-"))
                startup = [run(home, [*KONG, "ls", "/"]) for _ in range(args.repeat)]
                rows.append((profile, "floor: kong ls / (any kong command's start-up)",
                             statistics.median(r[0] for r in startup),
                             statistics.median(r[1] for r in startup), "-"))
                for name, (words, stdin) in cases.items():
                    before = job_count(home)
                    runs = [run(home, words, stdin) for _ in range(args.repeat)]
                    made = job_count(home) - before
                    assert made == n * args.repeat, f"{name}: made {made} jobs"
                    t = statistics.median(r[0] for r in runs)
                    cpu = statistics.median(r[1] for r in runs)
                    rows.append((profile, name, t, cpu, "yes" if t < TARGET else "NO"))
                loop = (f"for i in $(seq {args.loop}); do {shlex.join(KONG)} create-job "
                        f"--profile {profile} -- python sim.py --seed $i >/dev/null; done")
                before = job_count(home)
                t_loop, cpu_loop = run(home, ["sh", "-c", loop])
                assert job_count(home) - before == args.loop
                rows.append((profile, f"kong create-job in a shell loop ({args.loop} jobs, "
                             f"measured)", t_loop, cpu_loop, "-"))
                scale = n / args.loop
                rows.append((profile, f"  the same loop scaled to {n} jobs",
                             t_loop * scale, cpu_loop * scale,
                             "NO" if t_loop * scale >= TARGET else "yes"))
            finally:
                shutil.rmtree(home, ignore_errors=True)
    finally:
        os.unlink(lines_file.name)
    width = max(len(r[1]) for r in rows)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'profile':8}  {'command':{width}}  {'wall s':>8}  {'cpu s':>8}  under {TARGET:g} s")
    for profile, name, seconds, cpu, ok in rows:
        cpu_text = f"{cpu:8.2f}" if cpu is not None else f"{'-':>8}"
        print(f"{profile:8}  {name:{width}}  {seconds:8.2f}  {cpu_text}  {ok}")
    loops = {r[0]: r[2] for r in rows if r[1].startswith("  the same loop")}
    sweeps = {r[0]: r[2] for r in rows if r[1].startswith("kong sweep")}
    for profile in loops:
        print(f"{profile}: one kong sweep is {loops[profile] / sweeps[profile]:.0f}x faster "
              f"than the shell loop")
    wanted = [r for r in rows if r[1].startswith("kong ")]
    return 0 if all(r[4] != "NO" for r in wanted if "loop" not in r[1]) else 1


if __name__ == "__main__":
    sys.exit(main())
