"""The arithmetic of retries (kong.retry): resource changes as users write them, queue
limits, retry policies, and the refusals of bad input (one line, nothing changed)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from kong import retry
from kong.config import Config
from kong.drivers.base import QueueLimits
from kong.drivers.lsf_limits import parse_bqueues
from kong.drivers.sge_limits import parse_queues
from kong.drivers.slurm import parse_partitions
from kong.errors import ConfigError, DriverError
from kong.model.job import JobStatus
from kong.state import State
from tests.fixtures_state import kong_home, state, write_config  # noqa: F401
from tests.kongcmd import KONG


@pytest.mark.parametrize(("resource", "text", "current", "expected"), [
    ("walltime", "x2", 60, 120),
    ("walltime", "x1.5", 45, 68),  # whole minutes, rounded up
    ("walltime", "+1:00:00", 30, 90),
    ("walltime", "+15", 30, 45),
    ("walltime", "4:00:00", 30, 240),
    ("walltime", "1-00:00:00", None, 1440),
    ("memory", "x1.5", 1000, 1500),
    ("memory", "+4G", 1024, 5120),
    ("memory", "8G", None, 8192),
    ("memory", "512M", 4096, 512),
    ("memory", "1.5GB", 100, 1536),
    ("cores", "x2", 3, 6),
    ("cores", "+2", 1, 3),
    ("cores", "4", 1, 4),
])
def test_changes_as_written(resource: str, text: str, current: int | None,
                            expected: int) -> None:
    assert retry.parse_change(resource, text).apply(current) == expected


@pytest.mark.parametrize(("resource", "text", "words"), [
    ("walltime", "x0", "the factor must be more than 0"),
    ("memory", "x0", "the factor must be more than 0"),
    ("memory", "banana", "expected x1.5, +4G or 8G"),
    ("walltime", "soon", "expected x2, +1:00:00 or 4:00:00"),
    ("walltime", "+0", "expected x2"),
    ("cores", "-1", "expected x2, +2 or 4"),
    ("memory", "", "expected x1.5"),
])
def test_bad_changes_are_one_clear_line(resource: str, text: str, words: str) -> None:
    with pytest.raises(retry.RetryError) as info:
        retry.parse_change(resource, text)
    message = str(info.value)
    assert words in message and "\n" not in message


def test_a_change_of_nothing_asks_for_a_value() -> None:
    with pytest.raises(retry.RetryError, match=r"asked for no walltime.*--walltime 2:00:00"):
        retry.parse_change("walltime", "x2").apply(None)


def test_reasons_as_users_write_them() -> None:
    assert retry.parse_reason("timeout") == "TIMEOUT"
    assert retry.parse_reason("oom") == "OUT_OF_MEMORY"
    assert retry.parse_reason("exit(3)") == "EXIT(3)"
    assert retry.reason_matches("EXIT(3)", ["EXIT"])
    assert not retry.reason_matches("EXIT(3)", ["EXIT(1)", "TIMEOUT"])
    assert not retry.reason_matches(None, ["TIMEOUT"])
    with pytest.raises(retry.RetryError, match="unknown end reason 'slow'"):
        retry.parse_reason("slow")


class _Driver:
    """Just what kong.retry asks of a driver: options, the job's queue, its limits."""

    def __init__(self, limits: dict[str, QueueLimits], options: dict[str, Any] | None = None):
        self.limits = limits
        self.asked = 0
        self.profile = type("P", (), {"options": options or {}, "retry": None})()

    def job_options(self, job: Any) -> dict[str, Any]:
        return {**self.profile.options, **job.data.get("options", {})}

    def queue_of(self, job: Any) -> str:
        return str(self.job_options(job).get("partition") or "")

    def queue_limits(self) -> dict[str, QueueLimits]:
        self.asked += 1
        return self.limits

    @property
    def known_queue_limits(self) -> dict[str, QueueLimits]:
        if not self.asked:
            self.queue_limits()
        return self.limits


class _Job:
    def __init__(self, walltime: Any = None, memory: int | None = None, cores: int = 1,
                 **data: Any) -> None:
        self.job_id = 7
        self.memory = memory
        self.cores = cores
        self.data = {"options": {"walltime": walltime} if walltime else {}, **data}


SHORT = {"short": QueueLimits(walltime=120, memory=1024), "": QueueLimits()}


def test_a_plan_is_capped_at_the_queue_maximum_with_a_note() -> None:
    driver = _Driver(SHORT, {"partition": "short"})
    plan = retry.plan(driver, _Job(walltime=60, memory=800),  # type: ignore[arg-type]
                      [retry.parse_change("walltime", "x4"), retry.parse_change("memory", "x2")])
    assert plan.resources == retry.Resources(walltime=120, memory=1024, cores=1)
    assert plan.notes == (
        "walltime x4 capped at queue short's maximum 2:00:00 (asked 4:00:00)",
        "memory x2 capped at queue short's maximum 1G (asked 1600M)",
    )


def test_a_job_at_the_maximum_gets_no_more() -> None:
    driver = _Driver(SHORT, {"partition": "short"})
    with pytest.raises(retry.LimitReached) as info:
        retry.plan(driver, _Job(walltime="2:00:00"),  # type: ignore[arg-type]
                   [retry.parse_change("walltime", "+1:00:00")])
    assert str(info.value) == ("job 7: walltime 2:00:00 is queue short's maximum already; "
                               "+1:00:00 would exceed it")


def test_limits_are_asked_once_per_driver() -> None:
    driver = _Driver(SHORT, {"partition": "short"})
    for _ in range(3):
        retry.plan(driver, _Job(walltime=30), [retry.parse_change("walltime", "x2")])  # type: ignore[arg-type]
    assert driver.asked == 1


def test_memory_per_core_caps_by_the_job_cores() -> None:
    driver = _Driver({"": QueueLimits(memory_per_core=1000)})
    plan = retry.plan(driver, _Job(memory=1500, cores=2),  # type: ignore[arg-type]
                      [retry.parse_change("memory", "x2")])
    assert plan.resources.memory == 2000


def test_the_policy_grows_what_the_job_lacked() -> None:
    policy = {"on": ["TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"], "max": 2,
              "walltime": "x2", "memory": "+1G"}
    driver = _Driver(SHORT)
    timed_out = _Job(walltime=10, memory=100, retry=policy, end_reason="TIMEOUT")
    oom = _Job(walltime=10, memory=100, retry=policy, end_reason="OUT_OF_MEMORY")
    node = _Job(walltime=10, memory=100, retry=policy, end_reason="NODE_FAIL")
    failed = _Job(walltime=10, memory=100, retry=policy, end_reason="EXIT(1)")
    done = _Job(walltime=10, memory=100, retry=policy, end_reason="TIMEOUT", retries=2)
    killed = _Job(walltime=10, retry=policy, end_reason="TIMEOUT", killed=True)
    plans = {name: retry.auto_plan(driver, job)  # type: ignore[arg-type]
             for name, job in [("timeout", timed_out), ("oom", oom), ("node", node),
                               ("exit", failed), ("max", done), ("killed", killed)]}
    assert plans["timeout"] == retry.Plan(retry.Resources(20, 100, 1))
    assert plans["oom"] == retry.Plan(retry.Resources(10, 1124, 1))
    assert plans["node"] == retry.Plan(retry.Resources(10, 100, 1))  # again, as it was
    assert plans["exit"] is None and plans["killed"] is None
    assert plans["max"] == "not retried: TIMEOUT after 2 retries (max 2)"


def test_partitions_from_scontrol() -> None:
    # `scontrol show partition -o` of the test image (Slurm 22.05), cut to the fields read
    text = (
        "PartitionName=debug AllowGroups=ALL Default=YES QoS=N/A DefaultTime=NONE "
        "MaxNodes=UNLIMITED MaxTime=UNLIMITED MaxCPUsPerNode=UNLIMITED Nodes=vm "
        "DefMemPerNode=2048 MaxMemPerNode=UNLIMITED TRES=cpu=8,mem=4G,node=1,billing=8\n"
        "PartitionName=short AllowGroups=ALL Default=NO QoS=N/A DefaultTime=00:30:00 "
        "MaxTime=00:02:00 MaxCPUsPerNode=4 Nodes=vm MaxMemPerCPU=512 "
        "DefMemPerNode=256 MaxMemPerNode=1024 TRES=cpu=8,mem=4G,node=1,billing=8\n"
        "PartitionName=long MaxTime=7-00:00:00 Default=NO\n"
    )
    limits = parse_partitions(text)
    assert limits["debug"] == QueueLimits() and limits[""] is limits["debug"]
    assert limits["short"] == QueueLimits(walltime=2, memory=1024, memory_per_core=512,
                                          cores=4, default_walltime=30)
    assert limits["long"].walltime == 7 * 24 * 60


# -- refusals at the edges: the config, the CLI, the API --------------------------------


@pytest.mark.parametrize(("policy", "words"), [
    ("{on: [SLOW]}", "profiles.c.retry.on: unknown end reason 'SLOW'"),
    ("{max: -1}", "profiles.c.retry.max: expected a number of retries"),
    ("{walltime: x0}", "profiles.c.retry.walltime: walltime 'x0': the factor must be more"),
    ("{memory: banana}", "profiles.c.retry.memory: memory 'banana': expected"),
    ("{often: 3}", "profiles.c.retry.often: unknown key (expected one of: on, max,"),
    ("3", "profiles.c.retry: expected a mapping"),
])
def test_a_bad_policy_in_the_config_is_one_line(kong_home: Path, policy: str,  # noqa: F811
                                                words: str) -> None:
    path = write_config(kong_home, f"profiles:\n  c:\n    driver: local\n    retry: {policy}\n")
    with pytest.raises(ConfigError) as info:
        Config()
    message = str(info.value)
    assert message.startswith(f"{path}:4: ") and words in message and "\n" not in message


def test_a_good_policy_is_kept_normalised(kong_home: Path) -> None:  # noqa: F811
    write_config(kong_home, "profiles:\n  c:\n    driver: local\n"
                            "    retry: {on: [timeout, oom], walltime: x2}\n")
    assert Config().profile("c").retry == {"on": ["TIMEOUT", "OUT_OF_MEMORY"], "max": 3,
                                           "walltime": "x2"}


def test_a_job_policy_is_checked_at_create(state: State) -> None:  # noqa: F811
    with pytest.raises(retry.PolicyError, match="unknown end reason 'LATE'"):
        state.create_job(command="true", retry={"on": ["LATE"]})
    assert state.get_jobs("/", recursive=True) == []
    job = state.create_job(command="true", retry={"on": ["TIMEOUT"], "max": 1})
    assert job.data["retry"] == {"on": ["TIMEOUT"], "max": 1}


@pytest.mark.parametrize(("option", "words"), [
    (["--walltime", "x0"], "kong: error: walltime 'x0': the factor must be more than 0"),
    (["--memory", "banana"], "kong: error: memory 'banana': expected x1.5, +4G or 8G"),
    (["--reason", "slow"], "kong: error: unknown end reason 'slow'"),
])
def test_bad_resubmit_input_is_one_line_and_changes_nothing(
    state: State, kong_home: Path, option: list[str], words: str,  # noqa: F811
) -> None:
    job = state.create_job(command="exit 3")
    state.submit_job(job)
    state.wait(job, notify=False, timeout=30)
    assert job.status == JobStatus.FAILED
    result = subprocess.run([*KONG, "resubmit", "--failed", "-y", *option, str(job.job_id)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.strip().startswith(words)
    job.reload()
    assert job.status == JobStatus.FAILED and not job.data.get("history")


def test_state_refuses_a_bad_change_before_anything(state: State) -> None:  # noqa: F811
    job = state.create_job(command="exit 3")
    state.submit_job(job)
    state.wait(job, notify=False, timeout=30)
    with pytest.raises(retry.RetryError, match="cores"):
        state.resubmit_job(job, cores="x0")
    assert job.status == JobStatus.FAILED and not job.data.get("history")


BQUEUES_L = """\
QUEUE: normal
  -- For normal low priority jobs.  This is the default queue.

PARAMETERS/STATISTICS
PRIO NICE STATUS          MAX JL/U JL/P JL/H NJOBS  PEND   RUN SSUSP USUSP  RSV PJOBS
 30    20  Open:Active       -    -    -    -     0     0     0     0     0    0     0
Interval for a host to accept two jobs is 0 seconds

 DEFAULT LIMITS:
 RUNLIMIT
 60.0 min

 MAXIMUM LIMITS:
 RUNLIMIT
 720.0 min

 MEMLIMIT
      4 G

 PROCLIMIT
 1 4 16

SCHEDULING PARAMETERS
           r15s   r1m  r15m   ut      pg    io   ls    it    tmp    swp    mem
 loadSched   -     -     -     -       -     -    -     -     -      -      -

USERS: all
HOSTS:  all

------------------------------------------------------------------------------

QUEUE: short
  -- Jobs of up to 30 minutes.

 RUNLIMIT
 30.0 min of hostA

 MEMLIMIT
 512000 K

USERS: all
"""


def test_queues_from_bqueues() -> None:
    limits = parse_bqueues(BQUEUES_L)
    assert limits["normal"] == QueueLimits(walltime=720, memory=4096, cores=16,
                                           default_walltime=60)
    assert limits[""] is limits["normal"]
    assert limits["short"] == QueueLimits(walltime=30, memory=500)


def test_an_ended_attempt_is_retried_by_one_kong_only(state: State) -> None:  # noqa: F811
    """Two kong processes that both saw a job end (two `kong wait` of one folder) must
    not both resubmit it: the retry is claimed in the database first. Here the other
    process is played by a direct write to the job's row (real SQLite) after this one
    read it."""
    import json

    from sqlalchemy import text

    from kong import db, lifecycle

    job = state.create_job(command="true")
    with db.write():
        job.status = JobStatus.FAILED
        job.batch_job_id = "41"
        job.set_data(attempt=1, end_reason="TIMEOUT")
    seen = dict(job.data)
    with db.write() as s:  # the other kong claims the retry of attempt 1
        s.execute(text("UPDATE jobs SET data = :data WHERE job_id = :id"),
                  {"data": json.dumps({**seen, "retry_claimed": True}),
                   "id": job.job_id})
    assert job.data == seen  # this process still sees the job unclaimed
    assert lifecycle.claim_retries([job]) == []

    other = state.create_job(command="true")
    with db.write():
        other.status = JobStatus.FAILED
        other.batch_job_id = "42"
        other.set_data(attempt=1, end_reason="TIMEOUT")
    assert lifecycle.claim_retries([other]) == [other]
    assert other.data["retry_claimed"] is True
    assert lifecycle.claim_retries([other]) == []  # and only once


SGE_QUEUES = """\
KONG-QUEUE all.q
qname                 all.q
hostlist              @allhosts
slots                 8
h_rt                  INFINITY
h_vmem                INFINITY
KONG-QUEUE short.q
qname                 short.q
slots                 4
s_rt                  0:55:00
h_rt                  1:00:00
h_vmem                2G
"""


def test_queues_from_qconf() -> None:
    limits = parse_queues(SGE_QUEUES)
    assert limits["all.q"] == QueueLimits(cores=8)
    assert limits["short.q"] == QueueLimits(walltime=60, memory_per_core=2048, cores=4)
    # a job without -q may land in either: only what holds for both
    assert limits[""] == QueueLimits(cores=8)


def test_a_local_job_gets_at_most_the_runner_slots(kong_home: Path) -> None:  # noqa: F811
    write_config(kong_home, "profiles:\n  local:\n    driver: local\n    max_parallel: 3\n")
    kong = State.get_instance()
    job = kong.create_job(command="exit 1", cores=2)
    kong.submit_job(job)
    kong.wait(job, notify=False, timeout=30)
    with pytest.raises(DriverError, match="cores 3 is the default queue's maximum already"):
        kong.resubmit_job(job, cores="+1")  # 2 -> 3, then no further
        kong.wait(job, notify=False, timeout=30)
        kong.resubmit_job(job, cores="+1")
    assert job.cores == 3 and len(job.data["history"]) == 1


def test_create_job_takes_a_retry_policy(state: State, kong_home: Path) -> None:  # noqa: F811
    def kong(*words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*KONG, "create-job", *words, "--", "true"],
                              capture_output=True, text=True, timeout=60)

    good = kong("--retry", "{on: [timeout], max: 2, walltime: x2}")
    assert good.returncode == 0, good.stderr
    (job,) = state.get_jobs("/", recursive=True)
    assert job.data["retry"] == {"on": ["TIMEOUT"], "max": 2, "walltime": "x2"}
    for policy, words in [("{on: [LATE]}", "kong: error: retry.on: unknown end reason 'LATE'"),
                          ("{max: x}", "kong: error: retry.max: expected a number"),
                          ("{on: [", "kong: error: Invalid value for --retry: not a YAML")]:
        bad = kong("--retry", policy)
        assert bad.returncode != 0 and bad.stderr.startswith(words), bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    assert len(state.get_jobs("/", recursive=True)) == 1


def test_a_queue_the_scheduler_did_not_list_caps_nothing() -> None:
    driver = _Driver(SHORT, {"partition": "gpu"})
    plan = retry.plan(driver, _Job(walltime=100), [retry.parse_change("walltime", "x2")])  # type: ignore[arg-type]
    assert plan == retry.Plan(retry.Resources(200, None, 1))
