"""What jobs used and when they ran, end to end on the local driver (real processes):
a CPU-bound job and a memory-hungry one report what they really did, times and end
reasons show in ``ls``/``info``/``--json``, and ``kong report`` sums a folder.

The same figures on Slurm and HTCondor are in tests/test_accounting_clusters.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

import kong.remote
from kong import db
from kong.model import Job, JobStatus
from kong.state import State
from kong.usage import efficiency
from tests.kongcmd import KONG

#: a job that holds 200 MiB of touched memory for a second (RSS, not just reserved)
HOG_200MB = (f"{sys.executable} -c 'import time; b = bytearray(200 * 1024 * 1024); "
             "b[::4096] = b\"x\" * len(b[::4096]); time.sleep(1)'")
#: a job that burns one CPU for about 1.5 s
SPIN = (f"{sys.executable} -c 'import time\nt = time.process_time()\n"
        "while time.process_time() - t < 1.5: pass'")


def finish(state: State, jobs: list[Job], timeout: int = 60) -> None:
    state.wait([j.job_id for j in jobs], notify=False, timeout=timeout, poll_interval=0.05)


def test_local_cpu_bound_and_memory_hungry_jobs_report_what_they_did(state: State) -> None:
    spin = state.create_job(command=SPIN, cores=1)
    hog = state.create_job(command=HOG_200MB, cores=2, memory=400)
    state.submit_job([spin.job_id, hog.job_id])
    finish(state, [spin, hog])
    assert spin.status == hog.status == JobStatus.COMPLETED

    used = spin.data["usage"]
    assert used["cpu_time"] == pytest.approx(1.5, rel=0.2)
    assert used["elapsed"] >= used["cpu_time"] * 0.9
    assert used["cpus"] == 1
    spin_cpu = used["cpu_time"]
    assert 0 < efficiency(used)["cpu_efficiency"] <= 1.05  # type: ignore[operator]

    used = hog.data["usage"]
    assert used["max_rss_mb"] == pytest.approx(200, rel=0.2)
    assert used["req_mem_mb"] == 400
    assert used["cpus"] == 2
    assert used["cpu_time"] < used["elapsed"]  # mostly asleep
    assert used["cpu_time"] < spin_cpu / 2
    assert efficiency(used)["memory_efficiency"] == pytest.approx(0.5, rel=0.2)
    for job in (spin, hog):
        assert job.data["end_reason"] == "EXIT(0)"
        assert job.data["start_time"] <= job.data["end_time"]


def test_local_end_reasons(state: State) -> None:
    failed = state.create_job(command="exit 3")
    killed_by_signal = state.create_job(command="kill -9 $$")
    timeout = state.create_job(command="sleep 30", walltime="00:00:01", kill_grace=1)
    state.submit_job([failed.job_id, killed_by_signal.job_id, timeout.job_id])
    finish(state, [failed, killed_by_signal, timeout])
    assert [j.data["end_reason"] for j in (failed, killed_by_signal, timeout)] == [
        "EXIT(3)", "SIGNAL(9)", "TIMEOUT"]
    assert all(j.status == JobStatus.FAILED for j in (failed, killed_by_signal, timeout))


def kong_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KONG, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KONG_HOME": str(home)})


def test_json_and_info_show_times_usage_and_reason(state: State, kong_home: Path) -> None:
    job = state.create_job(command="exit 3")
    state.submit_job(job.job_id)
    finish(state, [job])
    out = kong_cli(kong_home, "ls", "--json", "/")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["jobs"]
    row = next(r for r in rows if r["job_id"] == job.job_id)
    assert row["end_reason"] == "EXIT(3)"
    assert row["run_time"] is not None and row["run_time"] >= 0
    assert row["queue_wait"] is not None and row["queue_wait"] >= 0
    assert row["start_time"] and row["end_time"] and row["submit_time"]
    assert row["usage"]["cpu_time"] is not None
    info = kong_cli(kong_home, "info", str(job.job_id))
    assert info.returncode == 0, info.stderr
    assert "EXIT(3)" in info.stdout and "run time" in info.stdout


def round_trips(state: State, profile: str = "local") -> int:
    return kong.remote.transport_for(state.config.profile(profile)).stats.round_trips


def test_report_of_a_folder(state: State, kong_home: Path) -> None:
    state.mkdir("/runs/a", create_parent=True)
    spin = state.create_job(command=SPIN, folder="/runs/a")
    hog = state.create_job(command=HOG_200MB, memory=400, folder="/runs/a")
    failed = state.create_job(command="exit 3", memory=100, folder="/runs/a")
    state.submit_job("/runs/a")
    finish(state, [spin, hog, failed])

    (rep,) = state.report("/runs/a")
    assert (rep.folder, rep.jobs, rep.finished, rep.no_usage) == ("/runs/a", 3, 3, 0)
    assert rep.by_reason == {"EXIT(0)": 2, "EXIT(3)": 1}
    figures = rep.as_dict()
    assert figures["memory_used_mb"]["max"] == pytest.approx(200, rel=0.2)
    assert figures["memory_requested_mb"] == {"median": 250.0, "max": 400.0}
    # the hog used half of its 400 MB: its ratio falls in the 40-50% or 50-60% bin
    hist = figures["memory_histogram"]
    assert hist["40-50%"] + hist["50-60%"] == 1 and sum(hist.values()) == 2
    assert rep.core_hours_used == pytest.approx(
        sum(j.data["usage"]["cpu_time"] for j in (spin, hog, failed)) / 3600)
    assert rep.core_hours_wasted > 0

    out = kong_cli(kong_home, "report", "-r", "/runs")
    assert out.returncode == 0, out.stderr
    assert "/runs/a: 3 jobs, 1 failed" in out.stdout.replace("2 completed, ", "")
    assert "EXIT(0) 2, EXIT(3) 1" in out.stdout
    assert "memory used / requested:" in out.stdout
    as_json = json.loads(kong_cli(kong_home, "report", "--json", "/runs/a").stdout)
    assert as_json[0]["by_end_reason"] == {"EXIT(0)": 2, "EXIT(3)": 1}


def test_report_asks_once_for_usage_it_lacks(state: State) -> None:
    """Jobs that ended before kong kept usage (rows of an older kong: no ``usage`` in
    their data) get it from one scheduler query per cluster, then from storage."""
    jobs = [state.create_job(command="true") for _ in range(5)]
    state.submit_job([j.job_id for j in jobs])
    finish(state, jobs)
    with db.write() as s:  # as an older kong left them
        for job in s.scalars(select(Job)):
            job.data = {k: v for k, v in (job.data or {}).items() if k != "usage"}
    before = round_trips(state)
    (rep,) = state.report("/")
    assert round_trips(state) - before == 1
    assert rep.no_usage == 0 and len(rep.cpu_eff) == 5
    before = round_trips(state)
    state.report("/")
    assert round_trips(state) == before  # stored now: no query at all


def test_report_says_n_a_where_nothing_was_recorded(state: State, kong_home: Path) -> None:
    job = state.create_job(command="true")
    state.submit_job(job.job_id)
    finish(state, [job])
    with db.write() as s:
        for row in s.scalars(select(Job)):
            row.data = {**(row.data or {}), "usage": {"source": "sacct"}}
    (rep,) = state.report("/", query=False)
    assert rep.no_usage == 1 and rep.mem_used == [] and rep.cpu_eff == []
    out = kong_cli(kong_home, "report", "--no-query", "/")
    assert "memory used      median n/a, max n/a" in out.stdout
    assert "no usage recorded for 1 finished job" in out.stdout
    info = kong_cli(kong_home, "info", str(job.job_id)).stdout
    assert re.search(r"peak memory\s+n/a", info) and re.search(r"cpu efficiency\s+n/a", info)


def test_ls_filters_by_end_reason(state: State, kong_home: Path) -> None:
    ok = state.create_job(command="true")
    bad = state.create_job(command="exit 3")
    slow = state.create_job(command="sleep 30", walltime="00:00:01", kill_grace=1)
    state.submit_job([ok.job_id, bad.job_id, slow.job_id])
    finish(state, [ok, bad, slow])

    def ids(*args: str) -> list[int]:
        out = kong_cli(kong_home, "ls", "--json", *args, "/")
        assert out.returncode == 0, out.stderr
        return [r["job_id"] for r in json.loads(out.stdout)["jobs"]]
    assert ids("-s", "timeout") == [slow.job_id]
    assert ids("-s", "exit(3)") == [bad.job_id]
    assert ids("-s", "exit") == [ok.job_id, bad.job_id]
    assert ids("-s", "completed", "-s", "timeout") == [ok.job_id, slow.job_id]
    listing = kong_cli(kong_home, "ls", "/").stdout.splitlines()
    assert listing[0].split()[:6] == ["id", "batch", "id", "status", "reason", "age"]
    row = next(line.split() for line in listing if line.split()[0] == str(slow.job_id))
    assert row[2:4] == ["FAILED", "TIMEOUT"]  # local jobs: batch id "-"
    refused = kong_cli(kong_home, "ls", "-s", "sloww", "/")
    assert refused.returncode != 0 and "is no status or end reason" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_report_in_the_shell(state: State, kong_home: Path) -> None:
    """The REPL runs the same command: ``cd`` then ``report`` of the current folder."""
    state.mkdir("/r")
    job = state.create_job(command="exit 2", folder="/r")
    state.submit_job(job.job_id)
    finish(state, [job])
    proc = subprocess.run(KONG, env={**os.environ, "KONG_HOME": str(kong_home)},
                          input="cd /r\nreport\n", capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("/r: 1 job, 1 failed\n  end reasons      EXIT(2) 1\n")
