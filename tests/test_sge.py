"""The Grid Engine driver end to end: kong's State API over SSH against the
containerized Son of Grid Engine 8.1.9 of tests/clusters.py (sge_qmaster, sge_execd,
accounting read by qacct).

Assertions about the cluster side are made as root inside the container
(``cluster.exec``), never through the transport under test.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from kong import db
from kong.config import Config
from kong.drivers import sge
from kong.drivers.sge import ACCOUNTING_PENDING, SGEDriver
from kong.errors import DriverError
from kong.model.job import Job, JobStatus
from kong.state import State
from tests import batchtests as bt
from tests.clusters import Cluster, ClusterFactory, needs_container
from tests.fixtures_state import make_state

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(400)]

POLL = 0.5


@pytest.fixture
def kong(kong_home: Path, sge_cluster: Cluster) -> State:
    """A State whose default profile is the Grid Engine cluster."""
    config = Config(data={"default_profile": "sge",
                          "profiles": {"sge": {**sge_cluster.profile(), "poll_interval": POLL}}})
    return make_state(config)


def driver_of(state: State) -> SGEDriver:
    driver = state.driver("sge")
    assert isinstance(driver, SGEDriver)
    return driver


def round_trips(state: State, action: Callable[[], object]) -> int:
    stats = driver_of(state).transport.stats
    before = stats.round_trips
    action()
    return stats.round_trips - before


def qacct_names(cluster: Cluster) -> list[str]:
    """Job names of this kong in the accounting file, as root; none yet is no error."""
    _, out = cluster.exec(f"qacct -j 'kong-{db.install_id()}-*' 2>/dev/null "
                          "| awk '$1 == \"jobname\" { print $2 }'")
    return out.split()


def submissions_per_job(cluster: Cluster) -> Counter[int]:
    """How many runs of each kong job of this database Grid Engine accounted for."""
    return bt.counts_of_names(qacct_names(cluster))


def accounted(cluster: Cluster, runs: int, settle: float = 0.0) -> Counter[int]:
    """``submissions_per_job`` once qacct has at least ``runs`` records, and again
    after ``settle`` more seconds (a late second record would show then)."""
    return bt.settled_counts(lambda: submissions_per_job(cluster), runs, settle, timeout=90,
                          what="qacct")


def queued(cluster: Cluster) -> list[str]:
    """Names of this kong's jobs still in qstat (pending, running, deleting)."""
    out = bt.root(cluster, "qstat -u '*' -xml | sed -n 's:.*<JB_name>\\(.*\\)</JB_name>.*:\\1:p'")
    return [n for n in out.split() if n.startswith(f"kong-{db.install_id()}-")]


# -- bulk submit, exit codes, logs --------------------------------------------------------


def test_bulk_submit_exit_codes_and_logs(kong: State, sge_cluster: Cluster) -> None:
    needs_container(sge_cluster)
    kong.mkdir("/bulk")
    kong.cd("/bulk")
    jobs = bt.create(kong, 40, lambda i: f"echo out-{i}; echo err-{i} >&2; exit {i % 4}")
    kong.submit_job("/bulk")
    assert bt.statuses(jobs) == {JobStatus.SUBMITTED: 40}
    assert len({j.batch_job_id for j in jobs}) == 40

    kong.wait("/bulk", notify=False, timeout=240)
    for i, job in enumerate(jobs):
        data = job.data or {}
        assert data["exit_code"] == i % 4, (job, data)
        if i % 4 == 0:
            assert job.status == JobStatus.COMPLETED and data["scheduler_state"] == "COMPLETED"
        else:
            assert job.status == JobStatus.FAILED and data["scheduler_state"] == "EXITED"
        assert data["node"] and data["submit_time"] and data["start_time"] and data["end_time"]
    assert bt.statuses(jobs) == {JobStatus.COMPLETED: 10, JobStatus.FAILED: 30}
    assert bt.read_log(jobs[7], "stdout") == "out-7\n"
    assert bt.read_log(jobs[7], "stderr") == "err-7\n"
    per_job = accounted(sge_cluster, 40, settle=1)
    assert len(per_job) == 40 and set(per_job.values()) == {1}


# -- round trips do not grow with the number of jobs; kill -----------------------------


def _any_running(state: State, jobs: Sequence[Job]) -> bool:
    state.refresh_jobs(jobs)
    return any(j.status == JobStatus.RUNNING for j in jobs)


def test_round_trips_and_kill_2_vs_200(kong: State, sge_cluster: Cluster) -> None:
    needs_container(sge_cluster)
    # The remote home is looked up once per process (by the first test that runs):
    # not a cost of a bulk operation.
    assert driver_of(kong).base_dir.startswith("/")
    costs: dict[int, dict[str, int]] = {}
    for n in (2, 200):
        folder = f"/rt{n}"
        kong.mkdir(folder)
        jobs = bt.create(kong, n, lambda i: "sleep 300", folder=folder)
        costs[n] = {"submit": round_trips(kong, lambda f=folder: kong.submit_job(f))}
        assert bt.statuses(jobs) == {JobStatus.SUBMITTED: n}
        bt.wait_until(lambda js=jobs: _any_running(kong, js), 90, "a job running")
        costs[n]["refresh"] = round_trips(kong, lambda js=jobs: kong.refresh_jobs(js))
        assert all(j.status in (JobStatus.SUBMITTED, JobStatus.RUNNING) for j in jobs)
        costs[n]["kill"] = round_trips(kong, lambda f=folder: kong.kill_job(f))
        assert bt.statuses(jobs) == {JobStatus.FAILED: n}
        assert all((j.data or {}).get("killed") for j in jobs)
    print(f"round trips by number of jobs: {costs}")
    assert costs[2] == costs[200]
    assert costs[2]["submit"] == 2 and costs[2]["refresh"] <= 2 and costs[2]["kill"] == 1

    # Killed for real: nothing of ours left in qstat; the running ones were accounted
    # for as deleted by Grid Engine (failed 100), the pending ones leave no record.
    bt.wait_until(lambda: not queued(sge_cluster), 60, "the killed jobs leave qstat")
    out = bt.root(sge_cluster, f"qacct -j 'kong-{db.install_id()}-*' | awk '$1 == \"failed\"'")
    assert {line.split()[1] for line in out.splitlines()} == {"100"}
    kong.refresh_jobs(kong.get_jobs("/rt200"))
    assert bt.statuses(kong.get_jobs("/rt200")) == {JobStatus.FAILED: 200}


# -- the accounting delay: absence is not completion ------------------------------------


@pytest.fixture
def slow_accounting(sge_cluster: Cluster) -> Iterator[None]:
    """Grid Engine's own default: accounting records reach qacct 15 s after the job
    (accounting_flush_time); restored to the cluster's 1 s afterwards."""
    needs_container(sge_cluster)

    def flush(value: str) -> None:
        # qconf -Mconf takes the configuration's name from the file's name
        bt.root(sge_cluster, "mkdir -p /tmp/kong-test-conf && qconf -sconf global | sed "
                          f"'s/accounting_flush_time=[0-9:]*/accounting_flush_time={value}/' "
                          "> /tmp/kong-test-conf/global && qconf -Mconf /tmp/kong-test-conf/global")
        conf = bt.root(sge_cluster, "qconf -sconf global")
        assert f"accounting_flush_time={value}" in conf, conf

    flush("00:00:15")
    try:
        yield
    finally:
        flush("00:00:01")


def test_absent_during_accounting_delay_is_unknown_not_done(
    kong: State, sge_cluster: Cluster, slow_accounting: None
) -> None:
    job = kong.create_job(command="echo done; exit 0")
    kong.submit_job(job)
    name = f"kong-{db.install_id()}-{job.job_id}-1"
    exit_file = driver_of(kong).job_paths(job).exit_code
    # The job has ended (its exit code file is written) and left qstat...
    bt.wait_until(lambda: sge_cluster.exec(f"test -f {exit_file}")[0] == 0
               and name not in queued(sge_cluster), 90, "the job ends and leaves qstat")
    assert name not in qacct_names(sge_cluster), "qacct already has it: no delay to test"
    # ... but Grid Engine's history does not say so yet: not finished.
    kong.refresh_jobs([job])
    assert job.status == JobStatus.UNKNOWN
    assert (job.data or {})["scheduler_state"] == ACCOUNTING_PENDING
    # Once qacct has the record, the job is done, with its exit code.
    kong.wait(job, notify=False, timeout=90)
    assert job.status == JobStatus.COMPLETED and (job.data or {})["exit_code"] == 0


# -- options -----------------------------------------------------------------------------


def test_pe_slots_walltime_memory_project_reach_grid_engine(
    kong: State, sge_cluster: Cluster
) -> None:
    needs_container(sge_cluster)
    job = kong.create_job(command='echo "slots=$NSLOTS nproc=$KONG_JOB_NPROC"; sleep 2',
                          cores=2, memory=1024, walltime="10")
    kong.submit_job(job)
    kong.wait(job, notify=False, timeout=120)
    assert job.status == JobStatus.COMPLETED, job.data
    assert bt.read_log(job, "stdout") == "slots=2 nproc=2\n"
    record = bt.root(sge_cluster, f"qacct -j {job.batch_job_id}")
    assert re.search(r"^granted_pe\s+smp\s*$", record, re.MULTILINE)
    assert re.search(r"^slots\s+2\s*$", record, re.MULTILINE)
    category = re.search(r"^category\s+(.*)$", record, re.MULTILINE)
    assert category and "h_rt=600" in category.group(1) and "h_vmem=512M" in category.group(1)


def test_walltime_exceeded_is_failed_by_grid_engine(kong: State) -> None:
    job = kong.create_job(command="sleep 600", walltime="0:10")  # h_rt is kept to the second
    kong.submit_job(job)
    kong.wait(job, notify=False, timeout=120)
    data = job.data or {}
    assert job.status == JobStatus.FAILED and data["scheduler_state"] == "FAILED"
    assert "h_rt" in data["reason"] and data["exit_code"] == 137
    assert data["end_reason"] == "TIMEOUT"
    assert data["usage"]["source"] == "qacct" and data["usage"]["elapsed"] >= 10


def test_cores_without_pe_is_one_clear_error_and_no_job(kong: State) -> None:
    before = len(kong.get_jobs("/", recursive=True))
    with pytest.raises(DriverError, match="need a parallel environment: set option 'pe'"):
        kong.create_job(command="true", cores=2, pe=None)
    assert len(kong.get_jobs("/", recursive=True)) == before


def test_qsub_refusal_is_one_clear_error_and_the_rest_runs(kong: State) -> None:
    good = [kong.create_job(command="true") for _ in range(2)]
    bad = kong.create_job(command="true", queue="no_such.q")
    with pytest.raises(DriverError, match=r"1 of 3 job\(s\) could not be submitted: .*no_such"):
        kong.submit_job([j.job_id for j in (*good, bad)])
    assert bad.status == JobStatus.CREATED and not (bad.data or {}).get("submitting")
    kong.wait([j.job_id for j in good], notify=False, timeout=90)
    assert bt.statuses(good) == {JobStatus.COMPLETED: 2}


# -- resubmit failed only, rm ------------------------------------------------------------


def test_resubmit_failed_only_then_rm(kong: State, sge_cluster: Cluster) -> None:
    needs_container(sge_cluster)
    bt.resubmit_failed_only_then_rm(kong, sge_cluster, lambda: submissions_per_job(sge_cluster),
                                 lambda job: driver_of(kong).job_paths(job).job_dir)

# -- a connection cut in the middle of a bulk submit -------------------------------------


def test_connection_cut_during_submit_no_double_submission(
    kong: State, sge_cluster: Cluster
) -> None:
    needs_container(sge_cluster)
    # Recovery finds the submitted jobs by name, in qstat and qacct.
    bt.connection_cut_mid_submit(
        kong, sge_cluster, 120,
        lambda: len(queued(sge_cluster)) + len(qacct_names(sge_cluster)),
        lambda: submissions_per_job(sge_cluster), timeout=300)

# -- without readable accounting -------------------------------------------------------


def test_unreadable_accounting_falls_back_to_exit_code_files_and_says_so_once(
    kong: State, sge_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """qacct fails for the user as on a site whose accounting file only the
    administrators may read (mode 600, restored afterwards)."""
    needs_container(sge_cluster)
    accounting = "/var/lib/gridengine/default/common/accounting"
    bt.root(sge_cluster, f"chmod 600 {accounting}")
    sge._warned.clear()
    try:
        jobs = [kong.create_job(command=f"exit {i}") for i in (0, 3)]
        kong.submit_job([j.job_id for j in jobs])
        with caplog.at_level(logging.WARNING, logger="kong.drivers.sge"):
            kong.wait([j.job_id for j in jobs], notify=False, timeout=120)
            for _ in range(2):  # asked again: the fallback is not announced again
                driver_of(kong).query(jobs)
        assert [(j.status, (j.data or {})["exit_code"]) for j in jobs] == [
            (JobStatus.COMPLETED, 0), (JobStatus.FAILED, 3)]
        assert {(j.data or {})["scheduler_state"] for j in jobs} == {"FORGOTTEN"}
        warnings = [r for r in caplog.records if "cannot read the accounting" in r.getMessage()]
        assert len(warnings) == 1, caplog.text
        assert "unable to open" in warnings[0].getMessage()
        # the one case with a second round trip: the exit_code files
        fresh = kong.create_job(command="sleep 1")
        kong.submit_job(fresh)
        bt.wait_until(lambda: not queued(sge_cluster), 60, "the job leaves qstat")
        assert round_trips(kong, lambda: kong.refresh_jobs([fresh])) == 2
        assert fresh.status == JobStatus.COMPLETED
    finally:
        bt.root(sge_cluster, f"chmod 644 {accounting}")


# -- two Grid Engines side by side -----------------------------------------------------


def test_two_grid_engines_side_by_side(cluster_factory: ClusterFactory,
                                       sge_cluster: Cluster) -> None:
    """Every daemon of the image takes its own free port: a second cluster on the same
    machine (same hostname, host networking) is independent of the first."""
    needs_container(sge_cluster)
    other = cluster_factory.start("sge", "sge-side-by-side")
    try:
        assert other.ports["sge_qmaster"] != sge_cluster.ports["sge_qmaster"]
        assert other.ports["sge_execd"] != sge_cluster.ports["sge_execd"]
        name = f"kong-side-{other.ports['ssh']}"
        result = other.ssh(f"qsub -terse -sync y -b y -o /dev/null -e /dev/null -N {name} true")
        assert result.returncode == 0, result.stderr
        batch_id = result.stdout.split()[0]

        def jobnames(cluster: Cluster) -> str:
            return cluster.exec("qacct -j 2>/dev/null | awk '$1 == \"jobname\"'")[1]

        bt.wait_until(lambda: name in jobnames(other), 30, "qacct of the second cluster has it")
        assert name not in jobnames(sge_cluster)
        assert bt.root(other, f"qacct -j {batch_id} | awk '$1 == \"exit_status\" {{ print $2 }}'"
                    ).strip() == "0"
    finally:
        cluster_factory.stop(other)


def test_reconcile_finds_a_job_that_ended_before_its_accounting_record(
    kong: State, sge_cluster: Cluster, slow_accounting: None
) -> None:
    """A submit whose answer was lost (the job's intent recorded, qsub run, the
    connection gone before kong read the id), and the job ends before kong asks:
    it has left qstat and its qacct record is 15 s away. The reconcile must find it
    (qstat -s z, then qacct after the flush), not submit it again."""
    job = kong.create_job(command="true")
    token = f"kong-{db.install_id()}-{job.job_id}-1"
    with db.write():  # what BatchDriver.submit records before it runs the submit loop
        job.set_data(attempt=1, submitting=token)
    paths = driver_of(kong).job_paths(job)
    script = driver_of(kong).render(job, driver_of(kong).header_lines(
        job, driver_of(kong).job_options(job), token))
    result = sge_cluster.ssh(f"mkdir -p {paths.log_dir} && cat > {paths.script} && "
                             f"qsub -terse {paths.script}", input=script)
    assert result.returncode == 0, result.stderr
    batch_id = result.stdout.split()[0]
    bt.wait_until(lambda: token not in queued(sge_cluster), 60, "the job ends and leaves qstat")
    assert token not in qacct_names(sge_cluster), "qacct already has it: no delay to test"

    kong.submit_job(job)  # reconciles first
    assert job.batch_job_id == batch_id and (job.data or {}).get("reconciled")
    kong.wait(job, notify=False, timeout=90)
    assert job.status == JobStatus.COMPLETED
    assert accounted(sge_cluster, 1, settle=2) == {job.job_id: 1}
