"""Several kong processes on one database at once: no "database is locked", nothing lost.

Two processes: one creates jobs in a loop (submitting every tenth, so there is
something to refresh); the other lists, counts and refreshes through the State API,
which writes status updates while the first writes new rows. Four processes:
creating, listing, submitting and removing (``rm -r``) with the local driver's
runner. What a user would notice: a traceback, a job row that vanished though nobody
removed it, a job that ran twice, a removed job still running, a job shown CREATED
that already ran, jobs that never finish. All real processes on a real SQLite file.
``KONG_CONCURRENCY_SECONDS`` sets how long they run (default 20; the issue's 60 s:
``KONG_CONCURRENCY_SECONDS=60``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from kong.state import State
from tests.fixtures_state import write_config
from tests.kongcmd import KONG

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


# Each writes what it did to OUT as JSON lines as it goes, so a crash loses nothing.
FOUR_PRELUDE = """
import json, random, sys, time, kong
from kong.errors import KongError
until, out, ran = float(sys.argv[1]), open(sys.argv[2], "a", buffering=1), sys.argv[3]
state = kong.get_instance()
def note(**what):
    out.write(json.dumps(what) + "\\n")
user_errors = 0
"""

FOUR_CREATOR = FOUR_PRELUDE + """
n = 0
while time.time() < until:
    n += 1
    folder = f"/load/f{n // 20}"
    try:
        if n % 20 == 0 or n == 1:
            state.mkdir(folder, exist_ok=True)
        job = state.create_job(command=f'echo "$KONG_JOB_ID" >> {ran}', folder=folder)
    except KongError as exc:  # the folder was removed meanwhile: a clear one-line refusal
        note(error=str(exc))
        continue
    note(created=job.job_id, folder=folder)
"""

FOUR_SUBMITTER = FOUR_PRELUDE + """
while time.time() < until:
    try:
        jobs = state.submit_job("/load", recursive=True)
        note(submitted=[j.job_id for j in jobs])
    except KongError as exc:
        note(error=str(exc))
    time.sleep(0.05)
"""

FOUR_LISTER = FOUR_PRELUDE + """
while time.time() < until:
    try:
        folders, jobs = state.ls("/load", refresh=True, recursive=True)
        state.folder_counts(folders)
        state.status_counts("/")
        rows = [(j.job_id, j.status.name) for j in jobs]
        note(listed=len(rows))
    except KongError as exc:
        note(error=str(exc))
"""

FOUR_REMOVER = FOUR_PRELUDE + """
rng = random.Random()
while time.time() < until:
    time.sleep(0.2)
    try:
        folders, jobs = state.ls("/load")
        if len(folders) > 2:
            victim = folders[0].path  # the oldest: its jobs may still be queued or running
            note(removing_folder=victim)  # an rm that fails for some jobs removes the rest
            state.rm(victim, recursive=True)
            note(removed_folder=victim)
        elif jobs:
            job = rng.choice(list(jobs))
            note(removing_job=job.job_id)
            state.rm(str(job.job_id))
            note(removed_job=job.job_id)
    except KongError as exc:
        note(error=str(exc))
"""


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_four_processes_create_list_submit_and_remove(kong_home: Path, tmp_path: Path) -> None:
    write_config(kong_home, "profiles:\n  local:\n    driver: local\n    max_parallel: 4\n")
    state = State.get_instance()
    state.mkdir("/load")
    ran = tmp_path / "ran"
    until = time.time() + 2 + SECONDS
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", code, str(until), str(tmp_path / f"{name}.jsonl"), str(ran)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        for name, code in (("creator", FOUR_CREATOR), ("submitter", FOUR_SUBMITTER),
                           ("lister", FOUR_LISTER), ("remover", FOUR_REMOVER))
    }
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=SECONDS + 240)
        assert "Traceback" not in stdout + stderr, f"{name}:\n{stderr}"
        assert proc.returncode == 0, f"{name} failed:\n{stderr}"
    notes = {name: _lines(tmp_path / f"{name}.jsonl") for name in procs}
    errors = Counter(str(n["error"]) for ns in notes.values() for n in ns if "error" in n)
    print("user errors:", dict(errors))
    print(f"created {sum('created' in n for n in notes['creator'])} jobs, removed "
          f"{sum('removed_folder' in n for n in notes['remover'])} folders, "
          f"{sum(len(n.get('submitted') or ()) for n in notes['submitter'])} submitted")
    created = {int(str(n["created"])): str(n["folder"]) for n in notes["creator"] if "created" in n}
    removed_folders = {str(n["removed_folder"]) for n in notes["remover"] if "removed_folder" in n}
    assert len(created) > 50 and removed_folders
    # asked to be removed (an rm that refused some of its jobs removed the others)
    removed_folders |= {str(n["removing_folder"]) for n in notes["remover"]
                        if "removing_folder" in n}
    removed_jobs = {int(str(n["removing_job"])) for n in notes["remover"] if "removing_job" in n}
    assert any(n.get("submitted") for n in notes["submitter"])

    conn = sqlite3.connect(kong_home / "kong.sqlite")
    try:
        rows = dict(conn.execute("SELECT job_id, status FROM jobs"))
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    base = Path(state.default_driver.base_dir)

    gone = set(created) - set(rows)
    unexplained = sorted(
        j for j in gone if j not in removed_jobs and created[j] not in removed_folders
    )
    assert not unexplained, f"rows lost though nobody removed them: {unexplained[:20]}"
    left_behind = sorted(j for j in gone if (base / str(j)).exists())
    assert not left_behind, f"removed jobs whose files remain: {left_behind[:20]}"
    counts = Counter(int(line) for line in ran.read_text().split()) if ran.exists() else Counter()
    twice = sorted(j for j, n in counts.items() if n > 1)
    assert not twice, f"ran twice: {twice[:20]}"
    created_but_ran = sorted(
        j for j, status in rows.items()
        if status == "CREATED" and (j in counts or (base / str(j) / "state").exists())
    )
    assert not created_but_ran, f"rows CREATED whose jobs ran: {created_but_ran[:20]}"

    # whatever is left is submitted once more and finishes: nothing hangs UNKNOWN
    env = {**os.environ}
    submit = subprocess.run([*KONG, "submit", "-r", "/load"], capture_output=True, text=True,
                            timeout=120, env=env)
    assert submit.returncode == 0, submit.stderr
    done = subprocess.run([*KONG, "wait", "-q", "-r", "-t", "120", "-i", "0.2", "/load"],
                          capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, (done.stdout, done.stderr)
    counts = Counter(int(line) for line in ran.read_text().split())
    survivors = {j for j in created if j not in gone}
    assert survivors <= set(counts), f"never ran: {sorted(survivors - set(counts))[:20]}"
    assert max(counts.values()) == 1
