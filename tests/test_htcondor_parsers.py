"""The HTCondor driver's parsers and constraint builders, on output captured from
HTCondor 23.9 (``condor_submit -terse``, ``condor_q -json``, ``condor_history -json``)."""

from __future__ import annotations

from typing import Any

import pytest

from kong.config import Config
from kong.drivers.batch import SubmitEntry
from kong.drivers.htcondor import (
    ATTRIBUTES,
    JOB_STATUS,
    HTCondorDriver,
    classad_string,
    ids_constraints,
    merge_ads,
    parse_ads,
    parse_query,
    parse_submit_groups,
    parse_terse,
    scheduler_info,
    tokens_constraints,
)
from kong.drivers.script import JobPaths
from kong.errors import DriverError
from kong.model.job import Job, JobStatus
from kong.remote.local import LocalTransport

# condor_q -json prints nothing when no job matches; condor_history prints "[\n]".
QUERY_OUTPUT = """\
KONG-QUEUE
[
{
  "ClusterId": 21,
  "JobStatus": 1,
  "KongToken": "kong-ab12-1-1",
  "ProcId": 0
}
,
{
  "ClusterId": 21,
  "JobStatus": 2,
  "KongToken": "kong-ab12-2-1",
  "ProcId": 1,
  "RemoteHost": "slot1_3@vm"
}
,
{
  "ClusterId": 21,
  "EnteredCurrentStatus": 1795617923,
  "HoldReason": "Transfer input files failure at access point vm while sending files to \
execution point slot1_1@vm. Details: reading from file /home/kong/t/nope.dat: (errno 2) \
No such file or directory",
  "HoldReasonCode": 13,
  "HoldReasonSubCode": 2,
  "JobStatus": 5,
  "KongToken": "kong-ab12-3-1",
  "ProcId": 2
}
,
{
  "ClusterId": 21,
  "ExitBySignal": false,
  "ExitCode": 0,
  "JobStatus": 4,
  "KongToken": "kong-ab12-4-1",
  "ProcId": 3
}
]
KONG-HISTORY
[
{
  "ClusterId": 21,
  "ExitBySignal": false,
  "ExitCode": 0,
  "JobStatus": 4,
  "KongToken": "kong-ab12-4-1",
  "LastRemoteHost": "slot1_2@vm",
  "ProcId": 3
}
,
{
  "ClusterId": 21,
  "ExitBySignal": false,
  "ExitCode": 3,
  "JobStatus": 4,
  "KongToken": "kong-ab12-5-1",
  "ProcId": 4
}
]
KONG-QUEUE
KONG-HISTORY
[
]
KONG-END
"""


def test_parse_terse_expands_ranges() -> None:
    assert parse_terse("8.0 - 8.2\n") == ["8.0", "8.1", "8.2"]
    assert parse_terse("8.0 - 8.0") == ["8.0"]
    # one line per cluster when a description makes several
    assert parse_terse("3.0 - 3.1 4.0 - 4.0") == ["3.0", "3.1", "4.0"]
    assert parse_terse("") == []
    with pytest.raises(DriverError):
        parse_terse("8.0 - 9.3")


def test_parse_ads_empty_and_bad() -> None:
    assert parse_ads("") == []
    assert parse_ads("[\n]\n") == []
    with pytest.raises(DriverError, match="JSON"):
        parse_ads("[ {")
    with pytest.raises(DriverError, match="list of ads"):
        parse_ads('{"ClusterId": 1}')


def test_parse_query_sections() -> None:
    queue, history = parse_query(QUERY_OUTPUT)
    assert [ad["ProcId"] for ad in queue] == [0, 1, 2, 3]
    assert [ad["ProcId"] for ad in history] == [3, 4]


def test_parse_query_cut_short_is_an_error() -> None:
    with pytest.raises(DriverError, match="cut short"):
        parse_query(QUERY_OUTPUT.replace("KONG-END\n", ""))


def test_history_wins_over_queue() -> None:
    queue, history = parse_query(QUERY_OUTPUT)
    ads = merge_ads(queue, history)
    assert sorted(ads) == ["21.0", "21.1", "21.2", "21.3", "21.4"]
    assert ads["21.3"]["LastRemoteHost"] == "slot1_2@vm"


def test_status_of_every_ad() -> None:
    queue, history = parse_query(QUERY_OUTPUT)
    infos = {k: scheduler_info(ad) for k, ad in merge_ads(queue, history).items()}
    assert (infos["21.0"].status, infos["21.0"].state) == (JobStatus.SUBMITTED, "Idle")
    assert (infos["21.1"].status, infos["21.1"].state) == (JobStatus.RUNNING, "Running")
    assert infos["21.1"].extra == {"node": "vm"}
    held = infos["21.2"]
    assert (held.status, held.state) == (JobStatus.FAILED, "Held")
    assert held.reason is not None
    assert "nope.dat: (errno 2) No such file or directory" in held.reason
    assert "HoldReasonCode 13" in held.reason
    assert (infos["21.3"].status, infos["21.3"].exit_code) == (JobStatus.COMPLETED, 0)
    assert (infos["21.4"].status, infos["21.4"].exit_code) == (JobStatus.FAILED, 3)


@pytest.mark.parametrize(
    ("code", "status", "state"),
    [
        (1, JobStatus.SUBMITTED, "Idle"),
        (2, JobStatus.RUNNING, "Running"),
        (3, JobStatus.FAILED, "Removed"),
        (4, JobStatus.COMPLETED, "Completed"),
        (5, JobStatus.FAILED, "Held"),
        (6, JobStatus.RUNNING, "TransferringOutput"),
        (7, JobStatus.RUNNING, "Suspended"),
    ],
)
def test_every_job_status(code: int, status: JobStatus, state: str) -> None:
    ad = {"ClusterId": 1, "ProcId": 0, "JobStatus": code, "ExitCode": 0, "ExitBySignal": False}
    info = scheduler_info(ad)
    assert (info.status, info.state) == (status, state)


def test_the_table_covers_htcondors_job_statuses() -> None:
    assert sorted(JOB_STATUS) == [1, 2, 3, 4, 5, 6, 7]
    assert scheduler_info({"JobStatus": 42}).status == JobStatus.UNKNOWN
    assert scheduler_info({}).status == JobStatus.UNKNOWN


def test_exit_by_signal() -> None:
    info = scheduler_info({"JobStatus": 4, "ExitBySignal": True, "ExitSignal": 9})
    assert (info.status, info.exit_code) == (JobStatus.FAILED, 137)
    assert info.reason == "killed by signal 9"


def test_completed_without_exit_code_is_failed() -> None:
    info = scheduler_info({"JobStatus": 4, "ExitBySignal": False})
    assert info.status == JobStatus.FAILED


def test_removed_after_hold_keeps_the_hold_reason() -> None:
    # condor_history of a held job removed with condor_rm (HTCondor 23.9)
    ad = parse_ads("""[
{
  "ClusterId": 10,
  "ExitBySignal": true,
  "JobStatus": 3,
  "KongToken": "tok-wall",
  "LastHoldReason": "The job exceeded allowed execute duration of 00:02",
  "ProcId": 0,
  "RemoveReason": "via condor_rm (by user kong)"
}
]""")[0]
    info = scheduler_info(ad)
    assert (info.status, info.state, info.exit_code) == (JobStatus.FAILED, "Removed", None)
    assert info.reason is not None
    assert "exceeded allowed execute duration" in info.reason
    assert "via condor_rm" in info.reason


def test_ids_constraints_use_ranges() -> None:
    ids = [f"21.{p}" for p in range(100)] + ["22.0", "22.2", "22.3"]
    assert ids_constraints(ids) == [(
        "(ClusterId == 21 && ProcId >= 0 && ProcId <= 99) || (ClusterId == 22 && ProcId == 0)"
        " || (ClusterId == 22 && ProcId >= 2 && ProcId <= 3)",
        103,
    )]


def test_ids_constraints_split_long_ones() -> None:
    ids = [f"{c}.0" for c in range(0, 2000, 2)]
    chunks = ids_constraints(ids, limit=1000)
    assert len(chunks) > 1
    assert all(len(text) <= 1000 for text, _ in chunks)
    assert sum(n for _, n in chunks) == 1000
    with pytest.raises(DriverError, match="not an HTCondor job id"):
        ids_constraints(["12"])


def test_tokens_constraints() -> None:
    assert tokens_constraints(["kong-a-1-1", "kong-a-2-1"]) == [
        ('member(KongToken, {"kong-a-1-1", "kong-a-2-1"})', 2)
    ]
    chunks = tokens_constraints([f"kong-abcdef-{i}-1" for i in range(500)], limit=2000)
    assert all(len(text) <= 2000 for text, _ in chunks)
    assert sum(n for _, n in chunks) == 500


def test_classad_string_escapes() -> None:
    assert classad_string('a"b\\c') == '"a\\"b\\\\c"'


def test_submit_groups() -> None:
    output = (
        "KONG-GROUP\t000001\t0\t31.0 - 31.99 \t\n"
        "KONG-GROUP\t000002\t1\t\tERROR: Parse error in expression:  requirements = (( \n"
        "noise\n"
    )
    assert parse_submit_groups(output) == {
        1: (0, "31.0 - 31.99", ""),
        2: (1, "", "ERROR: Parse error in expression:  requirements = (("),
    }


def test_attributes_cover_the_status_fields() -> None:
    for name in ("ClusterId", "ProcId", "JobStatus", "HoldReason", "ExitCode",
                 "ExitBySignal", "ExitSignal", "KongToken", "LastHoldReason"):
        assert name in ATTRIBUTES


# -- the submit description ---------------------------------------------------------------


def condor_driver(**options: Any) -> HTCondorDriver:
    config = Config(data={"profiles": {"c": {"driver": "htcondor", **options}}})
    return HTCondorDriver(config, config.profile("c"), "abc", transport=LocalTransport())


def entry(driver: HTCondorDriver, cores: int = 1, memory: int | None = None,
          **job_options: Any) -> SubmitEntry:
    job = Job(job_id=7, command="true", cores=cores, memory=memory, data={})
    paths = JobPaths.under("/home/u/.kong/abc", 7)
    return SubmitEntry(job, paths, {**driver.profile.options, **job_options}, "kong-abc-7-1")


def test_description_defaults() -> None:
    driver = condor_driver()
    assert driver.description(entry(driver)) == [
        "universe = vanilla",
        "executable = $(kong_dir)/job.sh",
        "output = $(kong_dir)/log/stdout.txt",
        "error = $(kong_dir)/log/stderr.txt",
        "initialdir = $(kong_dir)",
        "getenv = false",
        "notification = never",
        "batch_name = kong",
        "job_max_vacate_time = 5",
        "should_transfer_files = NO",
        "request_cpus = 1",
        '+KongToken = "$(kong_token)"',
    ]


def test_description_options_and_job_overrides() -> None:
    driver = condor_driver(universe="vanilla", request_memory="2 GB", accounting_group="grp",
                           requirements='OpSys == "LINUX"', extra=["+Project = \"x\""])
    lines = driver.description(entry(
        driver, cores=4, memory=512, request_disk="1 GB", should_transfer_files="yes",
        walltime="1:30:00",
    ))
    assert "request_cpus = 4" in lines
    assert "request_memory = 2 GB" in lines  # the option wins over the job's memory
    assert "request_disk = 1 GB" in lines
    assert "accounting_group = grp" in lines
    assert 'requirements = OpSys == "LINUX"' in lines
    assert "should_transfer_files = YES" in lines
    assert "when_to_transfer_output = ON_EXIT" in lines
    assert ("periodic_hold = JobStatus == 2 && "
            "time() - JobCurrentStartExecutingDate > 5400") in lines
    # extra lines come after kong's (so they may override them), the token last
    assert lines[-2:] == ['+Project = "x"', '+KongToken = "$(kong_token)"']
    plain = condor_driver()
    assert "request_memory = 512" in plain.description(entry(plain, memory=512))
    # the hold is kept to the second written (HTCondor's periodic expressions are)
    assert ("periodic_hold = JobStatus == 2 && time() - JobCurrentStartExecutingDate > 75"
            in plain.description(entry(plain, walltime="1:15")))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"requirements": "a\nqueue"}, "one line"),
        ({"extra": ["queue 10"]}, "queue statement"),
        ({"extra": ["a = 1\nb = 2"]}, "one line"),
        ({"should_transfer_files": "maybe"}, "expected one of"),
        ({"request_cpus": 0}, "positive"),
        ({"universe": 5}, "expected str"),
        ({"nodes": 2}, "unknown option"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    driver = condor_driver()
    with pytest.raises(DriverError, match=message):
        driver.check_options(options)


def test_bad_profile_options_are_refused_when_the_driver_starts() -> None:
    with pytest.raises(DriverError, match="should_transfer_files"):
        condor_driver(should_transfer_files="sometimes")


# -- condor_rm of many ids: its line per id ----------------------------------------------


def test_condor_rm_answers_per_id() -> None:
    driver = condor_driver()
    ids = ["2.0", "3.0", "4.0", "999999.0", "5.0"]
    assert driver.kill_many_argv(ids) == ["condor_rm", *ids]
    # what condor_rm (HTCondor of the test pool) printed, joined on one line: 4.0 had
    # completed, 2.0 ran, 3.0 was held; exit 0. 5.0: no line, no answer.
    said = driver.kill_many_answers(ids, 0, " Job 4.0 not found Job 999999.0 not found "
                                    "Job 2.0 marked for removal Job 3.0 marked for removal")
    outcomes = {i: driver.classify_kill(*a).outcome.value for i, a in said.items()}
    assert outcomes == {"2.0": "killed", "3.0": "killed", "4.0": "unknown",
                        "999999.0": "unknown"}
