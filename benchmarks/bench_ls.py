#!/usr/bin/env python3
"""Benchmark: listing and counting 100,000 jobs in one folder.

Creates a fresh KONG_HOME with /bench/big holding N jobs (bulk insert with
SQLAlchemy core, mixed statuses), then prints the time of

* ``State.ls("/bench/big")`` in a fresh process (first call) and warm (repeated);
* ``kong ls /bench/big`` as a subprocess with stdout to a file (whole command);
* ``State.status_counts("/bench")``, the per-status counts of the parent folder,

against the targets of issue 2, and the query plan of the counts query (it must
read only the ``(folder_id, status)`` index, never the table).

    python benchmarks/bench_ls.py [--jobs 100000] [--repeat 5] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The console script beside this interpreter: a version manager's shim on PATH
# (pyenv's adds 0.3-0.8 s) would be measured as kong's start-up.
_BESIDE = Path(sys.executable).with_name("kong")
KONG = str(_BESIDE) if _BESIDE.exists() else (shutil.which("kong") or "kong")

TARGETS = {"State.ls (fresh process)": 0.5, "State.ls (warm)": 0.5, "kong ls": 1.0,
           "status_counts (GROUP BY)": 0.05}

FRESH_LS = """
import json, sys, time
t0 = time.perf_counter()
import kong
state = kong.get_instance()
t1 = time.perf_counter()
folders, jobs = state.ls(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"startup": t1 - t0, "ls": t2 - t1, "n": len(jobs)}))
"""


def populate(n: int) -> None:
    from sqlalchemy import Table, insert

    from kong import db
    from kong.model import Job, JobStatus
    from kong.model.base import utcnow
    from kong.state import State

    state = State.get_instance()
    big = state.mkdir("/bench/big", create_parent=True)
    assert big is not None
    state.mkdir("/bench/small")
    state.create_job(command="true", folder="/bench/small")
    cycle = [JobStatus.COMPLETED] * 6 + [JobStatus.FAILED, JobStatus.RUNNING,
                                         JobStatus.SUBMITTED, JobStatus.CREATED]
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "driver": "local", "profile": "local", "folder_id": big.folder_id,
            "command": f"python simulate.py --seed {i} --out run-{i}.h5",
            "status": cycle[i % len(cycle)], "batch_job_id": str(100000 + i) if i % 10 else None,
            "data": {"options": {}}, "created_at": now, "updated_at": now, "cores": 1,
            "memory": None,
        }
        for i in range(n)
    ]
    table = Job.__table__
    assert isinstance(table, Table)
    with db.write() as s:
        for start in range(0, n, 20000):
            s.execute(insert(table), rows[start : start + 20000])
    db.engine().dispose()


def timed(fn: Any, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def counts_query_plan(state: Any) -> tuple[list[str], bool]:
    """The EXPLAIN QUERY PLAN of the exact SQL ``status_counts`` runs."""
    from sqlalchemy import event

    from kong import db

    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        captured.append((statement, params))

    engine = db.engine()
    event.listen(engine, "before_cursor_execute", capture)
    try:
        state.status_counts("/bench")
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    statement, params = next((s, p) for s, p in captured if "GROUP BY" in s.upper())
    with engine.connect() as conn:
        plan = [str(row[3]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}",
                                                            params)]
    on_jobs = [p for p in plan if " jobs" in f" {p}" or "ix_jobs" in p]
    index_only = bool(on_jobs) and all("COVERING INDEX" in p for p in on_jobs)
    return plan, index_only


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--home", help="KONG_HOME to create (default: a new temp dir)")
    args = parser.parse_args()

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="kong-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    if (home / "kong.sqlite").exists():
        sys.exit(f"{home} already has a database; give a new --home")
    os.environ["KONG_HOME"] = str(home)
    os.environ.pop("KONG_CONFIG_DIR", None)
    env = {**os.environ}

    t = time.perf_counter()
    populate(args.jobs)
    print(f"KONG_HOME={home}: inserted {args.jobs:,} jobs into /bench/big "
          f"in {time.perf_counter() - t:.1f} s")

    results: dict[str, list[float]] = {}
    startup: list[float] = []
    fresh: list[float] = []
    for _ in range(args.repeat):
        proc = subprocess.run([sys.executable, "-c", FRESH_LS, "/bench/big"], env=env,
                              capture_output=True, text=True, check=True)
        info = json.loads(proc.stdout)
        assert info["n"] == args.jobs, info
        fresh.append(info["ls"])
        startup.append(info["startup"])
    results["State.ls (fresh process)"] = fresh

    from kong.state import State

    state = State.get_instance()
    assert len(state.ls("/bench/big")[1]) == args.jobs
    results["State.ls (warm)"] = timed(lambda: state.ls("/bench/big"), args.repeat)

    out_file = home / "kong-ls.out"

    def kong_ls() -> None:
        with open(out_file, "w") as fh:
            subprocess.run([KONG, "ls", "/bench/big"], env=env, stdout=fh, check=True)

    results["kong ls"] = timed(kong_ls, args.repeat)
    lines = out_file.read_text().count("\n")

    counts = state.status_counts("/bench")
    assert sum(counts.values()) == args.jobs + 1, counts
    results["status_counts (GROUP BY)"] = timed(lambda: state.status_counts("/bench"),
                                                max(args.repeat, 20))

    print()
    print(f"{'operation':<28}{'best':>9}{'median':>9}{'target':>9}  ok")
    print("-" * 60)
    all_ok = True
    for name, times in results.items():
        best, median, target = min(times), statistics.median(times), TARGETS[name]
        ok = median < target
        all_ok &= ok
        print(f"{name:<28}{best:>8.3f}s{median:>8.3f}s{target:>8.2f}s  {'yes' if ok else 'NO'}")
    print("-" * 60)
    print(f"(fresh process: kong import + get_instance took {statistics.median(startup):.3f} s "
          f"before ls; `kong ls` printed {lines:,} lines)")
    print("counts: " + ", ".join(f"{s.name} {n:,}" for s, n in counts.items() if n))

    plan, index_only = counts_query_plan(state)
    print()
    print("EXPLAIN QUERY PLAN of the status_counts query:")
    for row in plan:
        print(f"  {row}")
    print(f"index-only on jobs: {'yes' if index_only else 'NO'}")
    return 0 if all_ok and index_only else 1


if __name__ == "__main__":
    sys.exit(main())
