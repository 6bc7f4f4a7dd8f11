"""What jobs used and when they ran, end to end on the local driver (real processes):
a CPU-bound job and a memory-hungry one report what they really did, times and end
reasons show in ``ls``/``info``/``--json``, and ``kong report`` sums a folder.

The same figures on Slurm and HTCondor are in tests/test_accounting_clusters.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
                          env={**__import__("os").environ, "KONG_HOME": str(home)})


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
