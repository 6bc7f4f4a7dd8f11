"""Parsers of what jobs used and why they ended: sacct step rows folded as seff does,
HTCondor ads, LSF TERM_* reasons, Slurm's sizes and durations. Samples are in the
formats the schedulers print (Slurm 22.05's sacct -P, HTCondor 23 condor_history
-json, LSF 10.1's EXIT_REASON)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kong.drivers.htcondor import condor_end_reason, scheduler_info
from kong.drivers.lsf_parsers import lsf_end_reason, parse_bjobs_json
from kong.model.job import JobStatus
from kong.usage import (
    as_datetime,
    duration_seconds,
    efficiency,
    fold_sacct_steps,
    job_times,
    size_mb,
)


@pytest.mark.parametrize(("text", "mb"), [
    ("204800K", 200.0), ("200M", 200.0), ("1.5G", 1536.0), ("4000Mc", 4000.0),
    ("200 Mbytes", 200.0), ("512 Kbytes", 0.5), ("4.402KB", 4.402 / 1024),
    ("", None), ("-", None), ("lots", None),
])
def test_sizes(text: str, mb: float | None) -> None:
    assert size_mb(text) == (pytest.approx(mb) if mb is not None else None)


@pytest.mark.parametrize(("text", "seconds"), [
    ("00:00:05", 5), ("00:01.503", 1.503), ("01:02:03", 3723), ("2-00:00:01", 172801),
    ("", None), ("INVALID", None),
])
def test_durations(text: str, seconds: float | None) -> None:
    assert duration_seconds(text) == (pytest.approx(seconds) if seconds is not None else None)


#: sacct -n -P --format=JobID,Elapsed,TotalCPU,MaxRSS,ReqMem,AllocCPUS (no -X)
SACCT_STEPS = """\
42|00:00:10|00:09.120||500M|2
42.batch|00:00:10|00:06.100|150000K||2
42.extern|00:00:10|00:00:00|1024K||2
42.0|00:00:04|00:03.020|204800K||2
43|00:00:03|00:00.010||1000Mc|4
43.batch|00:00:03|00:00.010|0||4
44|00:00:00|00:00:00||0n|1
"""


def test_sacct_steps_fold_like_seff() -> None:
    usage = fold_sacct_steps(SACCT_STEPS.splitlines())
    # peak: the largest step (the srun step 42.0), not the sum and not the batch step
    assert usage["42"] == {"source": "sacct", "elapsed": 10.0, "cpu_time": pytest.approx(9.12),
                           "max_rss_mb": 200.0, "cpus": 2, "req_mem_mb": 500.0}
    # per-CPU memory of old Slurm counts once per CPU; a 0 RSS is "nothing sampled"
    assert usage["43"]["req_mem_mb"] == 4000.0
    assert usage["43"]["max_rss_mb"] == 0.0
    # "0n" (all of the node's memory) is no figure to compare with
    assert "req_mem_mb" not in usage["44"] and "max_rss_mb" not in usage["44"]
    assert efficiency(usage["42"])["cpu_efficiency"] == pytest.approx(9.12 / 20)
    assert efficiency(usage["42"])["memory_efficiency"] == pytest.approx(0.4)


def test_sacct_without_steps_takes_the_steps_cpu_sum() -> None:
    usage = fold_sacct_steps(["7||||", "7.batch|00:00:02|00:01.000|1M||1",
                              "7.0|00:00:02|00:01.000|2M||1"])
    assert usage["7"]["cpu_time"] == 2.0 and usage["7"]["max_rss_mb"] == 2.0


def test_efficiency_without_figures_is_none_not_zero() -> None:
    assert efficiency({"elapsed": 10.0}) == {"cpu_efficiency": None, "memory_efficiency": None}


def _ad(**kw: object) -> dict[str, object]:
    return {"ClusterId": 5, "ProcId": 0, **kw}


def test_condor_history_usage_and_times() -> None:
    ad = _ad(JobStatus=4, ExitCode=0, ExitBySignal=False, QDate=1764633600,
             JobCurrentStartDate=1764633605, CompletionDate=1764633615, RemoteUserCpu=2.5,
             RemoteSysCpu=0.5, ResidentSetSize=204800, MemoryUsage="/Expr(x)/",
             RequestCpus=1, RequestMemory=500)
    info = scheduler_info(ad)
    assert info.status == JobStatus.COMPLETED and info.end_reason == "EXIT(0)"
    assert info.extra["usage"] == {"source": "condor", "cpu_time": 3.0, "elapsed": 10.0,
                                   "max_rss_mb": 200.0, "cpus": 1, "req_mem_mb": 500.0}
    assert as_datetime(info.extra["submit_time"]) == datetime.fromtimestamp(1764633600, UTC)
    times = job_times(info.extra | {"usage": info.extra["usage"]})
    assert times["queue_wait"] == 5.0 and times["run_time"] == 10.0


def test_condor_running_job_has_no_usage_yet() -> None:
    info = scheduler_info(_ad(JobStatus=2, JobCurrentStartDate=1764633605))
    assert "usage" not in info.extra and info.end_reason is None
    assert "end_time" not in info.extra


@pytest.mark.parametrize(("ad", "reason"), [
    (_ad(JobStatus=4, ExitBySignal=True, ExitSignal=9), "SIGNAL(9)"),
    (_ad(JobStatus=4, ExitCode=3), "EXIT(3)"),
    (_ad(JobStatus=5, HoldReasonCode=3, HoldReason="walltime of 60 s exceeded"), "TIMEOUT"),
    (_ad(JobStatus=5, HoldReasonCode=34,
         HoldReason="Error from slot1@vm: Job has gone over cgroup memory limit of 500 "
         "megabytes."), "OUT_OF_MEMORY"),
    (_ad(JobStatus=5, HoldReasonCode=13, HoldReason="Error from starter"), None),
    (_ad(JobStatus=3, RemoveReason="via condor_rm"), "CANCELLED"),
    (_ad(JobStatus=3, LastHoldReason="walltime of 60 s exceeded", LastHoldReasonCode=3),
     "TIMEOUT"),
])
def test_condor_end_reasons(ad: dict[str, object], reason: str | None) -> None:
    assert condor_end_reason(ad) == reason


@pytest.mark.parametrize(("reason", "code", "expected"), [
    ("TERM_RUNLIMIT: job killed after reaching LSF run time limit", 140, "TIMEOUT"),
    ("TERM_MEMLIMIT: job killed after reaching LSF memory usage limit", 137,
     "OUT_OF_MEMORY"),
    ("TERM_OWNER: job killed by owner", 130, "CANCELLED"),
    ("TERM_HOST: job killed by LSF due to a host failure", None, "NODE_FAIL"),
    ("TERM_PREEMPT: job killed after preemption", 143, "PREEMPTED"),
    ("TERM_EXTERNAL_SIGNAL: job killed by a signal external to LSF", 137, "SIGNAL(9)"),
    ("", 3, "EXIT(3)"),
    ("", 0, "EXIT(0)"),
])
def test_lsf_end_reasons(reason: str, code: int | None, expected: str) -> None:
    assert lsf_end_reason(reason, code) == expected


def test_lsf_bjobs_record_carries_its_end_reason() -> None:
    doc = ('{"COMMAND":"bjobs","JOBS":1,"RECORDS":[{"JOBID":"7","STAT":"EXIT",'
           '"EXIT_CODE":"140","EXIT_REASON":"TERM_RUNLIMIT: job killed after reaching LSF '
           'run time limit","SUBMIT_TIME":"Dec  1 21:00","START_TIME":"Dec  1 21:01",'
           '"FINISH_TIME":"Dec  1 21:02 L","EXEC_HOST":"vm","JOB_NAME":"kong-x-7-1"}]}')
    info = parse_bjobs_json(doc)["7"]
    assert info.status == JobStatus.FAILED and info.end_reason == "TIMEOUT"


def test_job_times_of_a_running_and_a_queued_job() -> None:
    now = datetime(2026, 12, 2, 0, 10, tzinfo=UTC)
    running = job_times({"submit_time": "2026-12-02T00:00:00+00:00",
                         "start_time": "2026-12-02T00:01:00+00:00"}, now)
    assert running["queue_wait"] == 60 and running["run_time"] == 540
    queued = job_times({"submitted_at": "2026-12-02T00:05:00+00:00"}, now)
    assert queued["queue_wait"] == 300 and queued["run_time"] is None
