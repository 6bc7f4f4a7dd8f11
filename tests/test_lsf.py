"""The LSF driver end to end: kong's State API over SSH against the LSF SIMULATOR
(deploy/lsf-sim/: simulated bsub, bjobs, bkill, bhist; IBM LSF cannot be installed
here) in the ``lsf_cluster`` container of tests/clusters.py.

Assertions about the cluster side are made as root inside the container
(``cluster.exec``), never through the transport under test.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kong import db
from kong.config import Config
from kong.drivers.lsf import LSFDriver
from kong.model.job import Job, JobStatus
from kong.state import State
from tests import batchtests as bt
from tests.clusters import Cluster, needs_container
from tests.fixtures_state import make_state

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

POLL = 0.5
SPOOL = "/var/spool/lsf-sim/jobs"


def profile(cluster: Cluster, **options: Any) -> dict[str, Any]:
    # one bsub per job: the plain job's life (arrays: tests/test_arrays.py)
    return {**cluster.profile(), "driver": "lsf", "poll_interval": POLL, "arrays": False,
            **options}


@pytest.fixture
def kong(kong_home: Path, lsf_cluster: Cluster) -> State:
    """A State whose default profile is the LSF simulator's cluster."""
    config = Config(data={"default_profile": "lsf", "profiles": {"lsf": profile(lsf_cluster)}})
    return make_state(config)


def driver_of(state: State) -> LSFDriver:
    driver = state.driver("lsf")
    assert isinstance(driver, LSFDriver)
    return driver


def round_trips(state: State, action: Callable[[], object]) -> int:
    stats = driver_of(state).transport.stats
    before = stats.round_trips
    action()
    return stats.round_trips - before


_DUMP = f"""
import glob, json
for path in sorted(glob.glob("{SPOOL}/*.json")):
    try:
        job = json.load(open(path))
    except ValueError:
        continue  # being replaced right now
    job.pop("env", None)
    print(json.dumps(job))
"""


def lsf_jobs(cluster: Cluster) -> list[dict[str, Any]]:
    """Every job the simulator ever took (its spool), as root."""
    code, out = cluster.exec(["python3", "-c", _DUMP])
    assert code == 0, out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def submissions_per_job(cluster: Cluster) -> Counter[int]:
    """kong job id -> number of LSF jobs carrying its token (this kong's only)."""
    prefix = f"kong-{db.install_id()}-"
    return Counter(
        int(j["name"][len(prefix):].split("-")[0])
        for j in lsf_jobs(cluster)
        if j["name"].startswith(prefix)
    )


# -- 100 jobs, exit codes, the LSB_* environment, lazy stdout ---------------------------


def test_100_jobs_bulk_with_exit_codes(kong: State, lsf_cluster: Cluster) -> None:
    needs_container(lsf_cluster)
    kong.mkdir("/bulk")
    kong.cd("/bulk")
    jobs = bt.create(kong, 100, lambda i: (
        f'echo "out-{i} $LSB_JOBID $LSB_JOBNAME $LSB_QUEUE $LSB_DJOB_NUMPROC $LSB_HOSTS"; '
        f"echo err-{i} >&2; exit {i % 4}"
    ))

    trips = round_trips(kong, lambda: kong.submit_job("/bulk"))
    assert bt.statuses(jobs) == {JobStatus.SUBMITTED: 100}
    assert len({j.batch_job_id for j in jobs}) == 100
    assert trips <= 3  # upload + submit loop (+ the remote home, once per process)

    kong.wait("/bulk", notify=False, timeout=180)
    for i, job in enumerate(jobs):
        data = job.data or {}
        assert data["exit_code"] == i % 4, (job, data)
        if i % 4 == 0:
            assert job.status == JobStatus.COMPLETED and data["scheduler_state"] == "DONE"
        else:
            assert job.status == JobStatus.FAILED and data["scheduler_state"] == "EXIT"
        assert data["node"] and data["submit_time"] and data["start_time"] and data["end_time"]
    assert bt.statuses(jobs) == {JobStatus.COMPLETED: 25, JobStatus.FAILED: 75}
    per_job = submissions_per_job(lsf_cluster)
    assert sorted(per_job) == sorted(j.job_id for j in jobs)
    assert set(per_job.values()) == {1}

    # Logs stay on the cluster until asked for; then only that one is fetched.
    cache = kong.config.data_dir / "logcache"
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))
    job = jobs[7]
    trips = round_trips(kong, lambda: bt.read_log(job, "stdout"))
    assert trips <= 2
    token = f"kong-{db.install_id()}-{job.job_id}-1"
    host = (job.data or {})["node"]
    assert bt.read_log(job, "stdout") == f"out-7 {job.batch_job_id} {token} normal 1 {host}\n"
    assert bt.read_log(job, "stderr") == "err-7\n"
    # LSF's job report goes to its own -o file, beside kong's logs
    report = bt.root(lsf_cluster, f"cat {driver_of(kong).lsf_log(job)}")
    assert f"Subject: Job {job.batch_job_id}: <{token}>" in report
    assert "Exited with exit code 3." in report
    fetched = [p for p in cache.rglob("*") if p.is_file()]
    assert fetched and all(f"/{job.job_id}/" in str(p) for p in fetched)


def test_stdout_while_the_job_runs(kong: State, lsf_cluster: Cluster) -> None:
    job = kong.create_job(command="echo started; sleep 300")
    kong.submit_job(job)
    bt.wait_until(lambda: _any_running(kong, [job]), 60, "the job running")
    bt.wait_until(lambda: bt.read_log(job, "stdout") == "started\n", 30, "its first line, live")
    kong.kill_job(job)
    assert job.status == JobStatus.FAILED


# -- options become #BSUB lines, and LSF honours them ----------------------------------


def test_options_reach_lsf(kong_home: Path, lsf_cluster: Cluster) -> None:
    needs_container(lsf_cluster)
    config = Config(data={"default_profile": "lsf", "profiles": {"lsf": profile(
        lsf_cluster, queue="long", project="proj-a", walltime="2:00:00", memory=300,
        resources="select[type==any]", extra=["-app kong"],
    )}})
    state = make_state(config)
    job = state.create_job(command='echo "$LSB_QUEUE $LSB_DJOB_NUMPROC"', cores=2,
                           queue="short", memory=100)
    state.submit_job(job)
    state.wait(job, notify=False, timeout=60)
    assert job.status == JobStatus.COMPLETED
    assert bt.read_log(job, "stdout") == "short 2\n"
    (record,) = [j for j in lsf_jobs(lsf_cluster) if str(j["id"]) == job.batch_job_id]
    assert record["queue"] == "short"  # the job's own option wins over the profile's
    assert record["project"] == "proj-a"
    assert record["slots"] == 2
    assert record["runlimit"] == 120
    assert record["memlimit"] == "100MB"
    assert record["resreq"] == ["span[hosts=1]", "rusage[mem=100MB]", "select[type==any]"]


def test_bad_queue_is_one_clear_error(kong: State) -> None:
    job = kong.create_job(command="true", queue="nosuchqueue")
    with pytest.raises(Exception, match="nosuchqueue: No such queue"):
        kong.submit_job(job)
    assert job.status == JobStatus.CREATED
    assert not (job.data or {}).get("submitting")


@contextmanager
def sim_settings(cluster: Cluster, **values: object) -> Iterator[None]:
    """Lines for the simulator's /etc/lsf-sim.conf while the block runs (later wins)."""
    conf = "/etc/lsf-sim.conf"
    lines = "\n".join(f"{k}={v}" for k, v in values.items())
    bt.root(cluster, f"cp {conf} {conf}.orig && printf '%s\\n' '{lines}' >> {conf}")
    try:
        yield
    finally:
        bt.root(cluster, f"mv {conf}.orig {conf}")


def test_walltime_exceeded(kong: State, lsf_cluster: Cluster) -> None:
    needs_container(lsf_cluster)
    with sim_settings(lsf_cluster, MINUTE=2):  # a simulated minute of -W: 2 s
        job = kong.create_job(command="sleep 600", walltime=1)
        kong.submit_job(job)
        kong.wait(job, notify=False, timeout=60)
    data = job.data or {}
    assert job.status == JobStatus.FAILED
    assert data["scheduler_state"] == "EXIT"
    assert data["exit_code"] == 140  # 128 + SIGUSR2, which LSF sends at the run limit
    assert data["reason"] == "TERM_RUNLIMIT: job killed after reaching LSF run time limit"
    assert data["end_reason"] == "TIMEOUT"


# -- round trips do not grow with the number of jobs; kill -----------------------------


def test_round_trips_and_kill_2_vs_100(kong: State, lsf_cluster: Cluster) -> None:
    needs_container(lsf_cluster)
    costs: dict[int, dict[str, int]] = {}
    for n in (2, 100):
        costs[n] = _submit_refresh_kill(kong, n)
        if n == 100:  # 8 slots: the rest wait their turn
            assert bt.statuses(kong.get_jobs("/rt100"))[JobStatus.FAILED] == 100
    print(f"round trips by number of jobs: {costs}")
    assert costs[2] == costs[100]
    assert costs[2] == {"submit": 2, "refresh": 1, "kill": 1}

    # Killed for real: LSF says EXIT, killed by its owner, and nothing runs any more.
    ours = [j for j in lsf_jobs(lsf_cluster)
            if j["name"].startswith(f"kong-{db.install_id()}-")]
    bt.wait_until(lambda: all(j["stat"] == "EXIT" for j in _refetch(lsf_cluster, ours)), 30,
               "the killed jobs end")
    assert {j["exit_reason"] for j in _refetch(lsf_cluster, ours)} == {
        "TERM_OWNER: job killed by owner"}
    assert bt.root(lsf_cluster, "pgrep -c -u kong -x sleep || true").strip() == "0"
    # A later refresh does not bring them back to life.
    kong.refresh_jobs(kong.get_jobs("/rt100"))
    assert bt.statuses(kong.get_jobs("/rt100")) == {JobStatus.FAILED: 100}


def _submit_refresh_kill(kong: State, n: int) -> dict[str, int]:
    """Round trips of submit, refresh and kill for ``n`` sleeping jobs."""
    folder = f"/rt{n}"
    kong.mkdir(folder)
    jobs = bt.create(kong, n, lambda i: "sleep 300", folder=folder)
    costs = {"submit": round_trips(kong, lambda: kong.submit_job(folder))}
    assert bt.statuses(jobs) == {JobStatus.SUBMITTED: n}
    bt.wait_until(lambda: _any_running(kong, jobs), 60, "a job running")
    costs["refresh"] = round_trips(kong, lambda: kong.refresh_jobs(jobs))
    assert all(j.status in (JobStatus.SUBMITTED, JobStatus.RUNNING) for j in jobs)
    if n > 8:  # 8 slots: the rest wait their turn, PEND
        assert bt.statuses(jobs)[JobStatus.SUBMITTED] >= n - 8
    costs["kill"] = round_trips(kong, lambda: kong.kill_job(folder))
    assert bt.statuses(jobs) == {JobStatus.FAILED: n}
    assert all((j.data or {}).get("killed") for j in jobs)
    return costs


def _refetch(cluster: Cluster, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = {j["id"] for j in jobs}
    return [j for j in lsf_jobs(cluster) if j["id"] in ids]


def _any_running(state: State, jobs: Sequence[Job]) -> bool:
    state.refresh_jobs(jobs)
    return any(j.status == JobStatus.RUNNING for j in jobs)


# -- resubmit failed only, rm ------------------------------------------------------------


def test_resubmit_failed_only_then_rm(kong: State, lsf_cluster: Cluster) -> None:
    needs_container(lsf_cluster)
    bt.resubmit_failed_only_then_rm(kong, lsf_cluster, lambda: submissions_per_job(lsf_cluster),
                                 lambda job: driver_of(kong).job_paths(job).job_dir)

# -- absence is not completion ---------------------------------------------------------


def test_aged_out_jobs_come_from_bhist_forgotten_ones_are_unknown(
    kong: State, lsf_cluster: Cluster
) -> None:
    needs_container(lsf_cluster)
    kong.mkdir("/aged")
    jobs = bt.create(kong, 3, lambda i: f"exit {i * 3}", folder="/aged")
    kong.submit_job("/aged")
    ids = {j.batch_job_id for j in jobs}
    bt.wait_until(lambda: all(j["stat"] in ("DONE", "EXIT") for j in lsf_jobs(lsf_cluster)
                           if str(j["id"]) in ids), 60, "the jobs end in LSF")
    with sim_settings(lsf_cluster, CLEAN_PERIOD=0):
        # bjobs -a no longer lists them; bhist -l has them, in the same round trip
        trips = round_trips(kong, lambda: kong.refresh_jobs(jobs))
        assert trips == 1
        assert [(j.status, (j.data or {}).get("exit_code")) for j in jobs] == [
            (JobStatus.COMPLETED, 0), (JobStatus.FAILED, 3), (JobStatus.FAILED, 6)]
        assert all((j.data or {}).get("lsf_source") == "bhist" for j in jobs)

        # A job LSF forgot entirely (no bjobs, no bhist) that left no exit code: UNKNOWN
        job = kong.create_job(command="sleep 300", folder="/aged")
        kong.submit_job(job)
        bt.wait_until(lambda: _any_running(kong, [job]), 60, "the job running")
        (record,) = [j for j in lsf_jobs(lsf_cluster) if str(j["id"]) == job.batch_job_id]
        # runner first (it would record the end), then the job's whole process group
        # (its shell would write the exit_code file), then LSF's memory of it
        bt.root(lsf_cluster, f"kill -KILL {record['runner_pid']}; "
                f"kill -KILL -- -{record['job_pid']}; rm -f {SPOOL}/{job.batch_job_id}.json")
        kong.refresh_jobs([job])
        assert job.status == JobStatus.UNKNOWN


def test_bjobs_without_json_falls_back_to_delimited_output(
    kong: State, lsf_cluster: Cluster
) -> None:
    needs_container(lsf_cluster)
    kong.mkdir("/old")
    jobs = bt.create(kong, 4, lambda i: f"exit {i}", folder="/old")
    with sim_settings(lsf_cluster, JSON="N"):  # bjobs before LSF 10.1.0.2
        kong.submit_job("/old")
        kong.wait("/old", notify=False, timeout=60)
        assert [(j.status, (j.data or {}).get("exit_code")) for j in jobs] == [
            (JobStatus.COMPLETED, 0), (JobStatus.FAILED, 1), (JobStatus.FAILED, 2),
            (JobStatus.FAILED, 3)]
        assert driver_of(kong)._json is False  # no more asking for JSON
        assert all((j.data or {}).get("node") for j in jobs)
        # reconcile's listing works the same way
        token = f"kong-{db.install_id()}-{jobs[0].job_id}-1"
        assert driver_of(kong).find_tokens([token]).found == {token: jobs[0].batch_job_id}


def test_a_reused_job_id_is_not_taken_for_ours(kong: State, lsf_cluster: Cluster) -> None:
    """LSF hands job ids out again after MAX_JOBID: a record under our id but with
    another name is another job, and says nothing about ours."""
    needs_container(lsf_cluster)
    job = kong.create_job(command="sleep 300")
    kong.submit_job(job)
    bt.wait_until(lambda: _any_running(kong, [job]), 60, "the job running")
    path = f"{SPOOL}/{job.batch_job_id}.json"
    code, out = lsf_cluster.exec(["python3", "-c", (
        "import json, sys, time; p = sys.argv[1]; j = json.load(open(p)); "
        "j.update(name='somebody-else', stat='DONE', exit_code=0, finish_time=time.time()); "
        "json.dump(j, open(p, 'w'))"
    ), path])
    assert code == 0, out
    kong.refresh_jobs([job])
    assert job.status == JobStatus.UNKNOWN  # not COMPLETED
    bt.root(lsf_cluster, "pkill -u kong -x sleep || true")


# -- a connection cut in the middle of a bulk submit -------------------------------------


@pytest.mark.parametrize("options", [{}, {"arrays": True, "array_size": 10}],
                         ids=["plain", "arrays"])
def test_connection_cut_during_submit_no_double_submission(
    kong_home: Path, lsf_cluster: Cluster, options: dict[str, Any]
) -> None:
    """The connection cut once 10 jobs reached LSF: what reached it is adopted (for an
    array: by its name, every element at once), submitting again submits only the
    rest, and no job runs twice. With arrays of 10, the cut falls between arrays."""
    needs_container(lsf_cluster)
    kong = make_state(Config(data={"default_profile": "lsf", "profiles": {
        "lsf": profile(lsf_cluster, **options)}}))
    runs = '"${KONG_JOB_OUTPUT_DIR%/*/*}/runs.txt"'
    prefix = f"kong-{db.install_id()}-"
    # LSF must take each token (a plain job's, or an array's element name[i]) once
    jobs = bt.connection_cut_mid_submit(
        kong, lsf_cluster, 100,
        lambda: sum(j["name"].startswith(prefix) for j in lsf_jobs(lsf_cluster)),
        lambda: Counter(j["name"] for j in lsf_jobs(lsf_cluster) if j["name"].startswith(prefix)),
        settle=0, command=lambda i: f'echo "$KONG_JOB_ID" >> {runs}')
    ran = Counter(int(x) for x in driver_of(kong).transport.read_range(
        f"{driver_of(kong).base_dir}/runs.txt").decode().split())
    assert sorted(ran) == sorted(j.job_id for j in jobs) and set(ran.values()) == {1}


# -- the simulator's job arrays, as IBM documents them ----------------------------------


def test_simulator_job_arrays_as_lsf_documents_them(lsf_cluster: Cluster) -> None:
    """What kong's array support stands on, asked of the simulator directly: one job id
    for ``-J "name[1-3]%1"``, each element with its own index (LSB_JOBINDEX, %I in -o,
    bjobs' jobindex, the name ``name[4]``), selected and killed alone as "ID[4]"."""
    needs_container(lsf_cluster)
    work = f"/tmp/simarray-{uuid.uuid4().hex[:8]}"

    def as_user(cmd: str) -> str:
        code, out = lsf_cluster.exec(f"mkdir -p {work} && cd {work} && {cmd}",
                                     user=lsf_cluster.user)
        assert code == 0, out
        return out

    out = as_user("""bsub -J 'sim[1-3]%1' -o 'out.%J.%I' sh -c 'echo "$LSB_JOBID """
                  """$LSB_JOBINDEX"; sleep 1'""")
    job_id = out.split("<")[1].split(">")[0]
    # the slot limit: one element at a time, the others PEND; all under one id
    assert as_user(f"bjobs -noheader -o 'stat' {job_id}").split().count("RUN") <= 1
    bt.wait_until(lambda: "DONE" in as_user(f"bjobs -a -noheader -o 'stat' {job_id}"), 30,
               "the first element to end")
    rows = as_user(f"bjobs -a -noheader -o \"jobid jobindex job_name delimiter='|'\" {job_id}")
    assert rows.split() == [f"{job_id}|{i}|sim[{i}]" for i in (1, 2, 3)]
    assert as_user(f"bjobs -a -noheader -o 'job_name' '{job_id}[2]'").split() == ["sim[2]"]
    assert as_user(f"bkill '{job_id}[3]'").strip() == f"Job <{job_id}[3]> is being terminated"
    bt.wait_until(lambda: as_user(f"bjobs -a -noheader -o 'stat' {job_id}").split()
               == ["DONE", "DONE", "EXIT"], 30, "the other element to run, the killed not")
    # each element's output first in its own -o file (%J: the id, %I: its index)
    firsts = [as_user(f"head -n 1 out.{job_id}.{i}").strip() for i in (1, 2)]
    assert firsts == [f"{job_id} 1", f"{job_id} 2"]
    assert "MAX_JOB_ARRAY_SIZE = 1000" in as_user("bparams -a")
    assert "index too large" in lsf_cluster.exec(
        f"cd {work} && bsub -J 'big[1-1001]' true", user=lsf_cluster.user)[1]
