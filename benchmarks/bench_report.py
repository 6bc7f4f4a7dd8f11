#!/usr/bin/env python3
"""Benchmark: ``kong report`` on a folder of 1,000 finished jobs.

Creates a fresh KONG_HOME with /bench/report holding N finished jobs whose data
carries usage as the drivers store it (bulk insert with SQLAlchemy core; mixed
end reasons, memory and CPU figures), then prints the time of

* ``State.report("/bench/report")`` warm (repeated, median);
* ``kong report /bench/report`` as a subprocess with stdout to a file (whole command,
  median of 3), beside ``kong ls`` of the same folder (the same start-up and reads);

beside the floor measured in the same run: reading the same rows' ``data`` with
one SELECT and ``json.loads``, which any report from stored data must do; and the
round trips the report made (0: every job has its usage stored; jobs without it
cost one scheduler query per cluster, tests/test_accounting.py).

    python benchmarks/bench_report.py [--jobs 1000] [--repeat 5] [--home DIR]
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

_BESIDE = Path(sys.executable).with_name("kong")
KONG = str(_BESIDE) if _BESIDE.exists() else (shutil.which("kong") or "kong")

TARGET = 1.0  # seconds, issue 20


def populate(n: int) -> None:
    from sqlalchemy import Table, insert

    from kong import db
    from kong.model import Job, JobStatus
    from kong.model.base import utcnow
    from kong.state import State

    state = State.get_instance()
    folder = state.mkdir("/bench/report", create_parent=True)
    assert folder is not None
    now = utcnow()
    reasons = ["EXIT(0)"] * 7 + ["TIMEOUT", "OUT_OF_MEMORY", "EXIT(1)"]
    rows: list[dict[str, Any]] = []
    for i in range(n):
        reason = reasons[i % len(reasons)]
        usage = {"source": "sacct", "elapsed": 600.0 + i % 300, "cpu_time": 300.0 + i % 250,
                 "max_rss_mb": 100.0 + (i * 37) % 1900, "cpus": 1 + i % 4,
                 "req_mem_mb": 2000.0}
        rows.append({
            "driver": "local", "profile": "local", "folder_id": folder.folder_id,
            "command": f"python simulate.py --seed {i}",
            "status": JobStatus.COMPLETED if reason == "EXIT(0)" else JobStatus.FAILED,
            "batch_job_id": str(100000 + i),
            "data": {"options": {}, "end_reason": reason, "usage": usage,
                     "submit_time": "2026-12-01T10:00:00", "start_time": "2026-12-01T10:01:00",
                     "end_time": "2026-12-01T10:11:00"},
            "created_at": now, "updated_at": now, "cores": 1 + i % 4, "memory": 2000,
        })
    table = Job.__table__
    assert isinstance(table, Table)
    with db.write() as s:
        s.execute(insert(table), rows)


def floor(folder: str) -> float:
    """One SELECT of the rows' data and json.loads of each: the least any report does."""
    import sqlite3

    from kong import db

    path = db.engine().url.database
    assert path
    t0 = time.perf_counter()
    con = sqlite3.connect(path)
    rows = con.execute("SELECT j.data FROM jobs j JOIN folders f ON j.folder_id = f.folder_id "
                       "WHERE f.name = ?", (folder.rsplit("/", 1)[-1],)).fetchall()
    for (data,) in rows:
        json.loads(data)
    con.close()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--home")
    args = parser.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="kong-bench-report-"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["KONG_HOME"] = str(home)
    os.environ.setdefault("KONG_AGENT", "0")

    import kong.remote
    from kong.state import State

    populate(args.jobs)
    state = State.get_instance()
    transport = kong.remote.transport_for(state.config.profile("local"))
    before = transport.stats.round_trips
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        (rep,) = state.report("/bench/report")
        times.append(time.perf_counter() - t0)
    trips = transport.stats.round_trips - before
    assert rep.jobs == args.jobs and rep.no_usage == 0
    floors = [floor("/bench/report") for _ in range(args.repeat)]
    def whole(*argv: str) -> float:
        with tempfile.TemporaryFile("w+") as out:
            t0 = time.perf_counter()
            subprocess.run([KONG, *argv], stdout=out, check=True,
                           env={**os.environ, "KONG_HOME": str(home)})
            return time.perf_counter() - t0

    # the peer: `kong ls` of the same folder pays the same start-up and row reads
    cli = statistics.median(whole("report", "/bench/report") for _ in range(3))
    ls = statistics.median(whole("ls", "/bench/report") for _ in range(3))
    warm, base = statistics.median(times), statistics.median(floors)
    print(f"{'benchmark':<28} {'N':>6} {'kong s':>8} {'floor s':>8} {'ratio':>7} "
          f"{'round trips':>11} {'target s':>8}")
    print(f"{'State.report (warm)':<28} {args.jobs:>6} {warm:>8.3f} {base:>8.3f} "
          f"{warm / base:>6.1f}x {trips // args.repeat:>11} {TARGET:>8.1f}")
    print(f"{'kong report (process)':<28} {args.jobs:>6} {cli:>8.3f} {ls:>8.3f} "
          f"{cli / ls:>6.1f}x {0:>11} {TARGET:>8.1f}")
    print("floor of State.report: one SELECT of the rows' data + json.loads (same run);\n"
          "peer of the process: `kong ls` of the same folder (same start-up, same run)")
    if not args.home:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
