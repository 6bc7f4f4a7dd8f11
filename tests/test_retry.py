"""Failed jobs retried with more, on the Slurm test cluster (tests/clusters.py).

The image's partition ``short`` allows 2 minutes and 1024 MB per job; memory is
enforced by slurmstepd's polling (OverMemoryKill), so a job over its ``--mem`` is
killed within a second or two. What the scheduler did is checked as root in the
container (``sacct``), never through the transport under test.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from kong.config import Config
from kong.drivers.slurm import SlurmDriver
from kong.model.job import Job, JobStatus
from kong.state import State
from tests.clusters import Cluster, needs_container
from tests.fixtures_state import kong_home, make_state, write_config  # noqa: F401
from tests.kongcmd import KONG

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

POLL = 0.5


def hog(mb: int) -> str:
    """A command that holds ``mb`` MB of touched memory for 3 s (the poller samples
    every second), then says so."""
    return (f"python3 -c 'x = b\"x\" * ({mb} * 1024 * 1024); import time; time.sleep(3)'"
            f" && echo held {mb}")


def slurm_state(cluster: Cluster, retry: dict[str, Any] | None = None) -> State:
    block: dict[str, Any] = {**cluster.profile(), "poll_interval": POLL, "partition": "short"}
    if retry is not None:
        block["retry"] = retry
    return make_state(Config(data={"default_profile": "slurm", "profiles": {"slurm": block}}))


def sacct(cluster: Cluster, job: Job) -> list[tuple[str, ...]]:
    """(state, time limit, requested memory, partition) of every batch job kong submitted
    for ``job``, oldest first, from the accounting database: polled until slurmdbd has
    every attempt's final record (kong may learn of an end from slurmctld first)."""
    ids = [str(h["batch_job_id"]) for h in job.data.get("history", [])] + [
        str(job.batch_job_id)]
    deadline = time.monotonic() + 60
    while True:
        code, out = cluster.exec(f"sacct -X -n -P --noconvert -j {','.join(ids)} "
                                 "-o JobID,State,Timelimit,ReqMem,Partition")
        assert code == 0, out
        rows = {line.split("|")[0]: tuple(line.split("|")[1:]) for line in out.split()}
        if all(i in rows and rows[i][0] in _FINAL and len(rows[i][2]) < 12 for i in ids):
            return [rows[i] for i in ids]
        assert time.monotonic() < deadline, out
        time.sleep(0.5)


_FINAL = ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY")


def limit_queries(driver: SlurmDriver) -> list[int]:
    """Count the driver's calls of ``queue_limits`` (each is a real scontrol query)."""
    calls: list[int] = []
    real = driver.queue_limits

    def counted() -> Any:
        calls.append(1)
        return real()

    driver.queue_limits = counted  # type: ignore[method-assign]
    return calls


def test_over_memory_is_retried_with_more_until_it_fits_and_max_is_kept(
    kong_home: Path, slurm_cluster: Cluster,  # noqa: F811
) -> None:
    """A job over its memory ends OUT_OF_MEMORY and is retried with twice the memory
    until it fits; one that never fits stops after ``max`` retries; one that would need
    more than the partition allows is capped at its maximum, then not retried."""
    needs_container(slurm_cluster)
    kong = slurm_state(slurm_cluster)
    driver = kong.driver("slurm")
    assert isinstance(driver, SlurmDriver)
    asked = limit_queries(driver)
    policy = {"on": ["OUT_OF_MEMORY"], "max": 3, "memory": "x2"}
    fits = kong.create_job(command=hog(300), memory=100, retry=policy)
    never = kong.create_job(command=hog(700), memory=100, retry={**policy, "max": 2})
    capped = kong.create_job(command=hog(1500), memory=400, retry=policy)
    jobs = [fits, never, capped]
    kong.submit_job(jobs)
    kong.wait(jobs, notify=False, timeout=240, poll_interval=POLL)

    assert fits.status == JobStatus.COMPLETED and fits.memory == 400
    assert [(h["end_reason"], h["memory_mb"]) for h in fits.data["history"]] == [
        ("OUT_OF_MEMORY", 100), ("OUT_OF_MEMORY", 200)]
    assert [h["attempt"] for h in fits.data["history"]] == [1, 2]
    assert fits.data["attempt"] == 3 and fits.data["retries"] == 2
    with fits.stdout() as fh:
        assert fh.read() == "held 300\n"
    assert [(row[0], row[2]) for row in sacct(slurm_cluster, fits)] == [
        ("FAILED", "100M"), ("FAILED", "200M"), ("COMPLETED", "400M")]

    assert never.status == JobStatus.FAILED
    assert never.data["end_reason"] == "OUT_OF_MEMORY"
    assert [h["memory_mb"] for h in never.data["history"]] == [100, 200]
    assert never.memory == 400 and never.data["retries"] == 2
    assert never.data["retry_note"] == "not retried: OUT_OF_MEMORY after 2 retries (max 2)"

    # 400 -> 800 -> 1024 (the partition's maximum, not 1600) -> no more
    assert capped.status == JobStatus.FAILED
    assert [h["memory_mb"] for h in capped.data["history"]] == [400, 800]
    assert capped.memory == 1024
    assert capped.data["retry_note"] == (
        f"not retried: job {capped.job_id}: memory 1G is queue short's maximum already; "
        "x2 would exceed it")
    assert [row[2] for row in sacct(slurm_cluster, capped)] == ["400M", "800M", "1024M"]
    assert asked == [1]  # the partitions' limits, once for all retries


def test_timeout_is_resubmitted_once_with_twice_the_walltime_and_completes(
    kong_home: Path, slurm_cluster: Cluster,  # noqa: F811
) -> None:
    """Under the profile's policy ``walltime: x2`` a job over its 1-minute walltime ends
    TIMEOUT, runs again with 2 minutes, and completes. (Slurm keeps limits in minutes
    and checks them every 30 s: the first attempt ends 60-90 s in, so it sleeps 100 s;
    the second, which finds the first one's marker, ends at once: sacct shows that it
    ran under the 2-minute limit.)"""
    needs_container(slurm_cluster)
    kong = slurm_state(slurm_cluster, retry={"on": ["TIMEOUT"], "max": 1, "walltime": "x2"})
    marker = f"/tmp/kong-retry-timeout-{uuid.uuid4().hex}"
    job = kong.create_job(
        command=f"if [ -e {marker} ]; then echo done; else touch {marker}; sleep 100; fi",
        walltime=1)
    kong.submit_job(job)
    kong.wait(job, notify=False, timeout=420, poll_interval=POLL)

    assert job.status == JobStatus.COMPLETED, job.data
    assert job.data["options"]["walltime"] == 2
    assert [(h["end_reason"], h["walltime_minutes"]) for h in job.data["history"]] == [
        ("TIMEOUT", 1)]
    rows = sacct(slurm_cluster, job)
    assert [(row[0], row[1]) for row in rows] == [("TIMEOUT", "00:01:00"),
                                                 ("COMPLETED", "00:02:00")]
    with job.stdout() as fh:
        assert fh.read() == "done\n"
    # kong info shows both attempts and what each asked for
    info = subprocess.run([*KONG, "info", str(job.job_id)], capture_output=True, text=True,
                          timeout=60, env=_env_for(kong, kong_home))
    assert info.returncode == 0, info.stderr
    runs = info.stdout[info.stdout.index("earlier runs"):].splitlines()
    assert "walltime minutes" in runs[1] and "TIMEOUT" in runs[2]


def _env_for(kong: State, home: Path) -> dict[str, str]:
    """The environment of a `kong` command that sees this test's config and database."""
    import os

    import yaml

    write_config(home, yaml.safe_dump(kong.config.data))
    return {**os.environ, "KONG_HOME": str(home)}


def test_resubmit_with_more_is_capped_at_the_partition_then_refused(
    kong_home: Path, slurm_cluster: Cluster,  # noqa: F811
) -> None:
    """`kong resubmit --failed --walltime x4` of a 1-minute job in a 2-minute partition
    asks for 2 minutes and says so; once there, more is refused in one line and the job
    stays as it was."""
    needs_container(slurm_cluster)
    kong = slurm_state(slurm_cluster)
    env = _env_for(kong, kong_home)
    job = kong.create_job(command="exit 3", walltime=1)
    kong.submit_job(job)
    kong.wait(job, notify=False, timeout=120, poll_interval=POLL)
    assert job.status == JobStatus.FAILED and job.data["end_reason"] == "EXIT(3)"

    first = subprocess.run([*KONG, "resubmit", "--failed", "--reason", "exit", "-y",
                            "--walltime", "x4", str(job.job_id)],
                           capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "resubmitted 1 job(s)"
    assert first.stderr.strip() == (f"kong: job {job.job_id}: walltime x4 capped at queue "
                                    "short's maximum 0:02:00 (asked 0:04:00)")
    job.reload()
    kong.wait(job, notify=False, timeout=120, poll_interval=POLL)
    assert [row[1] for row in sacct(slurm_cluster, job)] == ["00:01:00", "00:02:00"]

    second = subprocess.run([*KONG, "resubmit", "--failed", "-y", "--walltime", "+1:00:00",
                             str(job.job_id)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert second.returncode != 0
    assert second.stderr.strip() == (
        f"kong: error: 1 of 1 job(s) could not be resubmitted: job {job.job_id}: walltime "
        "0:02:00 is queue short's maximum already; +1:00:00 would exceed it")
    job.reload()
    assert job.status == JobStatus.FAILED and len(job.data["history"]) == 1


def test_grid_engine_queue_limits_come_from_its_queues(
    kong_home: Path, sge_cluster: Cluster,  # noqa: F811
) -> None:
    """Grid Engine's limits are each queue's own (qconf -sq), read in one round trip;
    the test cluster's all.q has no walltime or memory limit and 8 slots (KONG_CPUS)."""
    needs_container(sge_cluster)
    from kong.drivers.base import QueueLimits

    kong = make_state(Config(data={"default_profile": "sge",
                                   "profiles": {"sge": sge_cluster.profile()}}))
    driver = kong.driver("sge")
    before = driver.transport.stats.round_trips
    limits = driver.queue_limits()
    assert driver.transport.stats.round_trips - before == 1
    code, out = sge_cluster.exec("qconf -sq all.q | grep -E '^(slots|h_rt|h_vmem) '")
    assert code == 0 and "INFINITY" in out, out
    assert limits == {"all.q": QueueLimits(cores=8), "": QueueLimits(cores=8)}
