"""The Slurm driver's data: state table, parsers of squeue/sacct/scontrol/sbatch
output (sample lines as Slurm 22.05 prints them), options and the #SBATCH header.
No cluster needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from kong.config import Config
from kong.drivers.slurm import (
    STATES,
    SlurmDriver,
    parse_exit_code,
    parse_sacct_line,
    parse_sbatch,
    parse_scontrol_line,
    parse_squeue_line,
    scontrol_fields,
    slurm_status,
)
from kong.errors import DriverError
from kong.model.job import JobStatus
from tests.fixtures_state import make_state

S, R, F, C, U = (JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.FAILED,
                 JobStatus.COMPLETED, JobStatus.UNKNOWN)


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("PENDING", S), ("CONFIGURING", S), ("REQUEUED", S), ("REQUEUE_HOLD", S),
        ("RUNNING", R), ("COMPLETING", R), ("SUSPENDED", R), ("RESIZING", R),
        ("COMPLETED", C),
        ("FAILED", F), ("CANCELLED", F), ("CANCELLED by 2000", F), ("CANCELLED+", F),
        ("TIMEOUT", F), ("NODE_FAIL", F), ("PREEMPTED", F), ("OUT_OF_MEMORY", F),
        ("BOOT_FAIL", F), ("DEADLINE", F), ("REVOKED", F), ("SPECIAL_EXIT", F),
        ("running", R), ("SOMETHING_NEW", U), ("", U),
    ],
)
def test_every_state_maps(state: str, status: JobStatus) -> None:
    assert slurm_status(state) == status


def test_state_table_covers_the_issue() -> None:
    named = ["PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "COMPLETED", "FAILED",
             "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
             "DEADLINE", "REQUEUED", "SUSPENDED", "RESIZING", "REVOKED", "SPECIAL_EXIT"]
    assert not [s for s in named if s not in STATES]


@pytest.mark.parametrize(
    ("text", "status", "code"),
    [
        ("0:0", C, 0),
        ("3:0", F, 3),
        ("1:0", F, 1),
        ("0:9", F, 137),  # killed by SIGKILL
        ("0:15", F, 143),
        ("0:0", F, None),  # cancelled / timed out by Slurm: no exit code of the job's
        ("", F, None),
        (None, C, None),
        ("garbage", F, None),
    ],
)
def test_exit_code(text: str | None, status: JobStatus, code: int | None) -> None:
    assert parse_exit_code(text, status) == code


@pytest.mark.parametrize(
    ("output", "batch_id"),
    [
        ("123", "123"),
        ("123\n", "123"),
        ("123;cluster_b", "123"),
        ("sbatch: warning: some note\n4567", "4567"),
        ("site wrapper: job held for 600 seconds\n4568;c1\nsite wrapper: done", "4568"),
    ],
)
def test_parse_sbatch(output: str, batch_id: str) -> None:
    assert parse_sbatch(output) == batch_id


@pytest.mark.parametrize("output", [
    "site wrapper: job held for 600 seconds",
    "sbatch: error: Batch job submission failed: 42 nodes busy",
    "",
])
def test_parse_sbatch_takes_no_number_out_of_a_sentence(output: str) -> None:
    """Issue 15, "while there": a number inside a wrapper's sentence is no job id."""
    with pytest.raises(DriverError, match="no job id"):
        parse_sbatch(output)


@pytest.mark.parametrize("output", ["", "sbatch: error: Batch job submission failed: x"])
def test_parse_sbatch_without_id(output: str) -> None:
    with pytest.raises(DriverError, match="no job id"):
        parse_sbatch(output)


def test_squeue_pending_and_running() -> None:
    batch_id, info = parse_squeue_line(
        "3|kong-430af35c-2-1|PENDING|Priority||2026-11-25T14:44:54|N/A"
    ) or ("", None)
    assert batch_id == "3" and info is not None
    assert (info.status, info.state, info.reason) == (S, "PENDING", "Priority")
    assert info.exit_code is None
    assert info.extra == {"node": None, "submit_time": "2026-11-25T14:44:54",
                          "start_time": None, "expected_start": None, "end_time": None}

    parsed = parse_squeue_line("5|kong-to|RUNNING|None|vm|2026-11-25T14:44:54|2026-11-25T14:44:55")
    assert parsed is not None
    batch_id, info = parsed
    assert (batch_id, info.status, info.reason) == ("5", R, None)
    assert info.extra["node"] == "vm"
    assert info.extra["start_time"] == "2026-11-25T14:44:55"


@pytest.mark.parametrize("line", ["", "garbage", "|a|b|c|d|e|f"])
def test_squeue_garbage(line: str) -> None:
    assert parse_squeue_line(line) is None


@pytest.mark.parametrize(
    ("line", "status", "state", "code", "reason"),
    [
        ("7|kong-430af35c-1-1|COMPLETED|0:0|vm|2026-11-25T14:47:45|2026-11-25T14:47:45|"
         "2026-11-25T14:47:46|None", C, "COMPLETED", 0, None),
        ("8|kong-430af35c-2-1|FAILED|1:0|vm|2026-11-25T14:47:45|2026-11-25T14:47:45|"
         "2026-11-25T14:47:46|None", F, "FAILED", 1, None),
        ("6|kong-timeout|TIMEOUT|0:0|vm|2026-11-25T14:46:01|2026-11-25T14:46:01|"
         "2026-11-25T14:47:09|None", F, "TIMEOUT", None, "TIMEOUT"),
        ("5|kong-to|CANCELLED by 2000|0:0|vm|2026-11-25T14:44:54|2026-11-25T14:44:55|"
         "2026-11-25T14:45:06|None", F, "CANCELLED", None, "CANCELLED by 2000"),
        ("9|x|OUT_OF_MEMORY|0:125|vm|2026-11-25T14:44:54|2026-11-25T14:44:55|"
         "2026-11-25T14:45:06|None", F, "OUT_OF_MEMORY", 0 + 128 + 125, "OUT_OF_MEMORY"),
        ("10|x|NODE_FAIL|0:0|vm|2026-11-25T14:44:54|2026-11-25T14:44:55|"
         "2026-11-25T14:45:06|None", F, "NODE_FAIL", None, "NODE_FAIL"),
        # still running in the database: not finished, so no exit code, no end time
        ("5|kong-to|RUNNING|0:0|vm|2026-11-25T14:44:54|2026-11-25T14:44:55|Unknown|None",
         R, "RUNNING", None, None),
        ("11|x|PENDING|0:0|None assigned|2026-11-25T14:44:54|Unknown|Unknown|Resources",
         S, "PENDING", None, "Resources"),
        # a job name with the separator in it is still read from both ends
        ("12|a|b|COMPLETED|0:0|vm|2026-11-25T14:44:54|2026-11-25T14:44:55|"
         "2026-11-25T14:45:06|None", C, "COMPLETED", 0, None),
    ],
)
def test_sacct(line: str, status: JobStatus, state: str, code: int | None,
               reason: str | None) -> None:
    parsed = parse_sacct_line(line)
    assert parsed is not None
    batch_id, info = parsed
    assert batch_id == line.split("|", 1)[0]
    assert (info.status, info.state, info.exit_code, info.reason) == (status, state, code, reason)
    if status.finished:
        assert info.extra["end_time"]
        assert info.extra["node"] == "vm"
    else:
        assert info.extra["end_time"] is None


def test_sacct_garbage() -> None:
    assert parse_sacct_line("") is None
    assert parse_sacct_line("1|2|3") is None


SCONTROL = (
    "JobId=4 JobName=kong-t3 UserId=kong(2000) GroupId=kong(2000) MCS_label=N/A "
    "Priority=4294901756 Nice=0 Account=kong QOS=normal JobState=FAILED Reason=NonZeroExitCode "
    "Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:03 "
    "TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-25T14:44:54 "
    "EligibleTime=2026-11-25T14:44:54 AccrueTime=2026-11-25T14:44:54 "
    "StartTime=2026-11-25T14:44:55 EndTime=2026-11-25T14:44:58 Deadline=N/A "
    "SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-25T14:44:55 Scheduler=Main "
    "Partition=debug AllocNode:Sid=localhost:404 ReqNodeList=(null) ExcNodeList=(null) "
    "NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* "
    "TRES=cpu=1,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* "
    "MinCPUsNode=1 MinMemoryNode=0 MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 "
    "OverSubscribe=YES Contiguous=0 Licenses=(null) Network=(null) Command=(null) "
    "WorkDir=/home/kong/my dir StdErr=/home/kong/slurm-4.out StdIn=/dev/null "
    "StdOut=/home/kong/slurm-4.out Power= "
)


def test_scontrol_fields() -> None:
    fields = scontrol_fields(SCONTROL)
    assert fields["TRES"] == "cpu=1,node=1,billing=1"
    assert fields["WorkDir"] == "/home/kong/my dir"
    assert fields["AllocNode:Sid"] == "localhost:404"
    assert fields["Power"] == ""


def test_scontrol_line() -> None:
    parsed = parse_scontrol_line(SCONTROL)
    assert parsed is not None
    batch_id, info = parsed
    assert batch_id == "4"
    assert (info.status, info.state, info.exit_code, info.reason) == (
        F, "FAILED", 3, "NonZeroExitCode")
    assert info.extra == {"node": "vm", "submit_time": "2026-11-25T14:44:54",
                          "start_time": "2026-11-25T14:44:55", "expected_start": None,
                          "end_time": "2026-11-25T14:44:58"}
    cancelled = SCONTROL.replace("JobState=FAILED Reason=NonZeroExitCode",
                                 "JobState=CANCELLED Reason=None").replace("ExitCode=3:0",
                                                                           "ExitCode=0:15")
    parsed = parse_scontrol_line(cancelled)
    assert parsed is not None
    assert (parsed[1].status, parsed[1].exit_code, parsed[1].reason) == (F, 143, "CANCELLED")
    assert parse_scontrol_line("no fields here") is None


# -- options and the header (a slurm profile without a host: nothing is run) ------------


@pytest.fixture
def driver(kong_home: Path) -> SlurmDriver:
    config = Config(data={
        "default_profile": "s",
        "profiles": {"s": {"driver": "slurm", "remote_dir": "/scratch/kong",
                           "account": "acct", "partition": "debug", "walltime": "1:30:00",
                           "cores": 2, "extra": ["--gres=gpu:1", "#SBATCH --exclusive"]}},
    })
    state = make_state(config)
    d = state.default_driver
    assert isinstance(d, SlurmDriver)
    return d


def test_header(driver: SlurmDriver) -> None:
    from kong import lifecycle
    from kong.model.folder import Folder

    job = lifecycle.create(driver, Folder.get_root(), "echo hi", memory=512, qos="high", nodes=1,
                            tasks=2, licenses="matlab:1")
    assert job.cores == 2  # the profile's default
    header = driver.header_lines(job, driver.job_options(job), "kong-x-1-1")
    paths = driver.job_paths(job)
    assert header == [
        "#SBATCH --job-name=kong-x-1-1",
        "#SBATCH --comment=kong-x-1-1",
        f"#SBATCH --output={paths.stdout}",
        f"#SBATCH --error={paths.stderr}",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --time=90",
        "#SBATCH --mem=512",
        "#SBATCH --account=acct",
        "#SBATCH --partition=debug",
        "#SBATCH --qos=high",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=2",
        "#SBATCH --licenses=matlab:1",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --exclusive",
    ]
    script = driver.render(job, header)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert lines[1 : 1 + len(header)] == header  # directives before any command
    assert paths.stdout.startswith("/scratch/kong/")

    # memory as a profile option may be a size with a unit (create_job's is MB)
    job2 = lifecycle.create(driver, Folder.get_root(), "true", cores=4)
    header2 = driver.header_lines(job2, {**driver.job_options(job2), "memory": "4G"}, "t")
    assert "#SBATCH --cpus-per-task=4" in header2
    job3 = lifecycle.create(driver, Folder.get_root(), "true", walltime=30)  # minutes
    assert "#SBATCH --time=30" in driver.header_lines(job3, driver.job_options(job3), "t")
    assert "#SBATCH --mem=4G" in header2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue": "x"}, "unknown option 'queue'"),
        ({"partition": 3}, "expected str"),
        ({"memory": "lots"}, "expected MB or a size"),
        ({"walltime": "soon"}, "walltime"),
        ({"account": "a\n#SBATCH --x"}, "no newlines"),
        ({"extra": ["--a", 1]}, "list of strings"),
        ({"tasks": 0}, "at least 1"),
    ],
)
def test_bad_options_refused(driver: SlurmDriver, options: dict[str, object],
                             message: str) -> None:
    from kong import lifecycle
    from kong.model.folder import Folder

    with pytest.raises(DriverError, match=message):
        driver.check_options(options)  # what a profile's options go through
    if "memory" not in options:  # create_job's memory is its own argument (MB)
        with pytest.raises(DriverError, match=message):
            lifecycle.create(driver, Folder.get_root(), "true", **options)


def test_bad_profile_option_refused(kong_home: Path) -> None:
    config = Config(data={"default_profile": "s",
                          "profiles": {"s": {"driver": "slurm", "memory": "lots"}}})
    state = make_state(config)
    with pytest.raises(DriverError, match="memory"):
        state.default_driver  # noqa: B018


def test_pending_job_start_estimate_is_no_start_time() -> None:
    """Issue 15, "while there": squeue's %S of a pending job is Slurm's estimate."""
    parsed = parse_squeue_line("5|kong-430af35c-5-1|PENDING|Resources||"
                               "2026-11-25T14:44:54|2026-11-25T16:00:00")
    assert parsed is not None
    info = parsed[1]
    assert info.extra["start_time"] is None
    assert info.extra["expected_start"] == "2026-11-25T16:00:00"


@pytest.mark.parametrize(("state", "exit_code", "reason"), [
    ("COMPLETED", "0:0", "EXIT(0)"),
    ("FAILED", "3:0", "EXIT(3)"),
    ("FAILED", "0:9", "SIGNAL(9)"),
    ("TIMEOUT", "0:15", "TIMEOUT"),
    ("OUT_OF_MEMORY", "0:125", "OUT_OF_MEMORY"),
    ("CANCELLED by 1000", "0:15", "CANCELLED"),
    ("NODE_FAIL", "0:0", "NODE_FAIL"),
    ("PREEMPTED", "0:0", "PREEMPTED"),
    ("FAILED", "0:0", None),  # Slurm ended it and said no more
])
def test_sacct_end_reason(state: str, exit_code: str, reason: str | None) -> None:
    """Issue 20: every end is said in kong's one vocabulary."""
    parsed = parse_sacct_line(f"7|kong-x|{state}|{exit_code}|vm|2026-01-01T00:00:00|"
                              "2026-01-01T00:00:01|2026-01-01T00:00:02|None")
    assert parsed is not None
    assert parsed[1].end_reason == reason


def test_a_live_job_has_no_end_reason() -> None:
    parsed = parse_squeue_line("5|kong-to|RUNNING|None|vm|2026-11-25T14:44:54|2026-11-25T14:44:55")
    assert parsed is not None and parsed[1].end_reason is None


# -- scancel -v of many ids: its words per id --------------------------------------------


# what scancel -v of Slurm 22.05 (the test cluster) printed, joined on one line by the
# kill loop: 10 had completed, 11_7 was never an element, 11_0 was running
SCANCEL_V = ("scancel: Terminating job 10 scancel: Terminating job 11_7 scancel: "
             "Terminating job 11_0 scancel: error: Kill job error on job id 10: Job/step "
             "already completing or completed scancel: error: Kill job error on job id "
             "11_7: Invalid job id specified")


def test_scancel_v_answers_per_id(driver: SlurmDriver) -> None:
    ids = ["10", "11_7", "11_0", "12"]
    assert driver.kill_many_argv(ids) == ["scancel", "-v", *ids]
    said = driver.kill_many_answers(ids, 0, SCANCEL_V)
    outcomes = {i: driver.classify_kill(*a).outcome.value for i, a in said.items()}
    # 12: scancel did not name it, so no answer (it gets a scancel of its own)
    assert outcomes == {"10": "finished", "11_7": "unknown", "11_0": "killed"}


@pytest.mark.parametrize("rc, output", [
    (0, SCANCEL_V + " scancel: error: Unable to contact slurm controller"),
    (0, "slurm_load_jobs error: Socket timed out " + SCANCEL_V),
    (137, SCANCEL_V),  # killed before it could say how the kill of 11_0 went
])
def test_scancel_v_terminating_counts_only_from_a_whole_answer(
    driver: SlurmDriver, rc: int, output: str
) -> None:
    said = driver.kill_many_answers(["10", "11_7", "11_0"], rc, output)
    assert "11_0" not in said  # not a guess: it gets a scancel of its own
    assert said["11_7"][1].startswith("Invalid job id specified")


def test_scancel_v_permission_denied_is_refused(driver: SlurmDriver) -> None:
    said = driver.kill_many_answers(["5", "6"], 1, "scancel: Terminating job 5 scancel: "
                                    "Terminating job 6 scancel: error: Kill job error on job "
                                    "id 5: Access/permission denied")
    assert driver.classify_kill(*said["5"]).outcome.value == "refused"
    assert driver.classify_kill(*said["6"]).outcome.value == "killed"
