"""The HTCondor driver end to end, over SSH against the containerized personal pool.

Nothing is faked: kong's database is a real SQLite file in a fresh KONG_HOME, the
jobs run in HTCondor 23 and their results come from condor_q/condor_history.
What every driver does alike (kill, lazy logs, rm, round trips, resubmit, a crash
mid-submit) is in tests/test_driver_contract.py; here is what is HTCondor's own.
"""

from __future__ import annotations

import shlex
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.cluster import Cluster
from kong import db
from kong.config import Config
from kong.drivers.base import DriverBase
from kong.drivers.htcondor import HTCondorDriver
from kong.errors import ConnectionLost, DriverError
from kong.model.job import Job, JobStatus
from kong.state import State
from tests.clusters import needs_container
from tests.fixtures_state import make_state

pytestmark = pytest.mark.cluster

POLL = 0.5
TIMEOUT = 120


def condor_profile(cluster: Cluster) -> dict[str, Any]:
    return {**cluster.profile(), "poll_interval": POLL}


@pytest.fixture
def state(htcondor_cluster: Cluster, kong_home: Path) -> Iterator[State]:
    config = Config(data={"default_profile": "condor",
                          "profiles": {"condor": condor_profile(htcondor_cluster)}})
    state = make_state(config)
    yield state
    driver = state.default_driver
    driver.transport.close()


def driver_of(state: State) -> HTCondorDriver:
    driver = state.default_driver
    assert isinstance(driver, HTCondorDriver)
    return driver


def round_trips(driver: DriverBase, action: Callable[[], object]) -> int:
    before = driver.transport.stats.round_trips
    action()
    return driver.transport.stats.round_trips - before


def ssh_out(cluster: Cluster, command: str) -> str:
    result = cluster.ssh(command)
    assert result.returncode == 0, result.stderr
    return result.stdout


def in_queue(cluster: Cluster, jobs: list[Job]) -> list[str]:
    """The ids of ``jobs`` that condor_q still lists."""
    ids = {j.batch_job_id for j in jobs}
    out = ssh_out(cluster, "condor_q -format '%d.' ClusterId -format '%d\\n' ProcId")
    return [i for i in out.split() if i in ids]


def wait_until_gone(cluster: Cluster, jobs: list[Job], timeout: float = 30) -> None:
    """Wait until condor_q no longer lists ``jobs`` (a removed job takes a moment)."""
    deadline = time.monotonic() + timeout
    while left := in_queue(cluster, jobs):
        assert time.monotonic() < deadline, f"still in the queue: {left}"
        time.sleep(POLL)


def test_hundred_jobs_mixed_exit_codes(state: State) -> None:
    driver = driver_of(state)
    state.mkdir("/hundred")
    state.cd("/hundred")
    jobs = [state.create_job(command=f"echo job {i}; exit {i % 4}") for i in range(100)]
    driver.base_dir  # noqa: B018 - resolve the remote home before counting round trips
    submit_trips = round_trips(driver, lambda: state.submit_job("/hundred", recursive=True))
    # one upload, one command running one condor_submit for all of them
    assert submit_trips == 2
    ids = [j.batch_job_id for j in jobs]
    assert all(i is not None for i in ids)
    assert len(set(ids)) == 100
    assert len({i.split(".")[0] for i in ids if i}) == 1, "one submit description, one cluster"
    state.wait("/hundred", recursive=True, notify=False, timeout=TIMEOUT)
    for i, job in enumerate(jobs):
        code = i % 4
        assert job.status == (JobStatus.COMPLETED if code == 0 else JobStatus.FAILED), job
        assert job.data["exit_code"] == code
        assert job.data["scheduler_state"] == "Completed"


def test_held_job_is_failed_with_its_reason_and_leaves_the_queue(
    state: State, htcondor_cluster: Cluster
) -> None:
    state.mkdir("/held")
    state.cd("/held")
    missing = state.create_job(
        command="echo never", should_transfer_files="YES",
        extra=["transfer_input_files = missing-input.dat"],
    )
    too_long = state.create_job(command="sleep 300", walltime="1")  # minutes
    kept = state.create_job(
        command="echo never", should_transfer_files="YES", remove_held=False,
        extra=["transfer_input_files = missing-input.dat"],
    )
    fine = state.create_job(command="echo fine")
    state.submit_job("/held", recursive=True)
    state.wait("/held", recursive=True, notify=False, timeout=TIMEOUT)
    assert missing.status == JobStatus.FAILED
    assert "missing-input.dat" in missing.data["reason"]
    assert "No such file or directory" in missing.data["reason"]
    assert too_long.status == JobStatus.FAILED
    assert "walltime of 60 s exceeded" in (too_long.data["reason"] or ""), too_long.data
    assert too_long.data["end_reason"] == "TIMEOUT"
    assert fine.status == JobStatus.COMPLETED
    assert fine.data["end_reason"] == "EXIT(0)"
    # held jobs are removed, so that they cannot run behind kong's back later...
    wait_until_gone(htcondor_cluster, [missing, too_long])
    # ...unless their options say otherwise
    assert kept.status == JobStatus.FAILED
    assert kept.data["scheduler_state"] == "Held"
    assert "missing-input.dat" in kept.data["reason"]
    assert in_queue(htcondor_cluster, [kept]) == [kept.batch_job_id]
    ssh_out(htcondor_cluster, shlex.join(["condor_rm", str(kept.batch_job_id)]))


def test_a_bad_description_fails_alone(state: State) -> None:
    """Jobs with other options are another description, submitted in the same
    command; condor_submit refusing one leaves the others submitted."""
    driver = driver_of(state)
    state.mkdir("/groups")
    state.cd("/groups")
    good = [state.create_job(command="echo ok") for _ in range(3)]
    big = state.create_job(command="echo big", cores=2, memory=64)
    bad = state.create_job(command="echo bad", requirements="((")
    driver.base_dir  # noqa: B018 - resolve the remote home before counting round trips
    before = driver.transport.stats.round_trips
    with pytest.raises(DriverError, match=r"1 of 5 job\(s\) could not be submitted"):
        state.submit_job("/groups", recursive=True)
    assert driver.transport.stats.round_trips - before == 2
    assert bad.status == JobStatus.CREATED and bad.batch_job_id is None
    assert not bad.data.get("submitting")
    clusters = {j.batch_job_id.split(".")[0] for j in good if j.batch_job_id}
    assert len(clusters) == 1 and big.batch_job_id is not None
    assert big.batch_job_id.split(".")[0] not in clusters
    state.wait([*good, big], notify=False, timeout=TIMEOUT)
    assert all(j.status == JobStatus.COMPLETED for j in [*good, big])


def test_resubmit_failed_only(state: State) -> None:
    # each job fails on its first run and succeeds on the next; the marker lives
    # outside the job dir, which resubmit clears
    marker = f"/tmp/kong-resubmit-{uuid.uuid4().hex}"
    state.mkdir("/resubmit")
    state.cd("/resubmit")
    flaky = [
        state.create_job(command=f"if [ -e {marker}-{i} ]; then echo second; else "
                                 f"touch {marker}-{i}; echo first; exit 7; fi")
        for i in range(3)
    ]
    good = state.create_job(command="echo good")
    state.submit_job("/resubmit", recursive=True)
    state.wait("/resubmit", recursive=True, notify=False, timeout=TIMEOUT)
    assert [j.status for j in flaky] == [JobStatus.FAILED] * 3
    assert all(j.data["exit_code"] == 7 for j in flaky)
    assert good.status == JobStatus.COMPLETED
    good_id, first_ids = good.batch_job_id, [j.batch_job_id for j in flaky]

    resubmitted = state.resubmit_job("/resubmit", recursive=True, failed_only=True)
    assert sorted(j.job_id for j in resubmitted) == sorted(j.job_id for j in flaky)
    assert good.batch_job_id == good_id
    state.wait("/resubmit", recursive=True, notify=False, timeout=TIMEOUT)
    for job, first_id in zip(flaky, first_ids, strict=True):
        assert job.status == JobStatus.COMPLETED
        assert job.batch_job_id != first_id
        last = job.data["history"][-1]
        assert (last["batch_job_id"], last["status"]) == (first_id, "FAILED")
        with job.stdout() as fh:
            assert fh.read() == "second\n"  # the first run's log went with its job dir


def test_a_dropped_connection_during_submit_submits_nothing_twice(
    state: State, htcondor_cluster: Cluster
) -> None:
    """Jobs whose submit command was cut off are adopted by their KongToken."""
    driver = driver_of(state)
    state.mkdir("/drop")
    state.cd("/drop")
    jobs = [state.create_job(command="echo adopted") for _ in range(5)]
    # what the database holds after a crash right after condor_submit ran: the
    # intent (token) but no batch id
    with _submitted_without_record(driver):
        state.submit_job("/drop", recursive=True)
    assert all(j.status == JobStatus.CREATED and j.data["submitting"] for j in jobs)
    tokens = [j.data["submitting"] for j in jobs]
    state.submit_job("/drop", recursive=True)  # reconciles first: adopts, submits nothing
    assert all(j.data.get("reconciled") for j in jobs)
    state.wait("/drop", recursive=True, notify=False, timeout=TIMEOUT)
    assert all(j.status == JobStatus.COMPLETED for j in jobs)
    out = ssh_out(htcondor_cluster, "condor_history -af KongToken -limit 500")
    for token in tokens:
        assert out.split().count(token) == 1


def test_connection_dropped_while_condor_submit_runs(
    state: State, htcondor_cluster: Cluster
) -> None:
    """A real drop: the schedd is paused so that condor_submit hangs, the SSH
    connections are killed, the schedd goes on. The orphaned submit command still
    submits; kong's reconcile waits for it (the submit lock) and adopts its jobs."""
    needs_container(htcondor_cluster)
    state.mkdir("/dropped")
    state.cd("/dropped")
    jobs = [state.create_job(command=f"exit {i % 2}") for i in range(20)]
    driver_of(state).base_dir  # noqa: B018 - connect before the schedd is paused
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            state.submit_job("/dropped", recursive=True)
        except BaseException as exc:
            errors.append(exc)

    code, out = htcondor_cluster.exec("pkill -STOP -x condor_schedd")
    assert code == 0, out
    thread = threading.Thread(target=submit)
    try:
        thread.start()
        deadline = time.monotonic() + 30
        while htcondor_cluster.exec("pgrep -x condor_submit")[0] != 0:
            assert time.monotonic() < deadline, "condor_submit never started"
            time.sleep(0.1)
        # (the count can be 0 though the connection was cut: the session's monitor
        # may exit on its own between the kill of its child and its own kill)
        htcondor_cluster.kill_ssh_connections()
        time.sleep(1)  # kong notices the drop and reconnects to reconcile
    finally:
        htcondor_cluster.exec("pkill -CONT -x condor_schedd")
    thread.join(timeout=150)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ConnectionLost), errors
    # adopted right away, by token: each submitted once, none to submit again
    assert all(j.status == JobStatus.SUBMITTED and j.data.get("reconciled") for j in jobs)
    assert len({j.batch_job_id for j in jobs}) == 20
    state.submit_job("/dropped", recursive=True)
    state.wait("/dropped", recursive=True, notify=False, timeout=TIMEOUT)
    assert [j.data["exit_code"] for j in jobs] == [i % 2 for i in range(20)]
    tokens = ssh_out(htcondor_cluster, "condor_history -af KongToken -limit 1000").split()
    for job in jobs:
        assert tokens.count(f"kong-{db.install_id()}-{job.job_id}-1") == 1


class _submitted_without_record:
    """Run the real submit command but drop its answer, as a crash would."""

    def __init__(self, driver: HTCondorDriver) -> None:
        self.driver = driver

    def __enter__(self) -> None:
        real = self.driver.submit_remote

        def submit_remote(entries: Any) -> str:
            real(entries)
            raise KeyboardInterrupt  # the process dies before recording anything

        self.driver.submit_remote = submit_remote  # type: ignore[method-assign]

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        del self.driver.submit_remote
        return exc_type is KeyboardInterrupt


def test_slurm_and_htcondor_side_by_side(
    htcondor_cluster: Cluster, slurm_cluster: Cluster, kong_home: Path
) -> None:
    config = Config(data={
        "default_profile": "condor",
        "profiles": {
            "condor": condor_profile(htcondor_cluster),
            "slurm": {**slurm_cluster.profile(), "poll_interval": POLL},
        },
    })
    state = make_state(config)
    state.mkdir("/mixed/condor", create_parent=True)
    state.mkdir("/mixed/slurm")
    with state.pushd("/mixed/condor"):
        condor_jobs = [state.create_job(command=f"exit {i}") for i in range(3)]
    with state.pushd("/mixed/slurm"):
        slurm_jobs = [state.create_job(command=f"exit {i}", profile="slurm") for i in range(3)]
    state.submit_job("/mixed", recursive=True)
    assert all(j.batch_job_id for j in condor_jobs + slurm_jobs)

    # one refresh of the whole tree asks both schedulers, at the same time
    spans: dict[str, tuple[float, float]] = {}
    lock = threading.Lock()
    drivers = {name: state.driver(name) for name in ("condor", "slurm")}
    for name, driver in drivers.items():
        real = driver.status_forced  # ls -u: a query that starts now

        def timed(jobs: Any, name: str = name, real: Any = real) -> Any:
            start = time.monotonic()
            result = real(jobs)
            with lock:
                spans[name] = (start, time.monotonic())
            return result

        driver.status_forced = timed  # type: ignore[method-assign]
    try:
        _, listed = state.ls("/mixed", refresh=True, recursive=True)
    finally:
        for driver in drivers.values():
            del driver.status_forced
    assert len(listed) == 6
    assert set(spans) == {"condor", "slurm"}
    (a0, a1), (b0, b1) = spans["condor"], spans["slurm"]
    assert a0 < b1 and b0 < a1, f"the two queries ran one after the other: {spans}"
    assert all(j.status != JobStatus.CREATED for j in condor_jobs + slurm_jobs)

    state.wait("/mixed", recursive=True, notify=False, timeout=TIMEOUT)
    for jobs in (condor_jobs, slurm_jobs):
        fresh = [state.get_jobs(j.job_id)[0] for j in jobs]
        assert [j.data["exit_code"] for j in fresh] == [0, 1, 2]
        assert [j.status for j in fresh] == [
            JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.FAILED
        ]
    for driver in drivers.values():
        driver.transport.close()
