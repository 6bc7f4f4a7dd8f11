"""The local driver on a remote host without a scheduler, through the SSH transport.

This is the transport proven end to end: kong uploads the job scripts and its
runner over SSH, the runner detaches on the host, and status, logs, kill and rm
all go through the same pooled connection.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kong.config import Config
from kong.drivers.local import LocalDriver
from kong.model.job import JobStatus
from kong.state import State
from tests.clusters import Cluster
from tests.fixtures_state import make_state

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


@pytest.fixture
def remote(kong_home: Path, sshd_server: Cluster) -> State:
    block: dict[str, Any] = {**sshd_server.profile(), "driver": "local", "max_parallel": 4}
    config = Config(data={"default_profile": "box", "profiles": {"box": block}})
    return make_state(config)


def driver(state: State) -> LocalDriver:
    d = state.default_driver
    assert isinstance(d, LocalDriver)
    return d


def test_jobs_run_on_the_remote_host(remote: State, sshd_server: Cluster) -> None:
    remote.mkdir("/r")
    remote.cd("/r")
    jobs = [
        remote.create_job(command=f'echo "id=$KONG_JOB_ID host=$(hostname)"; exit {i % 2}')
        for i in range(6)
    ]
    stats = driver(remote).transport.stats
    driver(remote).base_dir  # noqa: B018 - learn the remote home before counting
    before = stats.round_trips
    remote.submit_job("/r")
    assert stats.round_trips - before == 2  # one upload, one runner start

    remote.wait("/r", notify=False, timeout=60, poll_interval=0.3)
    assert [j.status for j in jobs] == [
        JobStatus.COMPLETED if i % 2 == 0 else JobStatus.FAILED for i in range(6)
    ]
    assert [j.data["exit_code"] for j in jobs] == [i % 2 for i in range(6)]
    with jobs[3].stdout() as fh:
        assert fh.read().startswith(f"id={jobs[3].job_id} host=")
    # the log lives on the remote host, in the job's dir under the remote home
    code, out = sshd_server.exec(["cat", f"{jobs[3].log_dir}/stdout.txt"])
    assert code == 0 and f"id={jobs[3].job_id}" in out


def test_kill_and_rm_reach_the_remote_host(remote: State, sshd_server: Cluster) -> None:
    remote.mkdir("/k")
    job = remote.create_job(command="sleep 300", folder="/k")
    remote.submit_job(job)
    deadline = time.monotonic() + 30
    while remote.refresh_jobs([job]) and job.status != JobStatus.RUNNING:
        assert time.monotonic() < deadline, f"job never ran: {job.status}"
        time.sleep(0.3)
    remote.kill_job(job)
    assert job.status == JobStatus.FAILED
    deadline = time.monotonic() + 10
    while sshd_server.exec(["pgrep", "-f", "sleep 300"])[0] == 0:
        assert time.monotonic() < deadline, "the killed job still runs on the host"
        time.sleep(0.3)

    job_dir = driver(remote).job_paths(job).job_dir
    assert sshd_server.exec(["test", "-d", job_dir])[0] == 0
    remote.rm(job)
    assert sshd_server.exec(["test", "-d", job_dir])[0] != 0
