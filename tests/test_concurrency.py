"""Two kong processes on one database at once: no "database is locked", nothing lost.

One process creates jobs in a loop (submitting every tenth, so there is something to
refresh); the other lists, counts and refreshes through the State API, which writes
status updates while the first writes new rows. Both are real processes on a real
SQLite file. ``KONG_CONCURRENCY_SECONDS`` sets how long they run (default 20).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kong.state import State

SECONDS = float(os.environ.get("KONG_CONCURRENCY_SECONDS", "20"))

CREATOR = """
import json, sys, time, kong
until, out = float(sys.argv[1]), sys.argv[2]
state = kong.get_instance()
state.mkdir("/load", exist_ok=True)
created = []
n = 0
while time.time() < until:
    n += 1
    job = state.create_job(command="true", folder="/load" if n % 2 else "/")
    created.append(job.job_id)
    if n % 10 == 0:
        state.submit_job(created[-10:])
    if n % 50 == 0:
        state.mkdir(f"/load/f{n}")
        state.mv(str(job.job_id), f"/load/f{n}")
with open(out, "w") as fh:
    json.dump(created, fh)
"""

READER = """
import json, sys, time, kong
until, out = float(sys.argv[1]), sys.argv[2]
state = kong.get_instance()
loops = refreshed = 0
seen = 0
while time.time() < until:
    loops += 1
    folders, jobs = state.ls("/", refresh=True, recursive=True)
    refreshed += len(jobs)
    assert len(jobs) >= seen, (len(jobs), seen)  # jobs only ever appear
    seen = len(jobs)
    state.folder_counts(folders)
    counts = state.status_counts("/")
    assert sum(counts.values()) >= seen
    if jobs:
        state.get_jobs(f"1..{jobs[-1].job_id}")
    try:
        state.ls("/load/*")
    except kong.state.KongError:
        pass
with open(out, "w") as fh:
    json.dump({"loops": loops, "seen": seen, "refreshed": refreshed}, fh)
"""


@pytest.mark.slow
def test_two_processes_hammering_one_database(kong_home: Path, tmp_path: Path) -> None:
    State.get_instance()  # the database exists before the race starts
    until = time.time() + 1 + SECONDS
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", code, str(until), str(tmp_path / f"{name}.json")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for name, code in (("creator", CREATOR), ("reader", READER))
    }
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=SECONDS + 120)
        assert "database is locked" not in stdout + stderr
        assert proc.returncode == 0, f"{name} failed:\n{stderr}"
        assert stderr.strip() == "", f"{name} wrote to stderr:\n{stderr}"
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())

    created: list[int] = results["creator"]
    print(f"created {len(created)} jobs; reader: {results['reader']}")
    reader = results["reader"]
    assert len(created) > 100, "the creator made too few jobs to prove anything"
    assert reader["loops"] > 5, reader
    assert reader["seen"] > 0, reader

    conn = sqlite3.connect(kong_home / "kong.sqlite")
    try:
        in_db = {row[0] for row in conn.execute("SELECT job_id FROM jobs")}
        statuses = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status"))
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    assert set(created) == in_db
    assert len(created) == len(set(created))
    submitted = len(created) // 10 * 10
    assert sum(n for s, n in statuses.items() if s != "CREATED") == submitted, statuses
