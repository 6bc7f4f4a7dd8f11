"""The Slurm driver end to end: kong's State API over SSH against the containerized
Slurm clusters of tests/clusters.py (slurmctld, slurmd, slurmdbd with MariaDB).

Assertions about the cluster side are made as root inside the container
(``cluster.exec``), never through the transport under test.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from kong import db
from kong.config import Config
from kong.drivers import slurm
from kong.drivers.slurm import SlurmDriver
from kong.errors import DriverError
from kong.model.job import Job, JobStatus
from kong.state import State
from tests import batchtests as bt
from tests.clusters import Cluster, needs_container
from tests.fixtures_state import make_state

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

POLL = 0.5


def profile(cluster: Cluster) -> dict[str, Any]:
    # one sbatch per job: what these tests count; arrays have tests/test_arrays.py
    return {**cluster.profile(), "poll_interval": POLL, "arrays": False}


@pytest.fixture
def kong(kong_home: Path, slurm_cluster: Cluster) -> State:
    """A State whose default profile is the Slurm cluster."""
    config = Config(data={"default_profile": "slurm",
                          "profiles": {"slurm": profile(slurm_cluster)}})
    return make_state(config)


@pytest.fixture
def kong2(kong_home: Path, slurm_cluster: Cluster, slurm_cluster_b: Cluster) -> State:
    """A State with both Slurm clusters as profiles ``slurm`` and ``slurm_b``."""
    config = Config(data={
        "default_profile": "slurm",
        "profiles": {"slurm": profile(slurm_cluster), "slurm_b": profile(slurm_cluster_b)},
    })
    return make_state(config)


def driver_of(state: State, name: str = "slurm") -> SlurmDriver:
    driver = state.driver(name)
    assert isinstance(driver, SlurmDriver)
    return driver


def round_trips(state: State, action: Callable[[], object], name: str = "slurm") -> int:
    stats = driver_of(state, name).transport.stats
    before = stats.round_trips
    action()
    return stats.round_trips - before


def sacct_names(cluster: Cluster) -> list[str]:
    """Every job name in the accounting database, as root (all users)."""
    out = bt.root(cluster, "sacct -a -X -n -P -S now-1days -o JobName")
    return out.split()


def submissions_per_job(cluster: Cluster) -> Counter[int]:
    """How many times the scheduler got each kong job of this database (any attempt)."""
    return bt.counts_of_names(sacct_names(cluster))


def accounted(cluster: Cluster, submissions: int, settle: float = 0.0) -> Counter[int]:
    """``submissions_per_job`` once sacct has at least ``submissions`` of them (slurmdbd
    learns of jobs a few seconds late), and again after ``settle`` more seconds."""
    return bt.settled_counts(lambda: submissions_per_job(cluster), submissions, settle,
                          what="sacct")


def queued(cluster: Cluster) -> int:
    """kong jobs of this database still in slurmctld's queue (pending/running)."""
    out = bt.root(cluster, f"squeue -h -a -o %j | grep -c '^kong-{db.install_id()}-' || true")
    return int(out.strip().splitlines()[-1])


# -- the big one: 200 jobs, exit codes, lazy stdout ------------------------------------


def test_200_jobs_bulk_with_exit_codes(kong: State, slurm_cluster: Cluster) -> None:
    needs_container(slurm_cluster)
    kong.mkdir("/bulk")
    kong.cd("/bulk")
    jobs = bt.create(kong, 200, lambda i: f"echo out-{i}; echo err-{i} >&2; exit {i % 4}")

    trips = round_trips(kong, lambda: kong.submit_job("/bulk"))
    assert bt.statuses(jobs) == {JobStatus.SUBMITTED: 200}
    assert len({j.batch_job_id for j in jobs}) == 200
    assert trips <= 3  # upload + submit loop (+ the remote home, once per process)

    kong.wait("/bulk", notify=False, timeout=180)
    for i, job in enumerate(jobs):
        data = job.data or {}
        assert data["exit_code"] == i % 4, (job, data)
        if i % 4 == 0:
            assert job.status == JobStatus.COMPLETED and data["scheduler_state"] == "COMPLETED"
        else:
            assert job.status == JobStatus.FAILED and data["scheduler_state"] == "FAILED"
        assert data["node"] and data["submit_time"] and data["start_time"] and data["end_time"]
    assert bt.statuses(jobs) == {JobStatus.COMPLETED: 50, JobStatus.FAILED: 150}
    per_job = accounted(slurm_cluster, 200, settle=2)
    assert len(per_job) == 200 and set(per_job.values()) == {1}

    # Logs stay on the cluster until asked for; then only that one is fetched.
    cache = kong.config.data_dir / "logcache"
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))
    trips = round_trips(kong, lambda: bt.read_log(jobs[7], "stdout"))
    assert bt.read_log(jobs[7], "stdout") == "out-7\n"
    assert bt.read_log(jobs[7], "stderr") == "err-7\n"
    assert trips <= 2
    fetched = [p for p in cache.rglob("*") if p.is_file()]
    assert fetched and all(f"/{jobs[7].job_id}/" in str(p) for p in fetched)


# -- round trips do not grow with the number of jobs; kill -----------------------------


def test_round_trips_and_kill_2_vs_200(kong: State, slurm_cluster: Cluster) -> None:
    needs_container(slurm_cluster)
    costs: dict[int, dict[str, int]] = {}
    for n in (2, 200):
        folder = f"/rt{n}"
        kong.mkdir(folder)
        jobs = bt.create(kong, n, lambda i: "sleep 300", folder=folder)
        costs[n] = {"submit": round_trips(kong, lambda f=folder: kong.submit_job(f))}
        assert bt.statuses(jobs) == {JobStatus.SUBMITTED: n}
        bt.wait_until(lambda js=jobs: _any_running(kong, js), 60, "a job running")
        costs[n]["refresh"] = round_trips(kong, lambda js=jobs: kong.refresh_jobs(js))
        assert all(j.status in (JobStatus.SUBMITTED, JobStatus.RUNNING) for j in jobs)
        costs[n]["kill"] = round_trips(kong, lambda f=folder: kong.kill_job(f))
        assert bt.statuses(jobs) == {JobStatus.FAILED: n}
        assert all((j.data or {}).get("killed") for j in jobs)
    print(f"round trips by number of jobs: {costs}")
    assert costs[2] == costs[200]
    assert costs[2] == {"submit": 2, "refresh": 1, "kill": 1}

    # Killed for real: nothing of ours left in the queue, sacct says CANCELLED.
    bt.wait_until(lambda: queued(slurm_cluster) == 0, 30, "the killed jobs leave the queue")
    accounted(slurm_cluster, 202)
    states = bt.root(slurm_cluster, f"sacct -a -X -n -P -S now-1days -o JobName,State "
                                 f"| grep '^kong-{db.install_id()}-' | cut -d'|' -f2 | sort -u")
    assert {s.split()[0] for s in states.splitlines()} == {"CANCELLED"}
    # A later refresh does not bring them back to life.
    kong.refresh_jobs(kong.get_jobs("/rt200"))
    assert bt.statuses(kong.get_jobs("/rt200")) == {JobStatus.FAILED: 200}


def _any_running(state: State, jobs: Sequence[Job]) -> bool:
    state.refresh_jobs(jobs)
    return any(j.status == JobStatus.RUNNING for j in jobs)


# -- sbatch refusing a job ----------------------------------------------------------------


def test_sbatch_refusal_is_one_clear_error_and_the_rest_runs(kong: State) -> None:
    good = [kong.create_job(command="true") for _ in range(2)]
    bad = kong.create_job(command="true", partition="no_such_partition")
    with pytest.raises(DriverError, match=r"1 of 3 job\(s\) could not be submitted: .*partition"):
        kong.submit_job([j.job_id for j in (*good, bad)])
    assert bad.status == JobStatus.CREATED and not (bad.data or {}).get("submitting")
    assert all(j.status == JobStatus.SUBMITTED for j in good)
    kong.wait([j.job_id for j in good], notify=False, timeout=60)
    assert bt.statuses(good) == {JobStatus.COMPLETED: 2}


# -- walltime ----------------------------------------------------------------------------


# A job over its walltime ends TIMEOUT: tests/test_retry.py's timeout test shows it (its
# first attempt), and that the policy then runs it again with twice the limit.


# -- resubmit failed only, rm ------------------------------------------------------------


def test_resubmit_failed_only_then_rm(kong: State, slurm_cluster: Cluster) -> None:
    needs_container(slurm_cluster)
    bt.resubmit_failed_only_then_rm(kong, slurm_cluster, lambda: submissions_per_job(slurm_cluster),
                                 lambda job: driver_of(kong).job_paths(job).job_dir)

# -- a connection cut in the middle of a bulk submit -------------------------------------


def test_connection_cut_during_submit_no_double_submission(
    kong: State, slurm_cluster: Cluster
) -> None:
    needs_container(slurm_cluster)

    def submitted_so_far() -> int:
        out = bt.root(slurm_cluster, f"squeue -h -a -t all -o %j | grep '^kong-{db.install_id()}-'"
                                  " || true")
        return len(out.split())

    bt.connection_cut_mid_submit(kong, slurm_cluster, 200, submitted_so_far,
                              lambda: submissions_per_job(slurm_cluster), cut_after=20)

# -- two clusters ------------------------------------------------------------------------


def test_two_clusters_one_tree_refreshed_concurrently(
    kong2: State, slurm_cluster: Cluster, slurm_cluster_b: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    kong2.mkdir("/both/deeper", create_parent=True)
    jobs = []
    for folder in ("/both", "/both/deeper"):
        for name in ("slurm", "slurm_b"):
            jobs += [kong2.create_job(command=f"echo {name}; sleep 1; exit {i}", profile=name,
                                      folder=folder) for i in range(3)]
    kong2.submit_job("/both", recursive=True)
    assert {j.profile for j in jobs} == {"slurm", "slurm_b"}

    spans: dict[str, tuple[float, float]] = {}
    for name in ("slurm", "slurm_b"):
        driver = driver_of(kong2, name)
        original = driver.status

        def timed(js: Sequence[Job], name: str = name, original: Any = original) -> Any:
            start = time.monotonic()
            result = original(js)
            spans[name] = (start, time.monotonic())
            return result

        monkeypatch.setattr(driver, "status", timed)

    before = {n: driver_of(kong2, n).transport.stats.round_trips for n in ("slurm", "slurm_b")}
    kong2.refresh_jobs(kong2.get_jobs("/both", recursive=True))
    after = {n: driver_of(kong2, n).transport.stats.round_trips for n in ("slurm", "slurm_b")}
    assert {n: after[n] - before[n] for n in after} == {"slurm": 1, "slurm_b": 1}
    # both scheduler queries were under way at the same time
    assert max(s for s, _ in spans.values()) < min(e for _, e in spans.values())

    kong2.wait("/both", recursive=True, notify=False, timeout=120)
    for job in jobs:
        i = int(job.command.rsplit(" ", 1)[1])
        assert (job.data or {})["exit_code"] == i
        assert job.status == (JobStatus.COMPLETED if i == 0 else JobStatus.FAILED)
        assert bt.read_log(job, "stdout") == f"{job.profile}\n"
    for cluster in (slurm_cluster, slurm_cluster_b):
        if cluster.container_id is not None:
            assert sum(accounted(cluster, 6, settle=1).values()) == 6


# -- without accounting ------------------------------------------------------------------


def test_without_accounting_falls_back_and_says_so_once(
    kong2: State, slurm_cluster_b: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """sacct answers as on a cluster with accounting storage off (a wrapper in place of
    the real sacct, restored afterwards); squeue and scontrol still tell the story."""
    needs_container(slurm_cluster_b)
    bt.root(slurm_cluster_b, "mv /usr/bin/sacct /usr/bin/sacct.real && printf '%s\\n' '#!/bin/sh' "
         "'echo \"sacct: error: Slurm accounting storage is disabled\" >&2' 'exit 1' "
         "> /usr/bin/sacct && chmod 755 /usr/bin/sacct")
    slurm._warned.clear()
    try:
        jobs = [kong2.create_job(command=f"exit {i}", profile="slurm_b") for i in range(4)]
        kong2.submit_job([j.job_id for j in jobs])
        with caplog.at_level(logging.WARNING, logger="kong.drivers.slurm"):
            kong2.wait([j.job_id for j in jobs], notify=False, timeout=120)
            for _ in range(2):  # asked again: the fallback is not announced again
                driver_of(kong2, "slurm_b").query(jobs)
        for i, job in enumerate(jobs):
            assert (job.data or {})["exit_code"] == i
            assert job.status == (JobStatus.COMPLETED if i == 0 else JobStatus.FAILED)
        warnings = [r for r in caplog.records if "accounting is off" in r.getMessage()]
        assert len(warnings) == 1, caplog.text
        assert "Slurm accounting storage is disabled" in warnings[0].getMessage()
    finally:
        bt.root(slurm_cluster_b, "mv /usr/bin/sacct.real /usr/bin/sacct")
