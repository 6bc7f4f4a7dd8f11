"""The driver contract: what every driver does the same way, run against each real one.

Backends: ``local`` (this machine), ``local-ssh`` (the local driver on the sshd
container), ``slurm`` (the Slurm test cluster), ``htcondor`` (the personal pool),
``lsf`` (the LSF simulator); ``slurm`` and ``lsf`` submit jobs of equal options as
job arrays (of at most 10, so that a crash can fall between two), ``slurm-noarrays``
and ``lsf-noarrays`` one ``sbatch``/``bsub`` per job (the profile's ``arrays:
false``). A test names a user-visible promise: exit codes and lazy logs, kill,
resubmit as a clean new attempt, rm that cancels on the cluster, round trips that do
not grow with the number of jobs, and (for the batch schedulers) a bulk submit killed
with -9 half way, then rm or submit again.
The fault-injecting Slurm (tests/test_faultsched.py) covers the faults a real
scheduler cannot hit on cue.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kong import db
from kong.drivers.base import KillOutcome
from kong.errors import NoSuchFolder
from kong.model.job import Job, JobStatus
from kong.state import State
from tests.batchtests import counted_calls
from tests.faultsched import await_condition
from tests.kongcmd import KONG

pytestmark = pytest.mark.timeout(600)

BACKENDS = ["local", "local-ssh", "slurm", "slurm-noarrays", "htcondor", "lsf",
            "lsf-noarrays", "sge"]
BATCH = ("slurm", "slurm-noarrays", "htcondor", "lsf", "lsf-noarrays", "sge")


@dataclass
class Backend:
    name: str
    state: State
    #: names (tokens) of this kong's jobs the scheduler has ever had, as root sees them
    names_on_cluster: Callable[[], list[str]] | None
    #: names of this kong's jobs still queued or running there
    live_on_cluster: Callable[[], list[str]] | None
    #: batch ids of this kong's jobs the scheduler still shows (elements: Slurm's
    #: 123_4, LSF's 123[4])
    ids_on_cluster: Callable[[], list[str]] | None = None
    #: the test cluster (None for ``local``)
    cluster: Any = None

    @property
    def driver(self) -> Any:
        return self.state.driver("c")

    def round_trips(self) -> int:
        return int(self.driver.transport.stats.round_trips)


def _lines(out: str) -> list[str]:
    prefix = f"kong-{db.install_id()}-"
    return [line.strip() for line in out.splitlines() if line.strip().startswith(prefix)]


def _slurm_names(out: str) -> list[str]:
    """Tokens from ``squeue -r -o '%j|%K'``: a plain job's name, an array element's
    ``<array name>[<index>]``, as kong recorded them."""
    rows = [line.strip().rpartition("|") for line in out.splitlines()]
    return _lines("\n".join(name if index in ("N/A", "") else f"{name}[{index}]"
                            for name, _, index in rows))


def _exec(cluster: Any, cmd: str) -> str:
    code, out = cluster.exec(cmd)
    assert code == 0, out
    return str(out)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, kong_home: Path) -> Iterator[Backend]:
    name = request.param
    profile: dict[str, Any] = {} if name in ("local", "local-ssh") else {"poll_interval": 0.3}
    names = live = ids = None
    cluster = None
    if name == "local":
        profile.update(driver="local", max_parallel=8)
    else:
        fixture = {"local-ssh": "sshd_server", "slurm": "slurm_cluster",
                   "slurm-noarrays": "slurm_cluster",
                   "htcondor": "htcondor_cluster", "lsf": "lsf_cluster",
                   "lsf-noarrays": "lsf_cluster", "sge": "sge_cluster"}[name]
        request.applymarker(pytest.mark.cluster)
        cluster = request.getfixturevalue(fixture)
        profile.update(cluster.profile())
        if name == "local-ssh":
            profile.update(driver="local", max_parallel=8)
        elif name.startswith("lsf"):
            profile["driver"] = "lsf"
        if name in ("slurm", "lsf"):
            profile["array_size"] = 10
        elif name in ("slurm-noarrays", "lsf-noarrays"):
            profile["arrays"] = False
        if name.startswith("slurm"):
            def names() -> list[str]:
                return _slurm_names(_exec(cluster, "squeue -h -a -r -t all -o '%j|%K'"))

            def live() -> list[str]:
                return _slurm_names(_exec(cluster, "squeue -h -a -r -o '%j|%K'"))

            def ids() -> list[str]:
                prefix = f"kong-{db.install_id()}-"
                out = _exec(cluster, "squeue -h -a -r -t all -o '%j|%i'")
                return [i for n, _, i in (line.strip().partition("|")
                                          for line in out.splitlines()) if n.startswith(prefix)]
        elif name == "htcondor":
            def names() -> list[str]:
                return _lines(_exec(cluster, "condor_q -allusers -af KongToken; "
                                             "condor_history -af KongToken -limit 2000"))

            def live() -> list[str]:
                # a removed job (JobStatus 3) lingers while its shell exits: not live
                return _lines(_exec(cluster, "condor_q -allusers -constraint "
                                             "'JobStatus != 3' -af KongToken"))
        elif name == "sge":
            def names() -> list[str]:
                # qstat (pending, running) and qacct (ended; a job deleted while
                # pending leaves no record); awk: nothing found is no error
                return _lines(_exec(cluster, "qstat -u '*' -xml | sed -n "
                                             "'s:.*<JB_name>\\(.*\\)</JB_name>.*:\\1:p'; "
                                             "qacct -j 2>/dev/null | awk '$1 == \"jobname\" "
                                             "{ print $2 }'"))

            def live() -> list[str]:
                return _lines(_exec(cluster, "qstat -u '*' -xml | sed -n "
                                             "'s:.*<JB_name>\\(.*\\)</JB_name>.*:\\1:p'"))
        elif name.startswith("lsf"):
            # an array element's name is LSF's own "<array name>[<index>]", its token
            def names() -> list[str]:
                return _lines(_exec(cluster, "su -c 'bjobs -a -o job_name -noheader' "
                                             f"{cluster.user}"))

            def live() -> list[str]:
                return _lines(_exec(cluster, "su -c 'bjobs -o job_name -noheader' "
                                             f"{cluster.user}"))

            def ids() -> list[str]:
                out = _exec(cluster, "su -c \"bjobs -a -noheader -o 'job_name jobid "
                                     f"jobindex delimiter=\\\"|\\\"'\" {cluster.user}")
                rows = [line.strip().split("|") for line in _lines(out)]
                return [i if x == "0" else f"{i}[{x}]" for _, i, x in rows]
    (kong_home / "config.yml").write_text(
        yaml.safe_dump({"default_profile": "c", "profiles": {"c": profile}}))
    state = State.get_instance()
    yield Backend(name, state, names, live, ids, cluster)
    # nothing of this test may keep running on a shared cluster
    leftover = state.get_jobs("/", recursive=True)
    if leftover:
        state.kill_job([j.job_id for j in leftover])


def finish(b: Backend, jobs: list[Job], timeout: float = 180) -> None:
    b.state.wait([j.job_id for j in jobs], notify=False, timeout=int(timeout),
                 poll_interval=0.3)


def ended_on_cluster(b: Backend, snapshot: list[Job], timeout: float = 90) -> None:
    """Await the scheduler's word that every job of ``snapshot`` (detached copies:
    their rows may be gone) has ended or is unknown to it."""
    copies = [Job(job_id=j.job_id, batch_job_id=j.batch_job_id, profile=j.profile,
                  command=j.command, cores=j.cores, status=JobStatus.RUNNING,
                  data=dict(j.data or {})) for j in snapshot]

    def ended() -> bool:
        results = b.driver.status(copies)
        return all(_ended(results.get(c.job_id)) for c in copies)

    await_condition(ended, timeout, "the scheduler to show the jobs ended")


def _ended(result: Any) -> bool:
    status = getattr(result, "status", None)
    extra = getattr(result, "extra", {})
    return status is None or status.finished or "lost" in extra


def test_exit_codes_and_lazy_stdout(backend: Backend) -> None:
    b = backend
    jobs = [b.state.create_job(command=f"echo out-$KONG_JOB_ID; echo err >&2; exit {i % 3}")
            for i in range(4)]
    b.state.submit_job([j.job_id for j in jobs])
    assert all(j.status == JobStatus.SUBMITTED and j.batch_job_id for j in jobs)
    finish(b, jobs)
    for i, job in enumerate(jobs):
        assert job.data["exit_code"] == i % 3
        assert job.status == (JobStatus.COMPLETED if i % 3 == 0 else JobStatus.FAILED)
        with job.stdout() as fh:
            assert fh.read() == f"out-{job.job_id}\n"
        with job.stderr() as fh:
            assert fh.read() == "err\n"

    # a finished job's log is read once, then from the laptop's cache (or the local file)
    def read_again() -> None:
        with jobs[0].stdout() as fh:
            assert fh.read() == f"out-{jobs[0].job_id}\n"

    before = b.round_trips()
    read_again()
    assert b.round_trips() == before


def test_inputs_arrive_and_outputs_come_home(backend: Backend, tmp_path: Path) -> None:
    """Staging on every driver: inputs in the submit's upload, a first pull of the
    outputs in one command where the transport streams (SSH: the host lists and sends
    at once), else one listing and one stream; a re-pull in the listing alone."""
    b = backend
    (tmp_path / "shared.txt").write_text("shared\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("x\n")
    jobs = [b.state.create_job(
        command=f'cd "$KONG_JOB_OUTPUT_DIR" && mkdir -p res && '
                f'cat shared.txt in/x.txt > res/out-{i}.txt',
        inputs=[tmp_path / "shared.txt", (tmp_path / "d", "in")]) for i in range(2)]
    b.state.submit_job([j.job_id for j in jobs])
    finish(b, jobs)
    assert [j.status for j in jobs] == [JobStatus.COMPLETED] * 2
    b.driver.base_dir  # noqa: B018 - resolve the remote home before counting
    before = b.round_trips()
    result = b.state.pull([j.job_id for j in jobs], tmp_path / "pulled")
    assert b.round_trips() - before == (1 if b.driver.transport.streams else 2)
    assert result.files_moved == 2
    for i, job in enumerate(jobs):
        out = tmp_path / "pulled" / str(job.job_id) / "res" / f"out-{i}.txt"
        assert out.read_text() == "shared\nx\n"
    before = b.round_trips()
    assert b.state.pull([j.job_id for j in jobs], tmp_path / "pulled").bytes_moved == 0
    assert b.round_trips() - before == 1


def test_kill_ends_the_jobs_on_the_cluster(backend: Backend) -> None:
    b = backend
    jobs = [b.state.create_job(command="sleep 300") for _ in range(2)]
    b.state.submit_job([j.job_id for j in jobs])
    killed = b.state.kill_job([j.job_id for j in jobs])
    assert {j.job_id for j in killed} == {j.job_id for j in jobs}
    # FAILED as soon as kill_job returns (as kong-batch did) ...
    assert all(j.status == JobStatus.FAILED and j.data["killed"] for j in jobs)
    # ... and the scheduler confirms it
    ended_on_cluster(b, jobs)
    b.state.refresh_jobs(jobs)
    assert all(j.status == JobStatus.FAILED for j in jobs)


#: per batch scheduler: its kill command, the directive that holds a job in the queue
#: (pending until released), and an id it has never given out
_KILL = {"slurm": ("scancel", "--hold", "999999"), "lsf": ("bkill", "-H", "999999"),
         "sge": ("qdel", "-h", "999999"), "htcondor": ("condor_rm", "hold = true", "999999.0")}


def _mixed_jobs(b: Backend, running: int) -> tuple[list[Job], Job, Job, Job]:
    """Submitted: ``running`` sleeping jobs (running once a slot is free), one that has
    ended, one held in the queue, and a detached job of an id the scheduler never gave."""
    _tool, hold, unknown_id = _KILL[b.name.partition("-")[0]]
    sleeping = [b.state.create_job(command="sleep 300") for _ in range(running)]
    done = b.state.create_job(command="true")
    held = b.state.create_job(command="sleep 300", extra=[hold])
    b.state.submit_job([j.job_id for j in (*sleeping, done, held)])
    unknown = Job(job_id=10**6, batch_job_id=unknown_id, profile="c", command="true",
                  cores=1, status=JobStatus.RUNNING, data={})

    def settled() -> bool:
        # the driver, not the State: kong's status query removes a held HTCondor job
        results = b.driver.status([*sleeping, done])
        ended = getattr(results.get(done.job_id), "status", None)
        return (ended is not None and ended.finished and any(
            getattr(results.get(j.job_id), "status", None) == JobStatus.RUNNING
            for j in sleeping))

    await_condition(settled, 120, "one job to end and one to run")
    return sleeping, done, held, unknown


def _nothing_live(b: Backend) -> None:
    """Await the cluster's word that none of this kong's jobs is queued or running (a
    held job deleted while pending leaves Grid Engine no record: its status stays
    UNKNOWN, so the scheduler's queue is asked, not kong)."""
    live = b.live_on_cluster
    assert live is not None
    await_condition(lambda: live() == [], 90, "the killed jobs to leave the queue")


@pytest.mark.parametrize("backend", BATCH, indirect=True)
def test_a_kill_of_many_jobs_is_one_scheduler_command_answered_per_job(
    backend: Backend,
) -> None:
    """Running, pending, held, ended and never-known jobs: one kill command on the
    cluster for all of them (a wrapper counts the scheduler's own command), one round
    trip, and each job's own answer."""
    b = backend
    tool = _KILL[b.name.partition("-")[0]][0]
    sleeping, done, held, unknown = _mixed_jobs(b, 3)
    jobs = [*sleeping, done, held, unknown]
    with counted_calls(b.cluster, tool) as log:
        before = b.round_trips()
        answers = b.driver.kill(jobs)
        trips = b.round_trips() - before
        calls = log.calls()
    assert len(calls) == 1, calls
    assert all(str(j.batch_job_id) in calls[0].split() for j in jobs), calls
    assert trips == 1
    outcomes = {j.job_id: answers[j.job_id].outcome for j in jobs}
    assert [outcomes[j.job_id] for j in (*sleeping, held)] == [KillOutcome.KILLED] * 4, answers
    # ended: "already finished", or no such job any more (its status then says how)
    assert outcomes[done.job_id] in (KillOutcome.FINISHED, KillOutcome.UNKNOWN), answers
    assert outcomes[unknown.job_id] == KillOutcome.UNKNOWN, answers
    _nothing_live(b)


@pytest.mark.parametrize("backend", BATCH, indirect=True)
def test_a_job_the_kill_answer_says_nothing_of_gets_a_kill_of_its_own(
    backend: Backend,
) -> None:
    """The fallback: a job the many-id kill's answer does not name is not taken for
    killed; it gets its own kill command (a second round trip), whose answer counts.
    (The wrapper leaves it out of the many-id command, as a scheduler skipping it
    silently would.)"""
    b = backend
    tool = _KILL[b.name.partition("-")[0]][0]
    sleeping, done, held, unknown = _mixed_jobs(b, 2)
    jobs = [*sleeping, done, held, unknown]
    with counted_calls(b.cluster, tool) as log:
        log.hide(str(sleeping[0].batch_job_id))
        before = b.round_trips()
        answers = b.driver.kill(jobs)
        trips = b.round_trips() - before
        calls = log.calls()
    assert len(calls) == 2, calls
    assert str(sleeping[0].batch_job_id) in calls[1].split() and len(calls[1].split()) <= 2
    assert trips == 2
    assert answers[sleeping[0].job_id].outcome == KillOutcome.KILLED, answers
    assert answers[sleeping[1].job_id].outcome == KillOutcome.KILLED, answers
    assert answers[held.job_id].outcome == KillOutcome.KILLED, answers
    assert answers[unknown.job_id].outcome == KillOutcome.UNKNOWN, answers
    _nothing_live(b)


def test_resubmit_of_a_running_job_reruns_clean(backend: Backend) -> None:
    """The rerun is COMPLETED (no stale kill flag), stdout() is the rerun's (no stale
    cached log), the old attempt is in the history and ran no further."""
    b = backend
    marker = '"${KONG_JOB_OUTPUT_DIR%/*/*}/first-$KONG_JOB_ID"'
    job = b.state.create_job(
        command=f"if [ -e {marker} ]; then echo second; else : > {marker}; echo first; "
                "sleep 300; fi")
    b.state.submit_job(job)

    def first_running() -> bool:
        b.state.refresh_jobs([job])
        with job.stdout() as fh:
            return job.status == JobStatus.RUNNING and fh.read() == "first\n"

    await_condition(first_running, 120, "the first attempt to run")
    first = job.batch_job_id
    b.state.resubmit_job(job)
    finish(b, [job])
    assert job.status == JobStatus.COMPLETED and job.data["exit_code"] == 0
    with job.stdout() as fh:
        assert fh.read() == "second\n"
    assert [h["batch_job_id"] for h in job.data["history"]] == [first]
    assert job.data["history"][0]["status"] == "FAILED"


def test_rm_cancels_on_the_cluster_and_deletes_everything(backend: Backend) -> None:
    b = backend
    b.state.mkdir("/gone")
    jobs = [b.state.create_job(command="sleep 300", folder="/gone") for _ in range(3)]
    b.state.submit_job("/gone")
    snapshot = list(jobs)
    dirs = [j.log_dir.rsplit("/", 1)[0] for j in jobs]
    arrays = f"{b.driver.base_dir}/.arrays"
    if b.name in ("slurm", "lsf"):  # the three went as one array: its dir is there
        assert b.driver.transport.run(["ls", "-A", arrays]).text().split(), arrays
    assert b.state.rm("/gone", recursive=True)
    with pytest.raises(NoSuchFolder):  # the folder is gone
        b.state.get_folders("/gone")
    ended_on_cluster(b, snapshot)
    if b.live_on_cluster is not None:
        live = b.live_on_cluster
        await_condition(lambda: live() == [], 60, "nothing of the folder left on the cluster")
    assert b.driver.transport.run(["sh", "-c", _EXISTING, "sh", *dirs]).text().split() == []
    # nor an array's dispatcher, map or scheduler files (the arrays' parent may stay)
    listing = b.driver.transport.run(["sh", "-c", 'ls -A "$1" 2>/dev/null; true', "sh", arrays])
    assert listing.text().split() == [], listing.text()


#: prints those of its arguments that exist on the host (files or dirs)
_EXISTING = 'for p; do if [ -e "$p" ]; then echo "$p"; fi; done'


# Not lsf-noarrays: 200 plain bsub and bkill cost the simulator ~50 s of CI time, and
# test_lsf.py's 2-vs-100 test already counts the round trips of plain LSF jobs.
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "lsf-noarrays"], indirect=True)
def test_round_trips_do_not_grow_with_the_number_of_jobs(backend: Backend) -> None:
    b = backend
    b.driver.base_dir  # noqa: B018 - resolve the remote home before counting
    b.driver.prepare_submit([])  # and what the driver asks once of a cluster (array size)
    costs: dict[int, dict[str, int]] = {}
    for n in (2, 200):
        folder = f"/n{n}"
        b.state.mkdir(folder)
        jobs = [b.state.create_job(command="sleep 300", folder=folder) for _ in range(n)]
        cost: dict[str, int] = {}
        for what, action in (
            ("submit", lambda f=folder: b.state.submit_job(f)),
            ("refresh", lambda j=jobs: b.state.refresh_jobs(j)),
            ("kill", lambda f=folder: b.state.kill_job(f)),
            ("rm", lambda f=folder: b.state.rm(f, recursive=True)),
        ):
            before = b.round_trips()
            action()
            cost[what] = b.round_trips() - before
        costs[n] = cost
    assert costs[2] == costs[200], costs
    assert costs[2] == {"submit": 2, "refresh": 1, "kill": 1, "rm": 1}, costs


# -- a bulk submit killed with -9 half way (batch schedulers) ------------------------


def _per_job(names: list[str]) -> Counter[int]:
    """Submissions per kong job, from the plain tokens among ``names`` (an array
    element's token names its array, not its job: see ids_on_cluster)."""
    plain = [n for n in names if not n.endswith("]")]
    return Counter(int(n.split("-")[2]) for n in plain)


def _crash_mid_submit(b: Backend, folder: str, n: int, command: str) -> list[Job]:
    """``kong submit`` of ``n`` jobs in its own process (its own connection, no agent),
    killed with -9 once some (not all) reached the cluster."""
    assert b.names_on_cluster is not None
    b.state.mkdir(folder)
    jobs = [b.state.create_job(command=command, folder=folder) for _ in range(n)]
    env = {**os.environ, "KONG_AGENT": "0"}
    proc = subprocess.Popen([*KONG, "submit", folder], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await_condition(lambda: len(b.names_on_cluster()) >= max(3, n // 10), 120,  # type: ignore[misc]
                        "the first jobs to reach the cluster")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    reached = len(b.names_on_cluster())
    print(f"{b.name}: {reached} of {n} jobs reached the cluster before the kill -9")
    return jobs


@pytest.mark.parametrize("backend", BATCH, indirect=True)
def test_crash_mid_submit_then_rm_leaves_nothing_on_the_cluster(backend: Backend) -> None:
    b = backend
    n = 200 if b.name.startswith("slurm") else 40
    _crash_mid_submit(b, "/crash", n, "sleep 300")
    assert b.live_on_cluster is not None
    fresh = subprocess.run([*KONG, "rm", "-r", "-y", "/crash"], env=dict(os.environ),
                           capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    # nothing of that folder is left queued or running
    deadline = time.monotonic() + 60
    while (left := b.live_on_cluster()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == []
    # nor the dirs of its arrays, those that reached the scheduler and those that did not
    arrays = f"{b.driver.base_dir}/.arrays"
    listing = b.driver.transport.run(["sh", "-c", 'ls -A "$1" 2>/dev/null; true', "sh", arrays])
    assert listing.text().split() == [], listing.text()


@pytest.mark.parametrize("backend", BATCH, indirect=True)
def test_crash_then_submit_again_runs_every_job_exactly_once(backend: Backend) -> None:
    b = backend
    n = 200 if b.name.startswith("slurm") else 40
    runs = '"${KONG_JOB_OUTPUT_DIR%/*/*}/runs.txt"'
    jobs = _crash_mid_submit(b, "/again", n, f'echo "$KONG_JOB_ID" >> {runs}')
    b.state.submit_job("/again")
    finish(b, jobs, timeout=400)
    assert Counter(j.status for j in jobs) == {JobStatus.COMPLETED: n}
    base = b.driver.base_dir
    ran = b.driver.transport.read_range(f"{base}/runs.txt").decode().split()
    per_job = Counter(int(x) for x in ran)
    assert sorted(per_job) == sorted(j.job_id for j in jobs), "some job never ran"
    assert set(per_job.values()) == {1}, "some job ran twice"
    assert set(_per_job(b.names_on_cluster()).values()) <= {1}  # type: ignore[misc]
    if b.ids_on_cluster is not None:
        # whatever the scheduler still shows is some job's own: no orphaned copy
        assert set(b.ids_on_cluster()) <= {j.batch_job_id for j in jobs}
