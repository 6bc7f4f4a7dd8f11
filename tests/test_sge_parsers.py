"""The Grid Engine driver's pure parts: directive lines and the parsers of qsub,
qstat -xml and qacct output.

Samples under tests/data/sge/ were captured from the container of deploy/sge/
(Son of Grid Engine 8.1.9) as the ``kong`` user over ssh; the inline samples
follow the formats of qsub(1), qstat(1) and qacct(1) / accounting(5).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kong.config import Config
from kong.drivers.sge import (
    SGEDriver,
    directive_lines,
    h_rt,
    memory_mb,
    parse_qacct,
    parse_qstat_xml,
    parse_qsub,
    parse_query_output,
    qacct_info,
    qacct_time,
    qstat_status,
)
from kong.errors import DriverError
from kong.model.job import JobStatus
from kong.remote.local import LocalTransport

DATA = Path(__file__).parent / "data" / "sge"


def sample(name: str) -> str:
    return (DATA / name).read_text()


# -- qsub -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "batch_id"),
    [
        ("12\n", "12"),
        ("12.1-10:1\n", "12"),  # an array job (qsub -terse -t 1-10)
        ("warning: kong's job is not allowed to run in any queue\n77\n", "77"),
    ],
)
def test_parse_qsub(output: str, batch_id: str) -> None:
    assert parse_qsub(output) == batch_id


def test_parse_qsub_without_an_id_is_an_error() -> None:
    with pytest.raises(DriverError, match="qsub printed no job id"):
        parse_qsub('Unable to run job: unknown queue "nope".\nExiting.\n')


# -- qstat -xml -----------------------------------------------------------------------


def test_qstat_xml_from_the_container() -> None:
    jobs = parse_qstat_xml(sample("qstat-xml.xml"))
    assert set(jobs) == {"9", "10", "11", "12"}
    name, running = jobs["9"]
    assert name == "kong-abc-9-1"
    assert running.status == JobStatus.RUNNING and running.state == "r"
    assert running.extra["node"] == "vm"
    assert running.extra["start_time"] == "2026-12-01T21:28:50"
    held = jobs["11"][1]
    assert held.status == JobStatus.SUBMITTED and held.state == "hqw"
    assert held.extra["node"] is None and held.extra["submit_time"]
    error = jobs["12"][1]
    # Eqw: its output file could not be opened; it will not run until cleared.
    assert error.status == JobStatus.FAILED and error.state == "Eqw"
    assert error.reason and "qstat -j 12" in error.reason


def test_qstat_xml_of_no_jobs() -> None:
    assert parse_qstat_xml(sample("qstat-xml-empty.xml")) == {}
    assert parse_qstat_xml("<?xml version='1.0'?>\n<job_info>\n</job_info>\n") == {}


def test_qstat_xml_garbage_is_an_error() -> None:
    with pytest.raises(DriverError, match="unreadable qstat -xml"):
        parse_qstat_xml("error: commlib error: got select error (Connection refused)")


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("qw", JobStatus.SUBMITTED),
        ("hqw", JobStatus.SUBMITTED),
        ("Rq", JobStatus.SUBMITTED),  # restarted (rescheduled), waiting again
        ("r", JobStatus.RUNNING),
        ("t", JobStatus.RUNNING),
        ("Rr", JobStatus.RUNNING),
        ("s", JobStatus.RUNNING),
        ("S", JobStatus.RUNNING),
        ("T", JobStatus.RUNNING),
        ("dr", JobStatus.RUNNING),  # qdel'ed, still running until its signal lands
        ("dqw", JobStatus.SUBMITTED),
        ("Eqw", JobStatus.FAILED),
        ("", JobStatus.UNKNOWN),
    ],
)
def test_qstat_state_letters(state: str, status: JobStatus) -> None:
    assert qstat_status(state) == status


# -- qacct -j ---------------------------------------------------------------------------


def test_qacct_records_from_the_container() -> None:
    records = {r["jobnumber"]: r for r in parse_qacct(sample("qacct-j-pattern.txt"))}
    assert set(records) == {"2", "3", "5", "6", "7"}
    assert {r["jobname"] for r in records.values()} == {f"kong-abc-{i}-1" for i in range(1, 7)
                                                         if i != 3}

    ok = qacct_info(records["5"])
    assert (ok.status, ok.state, ok.exit_code) == (JobStatus.COMPLETED, "COMPLETED", 0)
    usage = ok.extra.pop("usage")
    assert ok.extra == {"node": "vm", "submit_time": "2026-12-01T21:28:22",
                        "start_time": "2026-12-01T21:28:22", "end_time": "2026-12-01T21:28:22"}
    assert ok.end_reason == "EXIT(0)"
    # what qacct recorded, and "0.000B" of a job too short to sample is no figure
    assert usage == {"source": "qacct", "elapsed": 0.0, "cpu_time": 0.01, "cpus": 1,
                     "max_rss_mb": pytest.approx(4.402 / 1024)}

    # h_rt exceeded: Grid Engine killed it (failed 37), the job's status is 137.
    limit = qacct_info(records["6"])
    assert (limit.status, limit.state, limit.exit_code) == (JobStatus.FAILED, "FAILED", 137)
    assert limit.reason and "h_rt" in limit.reason
    assert limit.end_reason == "TIMEOUT"

    # qdel of a running job: failed 100, killed.
    deleted = qacct_info(records["2"])
    assert (deleted.status, deleted.exit_code) == (JobStatus.FAILED, 137)
    assert deleted.reason == "failed 100 : assumedly after job"
    assert deleted.end_reason == "SIGNAL(9)"  # kong's own kills read CANCELLED (lifecycle)

    # Never started (its output file could not be opened): no start or end time.
    never = qacct_info(records["7"])
    assert never.status == JobStatus.FAILED and never.extra["start_time"] is None
    assert never.reason and "opening input/output file" in never.reason


def test_qacct_exit_code_of_the_script() -> None:
    (record,) = parse_qacct(sample("qacct-j-exit3.txt"))
    info = qacct_info(record)
    assert (info.status, info.state, info.exit_code) == (JobStatus.FAILED, "EXITED", 3)
    assert info.reason is None


def test_qacct_documented_record() -> None:
    """A record as qacct(1) prints it, with the millisecond times of some 8.1 builds."""
    text = (
        "==============================================================\n"
        "qname        long.q\n"
        "hostname     node17.example.org\n"
        "owner        alice\n"
        "jobname      kong-x-1-2\n"
        "jobnumber    4711\n"
        "qsub_time    03/04/2026 10:00:00.123\n"
        "start_time   03/04/2026 10:00:05.000\n"
        "end_time     03/04/2026 11:00:05.000\n"
        "failed       0\n"
        "exit_status  0\n"
    )
    (record,) = parse_qacct(text)
    info = qacct_info(record)
    assert info.status == JobStatus.COMPLETED and info.extra["node"] == "node17.example.org"
    assert info.extra["start_time"] == "2026-03-04T10:00:05"


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("Tue Dec  1 21:28:22 2026", "2026-12-01T21:28:22"),
        ("-/-", None),
        ("", None),
        ("sometime", "sometime"),
    ],
)
def test_qacct_time(text: str, iso: str | None) -> None:
    assert qacct_time(text) == iso


# -- the query script's answer ----------------------------------------------------------


def test_query_answer_live_and_accounting() -> None:
    text = ("QSTAT\n" + sample("qstat-xml.xml") + "ENDQSTAT\nQACCT\n"
            + sample("qacct-j-exit3.txt") + "ENDQACCT\nEND\n")
    answer = parse_query_output(text)
    assert set(answer.live) == {"9", "10", "11", "12"}
    assert answer.accounting is not None and [r["jobnumber"] for r in answer.accounting] == ["8"]


def test_query_answer_with_zombies() -> None:
    """The token look-up also reads ``qstat -s z``: jobs that ended lately, whose
    accounting record may not be written yet."""
    answer = parse_query_output("QSTAT\n<job_info/>\nENDQSTAT\nZOMBIE\n"
                                + sample("qstat-s-z-xml.xml")
                                + "ENDZOMBIE\nQACCT\nENDQACCT\nEND\n")
    assert answer.live == {} and answer.accounting == []
    assert {batch_id: name for batch_id, (name, _) in answer.ended.items()} == {
        "1": "kong-ready", "2": "kong-z-1-1"}


def test_query_answer_without_accounting() -> None:
    answer = parse_query_output("QSTAT\n<job_info/>\nENDQSTAT\n"
                                "NOACCT|error: can't open accounting file\nEND\n")
    assert answer.live == {} and answer.accounting is None
    assert answer.no_accounting == "error: can't open accounting file"


def test_query_answer_cut_short_or_failed() -> None:
    with pytest.raises(DriverError, match="cut short"):
        parse_query_output("QSTAT\n<job_info>\n")
    with pytest.raises(DriverError, match="qstat: error: commlib"):
        parse_query_output("ERR|qstat: error: commlib error: connection refused\nEND\n")


# -- directives -------------------------------------------------------------------------


def lines(**kw: object) -> list[str]:
    args: dict[str, object] = dict(
        token="kong-abc-1-1", stdout="/h/.kong/x/1/log/stdout.txt",
        stderr="/h/.kong/x/1/log/stderr.txt", cores=1, pe=None, queue=None, project=None,
        walltime=None, memory=None, memory_resources=["h_vmem"], extra=(),
    )
    args.update(kw)
    return directive_lines(**args)  # type: ignore[arg-type]


def test_directives_minimal() -> None:
    assert lines() == [
        "#$ -N kong-abc-1-1",
        "#$ -S /bin/sh",
        "#$ -o /h/.kong/x/1/log/stdout.txt",
        "#$ -e /h/.kong/x/1/log/stderr.txt",
        "#$ -r n",
    ]


def test_directives_all_options() -> None:
    got = lines(cores=4, pe="smp", queue="long.q", project="physics", walltime="1:30:00",
                memory="8G", memory_resources=["h_vmem", "mem_free"],
                extra=["-l gpu=1", "#$ -m n"])
    assert got[5:] == [
        "#$ -pe smp 4",
        "#$ -q long.q",
        "#$ -P physics",
        "#$ -l h_rt=1:30:00",
        "#$ -l h_vmem=2048M,mem_free=2048M",  # per slot: 8 GB over 4 slots
        "#$ -l gpu=1",
        "#$ -m n",
    ]


def test_directives_paths_with_colon_and_space() -> None:
    got = lines(stdout="/data/a:b/out", stderr="/data/my runs/err")
    assert "#$ -o :/data/a:b/out" in got
    assert '#$ -e "/data/my runs/err"' in got


def test_directives_refuse_cores_without_pe() -> None:
    with pytest.raises(DriverError, match="parallel environment"):
        lines(cores=2)


@pytest.mark.parametrize(("walltime", "expected"),
                         [(90, "1:30:00"), ("30:00", "0:30:00"), ("1-00:00:00", "24:00:00"),
                          ("0:10", "0:00:10"), ("1:02:03", "1:02:03")])
def test_h_rt(walltime: str | int, expected: str) -> None:
    assert h_rt(walltime) == expected


@pytest.mark.parametrize(("value", "mb"), [(512, 512), ("512", 512), ("512M", 512),
                                           ("4G", 4096), ("4g", 4096), ("1T", 1048576),
                                           ("1536K", 2)])
def test_memory_mb(value: str | int, mb: int) -> None:
    assert memory_mb(value) == mb


@pytest.mark.parametrize("value", ["4 GB", "lots", "-1", 0, "0M"])
def test_memory_mb_refuses(value: str | int) -> None:
    with pytest.raises(DriverError, match="memory"):
        memory_mb(value)


# -- qdel of many ids: its line per id ---------------------------------------------------


def test_qdel_answers_per_id() -> None:
    config = Config(data={"profiles": {"g": {"driver": "sge"}}})
    driver = SGEDriver(config, config.profile("g"), "abc", transport=LocalTransport())
    ids = ["2", "3", "4", "5", "999999", "6"]
    assert driver.kill_many_argv(ids) == ["qdel", *ids]
    # what qdel (Son of Grid Engine 8.1.9, the test cluster) printed, joined on one
    # line: 2 ran, 3 was held, 4 had ended, 5 was being deleted; exit 1. 6: no line.
    said = driver.kill_many_answers(ids, 1, "kong has registered the job 2 for deletion "
                                    "kong has deleted job 3 denied: job \"4\" does not "
                                    "exist job 5 is already in deletion denied: job "
                                    "\"999999\" does not exist")
    outcomes = {i: driver.classify_kill(*a).outcome.value for i, a in said.items()}
    assert outcomes == {"2": "killed", "3": "killed", "4": "unknown", "5": "killed",
                        "999999": "unknown"}
