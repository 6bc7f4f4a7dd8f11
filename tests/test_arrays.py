"""Job arrays on the Slurm test cluster and the LSF simulator: one ``sbatch --array`` or
``bsub -J "name[1-N]"`` for the jobs of a submit that share their options, each kong job
still its own (logs, exit code, kill, resubmit, token reconcile); HTCondor's one
cluster per submit. Cluster-side facts are read as root inside the container.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kong import db
from kong.config import Config
from kong.drivers.arrays import expand_element_ids, parse_element_token
from kong.drivers.base import SubmitRequest, Submitted
from kong.drivers.batch_arrays import ArrayBatchDriver
from kong.drivers.slurm import SlurmDriver
from kong.errors import DriverError
from kong.model.job import Job, JobStatus
from kong.state import State
from tests.clusters import Cluster, needs_container
from tests.faultsched import FaultScheduler, await_condition, crash_mid_submit
from tests.fixtures_state import make_state

POLL = 0.5
#: the tests that need a test cluster in a container (Slurm, HTCondor)
IN_CONTAINERS = pytest.mark.cluster


# -- pure parts ---------------------------------------------------------------------------


def test_element_tokens_and_folded_ids_parse() -> None:
    assert parse_element_token("kong-ab12-5-1-array[3]") == ("kong-ab12-5-1-array", 3)
    assert parse_element_token("kong-ab12-5-1") is None
    assert parse_element_token("kong-ab12-5-1[3]") is None  # no array's name
    assert expand_element_ids("123_[0-2,5]") == ["123_0", "123_1", "123_2", "123_5"]
    assert expand_element_ids("123_[4-6%2]") == ["123_4", "123_5", "123_6"]
    assert expand_element_ids("123_4") == ["123_4"]
    assert expand_element_ids("124") == ["124"]


# -- on the Slurm cluster and the LSF simulator ------------------------------------------


@dataclass
class ArrayCluster:
    """A test cluster whose scheduler takes arrays, as root sees its jobs."""

    kind: str  # "slurm" or "lsf"
    cluster: Cluster
    #: the scheduler's words for a job that is queued or running
    live: tuple[str, ...]

    def state(self, **options: Any) -> State:
        profile = {**self.cluster.profile(), "poll_interval": POLL, **options}
        if self.kind == "lsf":
            profile["driver"] = "lsf"
        return make_state(Config(data={"default_profile": "c", "profiles": {"c": profile}}))

    def rows(self) -> list[tuple[str, str, str]]:
        """(name, batch id, state) of every job of this kong the scheduler shows, one
        per element: Slurm's 123_4, LSF's 123[4] (bjobs: JOBID 123, JOBINDEX 4)."""
        if self.kind == "slurm":
            out = _root(self.cluster, "squeue -h -a -r -t all -o '%j|%i|%T'")
        else:
            listing = _root(self.cluster, "su -c \"bjobs -a -noheader -o 'job_name jobid "
                                          f"jobindex stat delimiter=\\\"|\\\"'\" "
                                          f"{self.cluster.user}")
            out = "\n".join(f"{n}|{i if x == '0' else f'{i}[{x}]'}|{st}" for n, i, x, st in (
                line.strip().split("|") for line in listing.splitlines() if line.count("|") == 3))
        prefix = f"kong-{db.install_id()}-"
        rows = [tuple(line.strip().split("|")) for line in out.splitlines()]
        return [r for r in rows if len(r) == 3 and r[0].startswith(prefix)]  # type: ignore[misc]

    def states(self) -> dict[str, str]:
        """The scheduler's state of every job of this kong by batch id."""
        return {batch_id: state for _name, batch_id, state in self.rows()}

    def arrays(self, driver: ArrayBatchDriver) -> Counter[str]:
        """Elements per array id."""
        return Counter(element[0] for _n, batch_id, _s in self.rows()
                       if (element := driver.split_element_id(batch_id)) is not None)

    def array_name(self, array_id: str) -> str:
        for name, batch_id, _state in self.rows():
            if batch_id.startswith((f"{array_id}_", f"{array_id}[")):
                return name.partition("[")[0]  # LSF names an element "<array name>[4]"
        raise AssertionError(f"no array {array_id}")

    def max_array_size(self) -> int:
        if self.kind == "slurm":
            return int(_root(self.cluster, "scontrol show config | awk '$1 == "
                                           "\"MaxArraySize\" { print $3 }'"))
        return int(_root(self.cluster, f"su -c 'bparams -a' {self.cluster.user} | awk '$1 == "
                                       "\"MAX_JOB_ARRAY_SIZE\" { print $3 }'"))


@pytest.fixture(params=["slurm", "lsf"])
def sched(request: pytest.FixtureRequest, kong_home: Path) -> ArrayCluster:
    request.applymarker(pytest.mark.cluster)
    if request.param == "slurm":
        cluster = request.getfixturevalue("slurm_cluster")
        live: tuple[str, ...] = ("PENDING", "RUNNING")
    else:  # the LSF SIMULATOR (deploy/lsf-sim/)
        cluster = request.getfixturevalue("lsf_cluster")
        live = ("PEND", "RUN")
    needs_container(cluster)
    return ArrayCluster(request.param, cluster, live)


@pytest.fixture
def kong(sched: ArrayCluster) -> State:
    return sched.state()


def _driver(state: State) -> ArrayBatchDriver:
    driver = state.driver("c")
    assert isinstance(driver, ArrayBatchDriver)
    return driver


def _trips(state: State, action: Any) -> int:
    stats = _driver(state).transport.stats
    before = stats.round_trips
    action()
    return int(stats.round_trips - before)


def _status_trips(driver: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Count the round trips of the driver's forced status queries from now on; the
    count so far, when called."""
    count = [0]
    real = driver.status_forced

    def counted(jobs: Any) -> Any:
        before = driver.transport.stats.round_trips
        try:
            return real(jobs)
        finally:
            count[0] += driver.transport.stats.round_trips - before

    monkeypatch.setattr(driver, "status_forced", counted)
    return lambda: count[0]


def _root(cluster: Cluster, cmd: str) -> str:
    code, out = cluster.exec(cmd)
    assert code == 0, out
    return out


def _element_ids(driver: ArrayBatchDriver, array_id: str, n: int) -> list[str]:
    return [driver.element_batch_id(array_id, driver.ARRAY_FIRST_INDEX + i) for i in range(n)]


def test_one_array_per_submit_each_job_its_own(kong: State, sched: ArrayCluster) -> None:
    # the jobs wait for a file: the test cluster forgets ended jobs in 2 s (MinJobAge)
    go = '"${KONG_JOB_OUTPUT_DIR%/*/*}/go"'
    jobs = [kong.create_job(command=f"while [ ! -e {go} ]; do sleep 0.2; done; "
                                    f"echo out-$KONG_JOB_ID; echo err >&2; exit {i % 3}")
            for i in range(6)]
    trips = _trips(kong, lambda: kong.submit_job([j.job_id for j in jobs]))
    # upload + one submit loop (+ the remote home and the array size limit, once per
    # process and per profile)
    assert trips <= 4
    driver = _driver(kong)
    arrays = sched.arrays(driver)
    assert list(arrays.values()) == [6], arrays  # one array for all six
    (array_id,) = arrays
    assert sorted(str(j.batch_job_id) for j in jobs) == sorted(_element_ids(driver, array_id, 6))
    name = sched.array_name(array_id)
    driver.transport.run(["touch", f"{driver.base_dir}/go"])
    kong.wait([j.job_id for j in jobs], notify=False, timeout=180, poll_interval=POLL)
    for i, job in enumerate(jobs):
        assert job.data["exit_code"] == i % 3, job.data
        assert job.status == (JobStatus.COMPLETED if i % 3 == 0 else JobStatus.FAILED)
        with job.stdout() as fh:
            assert fh.read() == f"out-{job.job_id}\n"
        with job.stderr() as fh:
            assert fh.read() == "err\n"
    # the scheduler's own file per element is beside the job's logs; the array's dir
    # keeps only its dispatcher and map
    array_dir = f"{driver.base_dir}/.arrays/{name}"
    listing = _root(sched.cluster, f"ls {array_dir} {jobs[0].log_dir}")
    assert "dispatch.sh\nmap\n" in listing and "scheduler.txt" in listing, listing
    # asked once: the next array needs no question about the limit
    more = [kong.create_job(command="true") for _ in range(3)]
    assert _trips(kong, lambda: kong.submit_job([j.job_id for j in more])) == 2
    assert _driver(kong).array_limit() == sched.max_array_size()


def test_kill_of_one_element_kills_only_it(kong: State, sched: ArrayCluster) -> None:
    jobs = [kong.create_job(command="sleep 300") for _ in range(4)]
    kong.submit_job([j.job_id for j in jobs])
    assert len(sched.arrays(_driver(kong))) == 1
    assert _trips(kong, lambda: kong.kill_job(jobs[1].job_id)) == 1
    assert jobs[1].status == JobStatus.FAILED and jobs[1].data["killed"]

    def only_it_gone() -> bool:
        live = {i for i, state in sched.states().items() if state in sched.live}
        return live == {str(j.batch_job_id) for j in jobs if j is not jobs[1]}

    await_condition(only_it_gone, 60, "the killed element alone to leave the queue")
    kong.refresh_jobs(jobs)
    assert [j.status.finished for j in jobs] == [False, True, False, False]
    # refresh and kill of the rest: one round trip each
    assert _trips(kong, lambda: kong.refresh_jobs(jobs)) == 1
    assert _trips(kong, lambda: kong.kill_job([j.job_id for j in jobs])) == 1
    assert all(j.status == JobStatus.FAILED for j in jobs)


def test_an_array_dir_goes_with_the_last_of_its_jobs(kong: State, sched: ArrayCluster,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """rm of one element keeps the array's dir (the others' dispatcher and map); rm of
    the rest removes it, in the round trip that removes their job dirs."""
    jobs = [kong.create_job(command="sleep 300") for _ in range(3)]
    kong.submit_job([j.job_id for j in jobs])
    driver = _driver(kong)
    (array_id,) = sched.arrays(driver)
    array_dir = f"{driver.base_dir}/.arrays/{sched.array_name(array_id)}"

    def exists() -> bool:
        return driver.transport.run(["test", "-d", array_dir]).exit_code == 0

    assert exists()
    kong.rm(jobs[0].job_id)
    assert exists()
    # one kill of both elements, one removal of their dirs and the array's (and between
    # them, status queries until the scheduler shows the elements ended)
    polls = _status_trips(driver, monkeypatch)
    assert _trips(kong, lambda: kong.rm([j.job_id for j in jobs[1:]])) - polls() == 2
    assert not exists()
    await_condition(lambda: not any(s in sched.live for s in sched.states().values()), 60,
                    "the array to leave the queue")


def test_resubmit_of_an_element_runs_it_again_alone(kong: State, sched: ArrayCluster) -> None:
    jobs = [kong.create_job(command="echo run-$KONG_JOB_ID") for _ in range(3)]
    kong.submit_job([j.job_id for j in jobs])
    kong.wait([j.job_id for j in jobs], notify=False, timeout=180, poll_interval=POLL)
    first = jobs[2].batch_job_id
    assert _driver(kong).split_element_id(str(first)) is not None
    kong.resubmit_job(jobs[2].job_id)
    assert jobs[2].batch_job_id != first
    assert _driver(kong).split_element_id(str(jobs[2].batch_job_id)) is None  # a plain job
    kong.wait([jobs[2].job_id], notify=False, timeout=180, poll_interval=POLL)
    assert jobs[2].status == JobStatus.COMPLETED
    assert [(h["batch_job_id"], h["status"]) for h in jobs[2].data["history"]] == [
        (first, "COMPLETED")]
    with jobs[2].stdout() as fh:
        assert fh.read() == f"run-{jobs[2].job_id}\n"
    assert [j.status for j in jobs[:2]] == [JobStatus.COMPLETED] * 2


def test_options_split_arrays_and_the_profile_can_turn_them_off(sched: ArrayCluster) -> None:
    kong = sched.state(array_size=3)
    driver = _driver(kong)
    small = [kong.create_job(command="sleep 300") for _ in range(7)]
    big = [kong.create_job(command="sleep 300", memory=20) for _ in range(2)]
    alone = [kong.create_job(command="sleep 300", arrays=False) for _ in range(2)]
    kong.submit_job([j.job_id for j in [*small, *big, *alone]])
    # 7 alike in arrays of at most 3 (3 + 3 + a plain job), 2 with other memory in an
    # array of their own, 2 that asked for no array as plain jobs
    assert sorted(sched.arrays(driver).values()) == [2, 3, 3]
    plain = [j for j in [*small, *big, *alone]
             if driver.split_element_id(str(j.batch_job_id)) is None]
    assert {j.job_id for j in plain} == {small[6].job_id, *(j.job_id for j in alone)}
    elements = [driver.split_element_id(str(j.batch_job_id)) for j in big]
    assert all(elements) and len({e[0] for e in elements if e}) == 1  # one array of two
    kong.kill_job([j.job_id for j in [*small, *big, *alone]])

    off = sched.state(arrays=False)
    jobs = [off.create_job(command="sleep 300") for _ in range(3)]
    off.submit_job([j.job_id for j in jobs])
    assert all(_driver(off).split_element_id(str(j.batch_job_id)) is None for j in jobs)
    off.kill_job([j.job_id for j in jobs])


def _job_copy(job: Job) -> Job:
    return Job(job_id=job.job_id, profile=job.profile, command=job.command, cores=job.cores,
               memory=job.memory, status=JobStatus.CREATED, data=dict(job.data or {}))


def test_tokens_found_per_element_and_killed_per_element(kong: State,
                                                         sched: ArrayCluster) -> None:
    """What reconcile after a dropped connection relies on: every element's token is
    found as its own batch id; an array never submitted is not found; a kill by token
    stops one element only."""
    driver = _driver(kong)
    jobs = [kong.create_job(command="sleep 300") for _ in range(3)]
    attempts = [(j, 1) for j in jobs]
    driver.prepare_submit(jobs)
    tokens = driver.tokens(attempts)
    assert [parse_element_token(t) for t in tokens] == [
        (tokens[0].rpartition("[")[0], driver.ARRAY_FIRST_INDEX + i) for i in range(3)]
    answers = driver.submit([SubmitRequest(j, t) for j, t in zip(jobs, tokens, strict=True)])
    ids = {job_id: r.batch_id for job_id, r in answers.items() if isinstance(r, Submitted)}
    assert len(ids) == 3
    unsent = [kong.create_job(command="true") for _ in range(2)]
    unsent_tokens = driver.tokens([(j, 1) for j in unsent])
    lookup = driver.find_tokens([*tokens, *unsent_tokens])
    assert lookup.found == {t: ids[j.job_id] for j, t in zip(jobs, tokens, strict=True)}
    # how far back "not found" is true: sacct's week, bjobs -a's CLEAN_PERIOD
    assert lookup.history_seconds == (7 * 24 * 3600 if sched.kind == "slurm" else 3600)
    killed = driver.kill_tokens([tokens[0]])
    assert killed[tokens[0]].outcome.value == "killed", killed

    def first_alone_gone() -> bool:
        states = sched.states()
        return states.get(ids[jobs[0].job_id]) not in sched.live and all(
            states.get(ids[j.job_id]) in sched.live for j in jobs[1:])

    await_condition(first_alone_gone, 60, "the element killed by token alone to end")
    rest = driver.kill_tokens(tokens[1:])
    assert {r.outcome.value for r in rest.values()} == {"killed"}, rest
    await_condition(lambda: not {i for i, state in sched.states().items()
                                 if i in ids.values() and state in sched.live},
                    60, "the whole array to end")


# -- faults a real Slurm cannot hit on cue: the fault-injecting stand-in ------------------
# (tests/faultsched.py: a fake sbatch that hangs or answers noise, on cue; the same
# crash on the real cluster is tests/test_driver_contract.py's crash-mid-submit[slurm])

FAULT_ARRAYS = {"arrays": True, "array_size": 3}


@pytest.mark.parametrize("fault_slurm", [FAULT_ARRAYS], indirect=True)
def test_crash_mid_array_submit_then_submit_again_runs_every_job_once(
    fault_slurm: FaultScheduler, tmp_path: Path
) -> None:
    """kill -9 of `kong submit` while the second of three arrays is being submitted;
    submitting again adopts the arrays that reached the scheduler (by their name) and
    submits the rest: every job runs once, with its own log."""
    state = State.get_instance()
    runs = tmp_path / "runs.txt"
    state.mkdir("/f")
    jobs = [state.create_job(command=f'echo "$KONG_JOB_ID" >> {runs}; echo "me $KONG_JOB_ID"',
                             folder="/f") for _ in range(8)]
    fault_slurm.control(hang_at=2)
    crash_mid_submit(fault_slurm, "/f")
    fault_slurm.release()
    state.submit_job("/f", recursive=True)
    state.wait("/f", recursive=True, notify=False, timeout=60, poll_interval=0.1)
    assert all(j.status == JobStatus.COMPLETED for j in jobs)
    assert sorted(int(x) for x in runs.read_text().split()) == [j.job_id for j in jobs]
    assert len(fault_slurm.jobs()) == 8  # elements: nothing submitted twice
    assert any(j.data.get("reconciled") for j in jobs)  # found by the array's name
    for job in jobs:
        with job.stdout() as fh:
            assert fh.read() == f"me {job.job_id}\n"


@pytest.mark.parametrize("fault_slurm", [FAULT_ARRAYS], indirect=True)
def test_array_queued_by_a_noisy_sbatch_is_adopted_per_element(
    fault_slurm: FaultScheduler,
) -> None:
    state = State.get_instance()
    fault_slurm.control(noise=1)
    jobs = [state.create_job(command="true") for _ in range(3)]
    state.submit_job([j.job_id for j in jobs])
    assert all(j.status == JobStatus.SUBMITTED and j.data.get("reconciled") for j in jobs)
    assert sorted(str(j.batch_job_id) for j in jobs) == sorted(fault_slurm.jobs())
    assert fault_slurm.submits == 1


@pytest.mark.parametrize("fault_slurm", [FAULT_ARRAYS], indirect=True)
def test_array_kong_cannot_settle_is_not_submitted_again_until_forced(
    fault_slurm: FaultScheduler,
) -> None:
    state = State.get_instance()
    fault_slurm.control(noise=1, noise_defer=1)
    jobs = [state.create_job(command="true") for _ in range(3)]
    with pytest.raises(DriverError, match="cannot tell whether it was submitted"):
        state.submit_job([j.job_id for j in jobs])
    assert all(j.status == JobStatus.CREATED and j.data["submitting"] for j in jobs)
    with pytest.raises(DriverError, match="cannot tell whether it was submitted"):
        state.submit_job([j.job_id for j in jobs])
    assert fault_slurm.submits == 1
    fault_slurm.control(noise=0, noise_defer=0)
    state.submit_job([j.job_id for j in jobs], force=True)
    assert all(j.status == JobStatus.SUBMITTED for j in jobs) and fault_slurm.submits == 2
    assert all(j.data["history"][-1]["status"] == "UNCLEAR" for j in jobs)


@pytest.mark.parametrize("fault_slurm", [{"arrays": True}], indirect=True)
def test_a_lowered_max_array_size_is_asked_again_after_a_refusal(
    fault_slurm: FaultScheduler,
) -> None:
    """The cluster's MaxArraySize is asked once and kept; when the site lowers it, the
    refused array leaves its jobs CREATED with sbatch's words, and the next submit
    asks again and fits the arrays to the new limit."""
    state = State.get_instance()
    first = [state.create_job(command="true") for _ in range(2)]
    state.submit_job([j.job_id for j in first])
    assert _driver_of(state).array_limit() == 1001
    fault_slurm.control(max_array=3)  # indices 0..2
    jobs = [state.create_job(command="true") for _ in range(5)]
    with pytest.raises(DriverError, match="Invalid job array specification"):
        state.submit_job([j.job_id for j in jobs])
    assert all(j.status == JobStatus.CREATED and not j.data.get("submitting") for j in jobs)
    state.submit_job([j.job_id for j in jobs])
    assert all(j.status == JobStatus.SUBMITTED for j in jobs)
    assert Counter(str(j.batch_job_id).partition("_")[0] for j in jobs
                   if "_" in str(j.batch_job_id)).most_common(1)[0][1] == 3


def _driver_of(state: State) -> SlurmDriver:
    driver = state.driver("fake")
    assert isinstance(driver, SlurmDriver)
    return driver


# -- HTCondor: one cluster of many procs already; arrays: false turns that off ------------


@IN_CONTAINERS
@pytest.mark.parametrize("arrays", [True, False])
def test_htcondor_one_cluster_per_submit_unless_arrays_are_off(
    kong_home: Path, htcondor_cluster: Cluster, arrays: bool
) -> None:
    needs_container(htcondor_cluster)
    profile = {**htcondor_cluster.profile(), "poll_interval": POLL, "arrays": arrays}
    state = make_state(Config(data={"default_profile": "c", "profiles": {"c": profile}}))
    jobs = [state.create_job(command="echo me-$KONG_JOB_ID") for _ in range(3)]
    state.submit_job([j.job_id for j in jobs])
    clusters = {str(j.batch_job_id).partition(".")[0] for j in jobs}
    assert len(clusters) == (1 if arrays else 3), [j.batch_job_id for j in jobs]
    state.wait([j.job_id for j in jobs], notify=False, timeout=180, poll_interval=POLL)
    for job in jobs:
        assert job.status == JobStatus.COMPLETED
        with job.stdout() as fh:
            assert fh.read() == f"me-{job.job_id}\n"


def test_kill_of_an_array_answers_per_element(kong: State, sched: ArrayCluster) -> None:
    """One kill command for the elements of an array; an element that had already
    ended keeps its end, the others read killed."""
    jobs = [kong.create_job(command=c) for c in ("sleep 300", "true", "sleep 300")]
    kong.submit_job([j.job_id for j in jobs])
    assert len(sched.arrays(_driver(kong))) == 1
    # (gone from squeue is ended too: the test cluster forgets ended jobs in 2 s)
    await_condition(lambda: sched.states().get(str(jobs[1].batch_job_id))
                    in ("COMPLETED", "DONE", None), 120, "the short element to end")
    assert jobs[1].status != JobStatus.COMPLETED  # kong has not asked since
    kong.kill_job([j.job_id for j in jobs])
    assert jobs[1].status == JobStatus.COMPLETED and not jobs[1].data.get("killed")
    assert all(j.status == JobStatus.FAILED and j.data["killed"] for j in (jobs[0], jobs[2]))
    await_condition(lambda: not {i for i, state in sched.states().items()
                                 if state in sched.live}, 60,
                    "the killed elements to leave the queue")


@pytest.mark.parametrize("fault_slurm", [FAULT_ARRAYS], indirect=True)
def test_a_refused_kill_of_array_elements_says_so_per_job(
    fault_slurm: FaultScheduler,
) -> None:
    state = State.get_instance()
    fault_slurm.control(hold=1)
    jobs = [state.create_job(command="sleep 60") for _ in range(3)]
    state.submit_job([j.job_id for j in jobs])
    assert all("_" in str(j.batch_job_id) for j in jobs)
    fault_slurm.control(denied=1)
    with pytest.raises(DriverError) as refused:
        state.kill_job([j.job_id for j in jobs])
    assert str(refused.value).startswith("3 of 3 job(s) could not be killed: job ")
    assert "the scheduler refused to kill it: Access/permission denied" in str(refused.value)
    assert all(j.status == JobStatus.SUBMITTED for j in jobs)
    fault_slurm.control(denied=0)
    state.kill_job([j.job_id for j in jobs])
    assert all(j.status == JobStatus.FAILED for j in jobs) and fault_slurm.live() == []
