"""The LSF driver's parsers and script header, without a cluster.

Samples follow IBM Spectrum LSF 10.1's documentation, never the simulator's output
(deploy/lsf-sim/README.md lists the pages). Where a page gives the text verbatim
it is quoted as is (bsub's and bkill's messages, bjobs' "is not found", the bjobs
-UF history lines); the bjobs -json documents are composed from the documented
structure (``COMMAND``/``JOBS``/``RECORDS``, every value a string, ``-o`` field names
upper-cased as keys, empty strings for empty fields, ``/`` escaped as ``\\/``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kong.config import Config
from kong.drivers.lsf import LSFDriver
from kong.drivers.lsf_parsers import (
    STATES,
    lsf_time,
    parse_bhist,
    parse_bjobs_json,
    parse_bjobs_plain,
    parse_bsub,
    state_info,
)
from kong.errors import DriverError, KongError
from kong.model.job import JobStatus
from kong.state import State
from tests.fixtures_state import make_state

# -- bsub ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output, job_id",
    [
        ("Job <1234> is submitted to default queue <normal>.", "1234"),
        ("Job <22005> is submitted to queue <short-dmg>.", "22005"),
        # bsub prints this while mbatchd is busy, then submits
        (
            "Cannot connect to LSF. Please wait ... Job <7> is submitted to queue <night>.",
            "7",
        ),
    ],
)
def test_parse_bsub(output: str, job_id: str) -> None:
    assert parse_bsub(output) == job_id


@pytest.mark.parametrize(
    "output",
    [
        "normal2: No such queue. Job not submitted.",
        "Bad resource requirement syntax. Job not submitted.",
        "",
    ],
)
def test_parse_bsub_refused(output: str) -> None:
    with pytest.raises(DriverError, match="bsub did not submit"):
        parse_bsub(output)


# -- bjobs -json ---------------------------------------------------------------------

BJOBS_JSON = r"""{
  "COMMAND":"bjobs",
  "JOBS":5,
  "RECORDS":[
    {
      "JOBID":"22005",
      "STAT":"DONE",
      "EXIT_CODE":"",
      "EXIT_REASON":"",
      "SUBMIT_TIME":"Dec 28 19:56",
      "START_TIME":"Dec 28 19:56",
      "FINISH_TIME":"Dec 28 19:56 L",
      "EXEC_HOST":"hostB:hostB",
      "JOB_NAME":"kong-abc-1-1"
    },
    {
      "JOBID":"22006",
      "STAT":"EXIT",
      "EXIT_CODE":"3",
      "EXIT_REASON":"",
      "SUBMIT_TIME":"Dec 28 19:56",
      "START_TIME":"Dec 28 19:57",
      "FINISH_TIME":"Dec 28 19:58 L",
      "EXEC_HOST":"hostC",
      "JOB_NAME":"kong-abc-2-1"
    },
    {
      "JOBID":"22007",
      "STAT":"EXIT",
      "EXIT_CODE":"",
      "EXIT_REASON":"TERM_OWNER: job killed by owner",
      "SUBMIT_TIME":"Dec 28 19:56",
      "START_TIME":"",
      "FINISH_TIME":"Dec 28 20:01",
      "EXEC_HOST":"",
      "JOB_NAME":"kong-abc-3-1"
    },
    {
      "JOBID":"22008",
      "STAT":"RUN",
      "EXIT_CODE":"",
      "EXIT_REASON":"",
      "SUBMIT_TIME":"Dec 28 19:56",
      "START_TIME":"Dec 28 19:59",
      "FINISH_TIME":"",
      "EXEC_HOST":"hostA",
      "JOB_NAME":"kong-abc-4-1"
    },
    {
      "JOBID":"22009",
      "STAT":"PEND",
      "EXIT_CODE":"",
      "EXIT_REASON":"",
      "SUBMIT_TIME":"Dec 28 19:56",
      "START_TIME":"",
      "FINISH_TIME":"",
      "EXEC_HOST":"",
      "JOB_NAME":"my \/odd name"
    },
    {
      "JOBID":"123",
      "ERROR":"Job <123> is not found"
    }
  ]
}"""


def test_parse_bjobs_json() -> None:
    infos = parse_bjobs_json(BJOBS_JSON)
    assert set(infos) == {"22005", "22006", "22007", "22008", "22009"}  # not 123
    done = infos["22005"]
    assert (done.status, done.state, done.exit_code) == (JobStatus.COMPLETED, "DONE", 0)
    assert done.extra["node"] == "hostB"
    year = infos["22005"].extra["submit_time"][:4]
    assert done.extra["end_time"] == f"{year}-12-28T19:56"
    assert infos["22008"].extra["start_time"] == f"{year}-12-28T19:59"
    assert infos["22008"].extra["end_time"] is None
    assert done.extra["lsf_job_name"] == "kong-abc-1-1"  # the driver checks it is its own
    assert infos["22009"].extra["lsf_job_name"] == "my /odd name"
    failed = infos["22006"]
    assert (failed.status, failed.exit_code, failed.reason) == (JobStatus.FAILED, 3, None)
    killed = infos["22007"]
    assert killed.status == JobStatus.FAILED
    assert killed.exit_code is None
    assert killed.reason == "TERM_OWNER: job killed by owner"
    assert infos["22008"].status == JobStatus.RUNNING
    assert infos["22008"].exit_code is None
    assert infos["22009"].status == JobStatus.SUBMITTED
    assert "node" not in infos["22009"].extra


def test_parse_bjobs_json_several_documents_and_noise() -> None:
    # xargs may run bjobs twice for a long id list; LSF may print a wait notice first
    one = '{"COMMAND":"bjobs","JOBS":1,"RECORDS":[{"JOBID":"1","STAT":"RUN"}]}'
    two = '{"COMMAND":"bjobs","JOBS":1,"RECORDS":[{"JOBID":"2","STAT":"DONE"}]}'
    infos = parse_bjobs_json(f"Cannot connect to LSF. Please wait ...\n{one}\n{two}\n")
    assert infos["1"].status == JobStatus.RUNNING
    assert infos["2"].status == JobStatus.COMPLETED


def test_array_elements_are_known_by_their_index() -> None:
    # bjobs lists each element of job array 300 under JOBID 300, its index in the
    # jobindex field and its name as "<array name>[<index>]"; a plain job's index is 0
    doc = ('{"COMMAND":"bjobs","JOBS":3,"RECORDS":['
           '{"JOBID":"300","JOBINDEX":"1","STAT":"DONE","JOB_NAME":"arr[1]"},'
           '{"JOBID":"300","JOBINDEX":"2","STAT":"RUN","JOB_NAME":"arr[2]"},'
           '{"JOBID":"301","JOBINDEX":"0","STAT":"PEND","JOB_NAME":"plain"},'
           '{"JOBID":"300[9]","ERROR":"Job <300[9]> is not found"}]}')
    infos = parse_bjobs_json(doc)
    assert set(infos) == {"300[1]", "300[2]", "301"}
    assert infos["300[1]"].status == JobStatus.COMPLETED
    assert infos["300[2]"].extra["lsf_job_name"] == "arr[2]"
    history = ("Job <300[3]>, Job Name <arr[3]>, User <lsfuser>, Project <default>, "
               "Command <sh>\n"
               "Tue May  6 15:45:12: Exited with exit code 3. The CPU time used is 0.1 "
               "seconds;\n")
    assert parse_bhist(history)["300[3]"].exit_code == 3


def test_bkill_of_elements_answers_per_element(lsf_state: State) -> None:
    driver = lsf_state.driver("lsf")
    assert isinstance(driver, LSFDriver)
    ids = ["300[1]", "300[4]", "300[5]", "301", "302"]
    assert driver.kill_many_argv(ids) == ["bkill", *ids]
    # bkill's lines, joined on one by the kill loop; 302: no line, so no answer (it
    # gets a bkill of its own)
    said = driver.kill_many_answers(ids, 255, "Job <300[1]> is being terminated Job "
                                    "<300[4]>: Job has already finished Job <300[5]>: No "
                                    "matching job found Job <301> is being terminated")
    outcomes = {i: driver.classify_kill(*answer).outcome.value for i, answer in said.items()}
    assert outcomes == {"300[1]": "killed", "300[4]": "finished", "300[5]": "unknown",
                        "301": "killed"}
    assert driver.split_element_id("300[4]") == ("300", 4)
    assert driver.split_element_id("300") is None


def test_parse_bjobs_json_empty() -> None:
    assert parse_bjobs_json('{\n  "COMMAND":"bjobs",\n  "JOBS":0,\n  "RECORDS":[\n  ]\n}') == {}
    assert parse_bjobs_json("") == {}


@pytest.mark.parametrize(
    "text, iso",
    [
        ("Dec 28 19:56", "2025-12-28T19:56"),  # the year bjobs leaves out: the last one
        ("Jan  7 09:59 L", "2026-01-07T09:59"),
        ("Jan 7 09:59:12 E", "2026-01-07T09:59:12"),
        ("Oct 22 09:22 2024", "2024-10-22T09:22"),
        ("", None),
        ("-", None),
    ],
)
def test_lsf_time(text: str, iso: str | None) -> None:
    assert lsf_time(text, now=datetime(2026, 1, 10, 12, 0)) == iso


# -- bjobs -noheader -o "... delimiter='^'" ------------------------------------------


def test_parse_bjobs_plain() -> None:
    # bjobs -o prints "-" for an empty field; job_name is last and may hold the delimiter
    text = (
        "111^0^RUN^-^-^Oct 22 09:22^Oct 22 09:23^-^hostB^1.0 second(s)^-^60 second(s)^myjob\n"
        "112^0^EXIT^1^-^Oct 22 09:22^Oct 22 09:23^Oct 22 09:30 L^hostB:hostB^-^-^-^a^b\n"
        "113^0^DONE^-^-^Oct 22 09:22^Oct 22 09:23^Oct 22 09:24^hostC^12.5 second(s)^"
        "200 Mbytes^60 second(s)^done\n"
        # an element of job array 114: its index in the JOBINDEX field, its name LSF's
        "114^7^PEND^-^-^Oct 22 09:22^-^-^-^-^-^-^arr[7]\n"
        "Job <123> is not found\n"
    )
    infos = parse_bjobs_plain(text)
    assert set(infos) == {"111", "112", "113", "114[7]"}
    assert infos["114[7]"].status == JobStatus.SUBMITTED
    assert infos["114[7]"].extra["lsf_job_name"] == "arr[7]"
    assert infos["111"].status == JobStatus.RUNNING
    assert infos["111"].extra["node"] == "hostB"
    assert "usage" not in infos["111"].extra  # a running job's figures are not final
    assert (infos["112"].status, infos["112"].exit_code) == (JobStatus.FAILED, 1)
    assert infos["112"].extra["usage"] == {"source": "bjobs"}  # no figures: n/a, not 0
    assert (infos["113"].status, infos["113"].exit_code) == (JobStatus.COMPLETED, 0)
    assert infos["113"].extra["usage"] == {"source": "bjobs", "cpu_time": 12.5,
                                           "elapsed": 60.0, "max_rss_mb": 200.0}


# -- every LSF state ----------------------------------------------------------------


@pytest.mark.parametrize(
    "stat, status",
    [
        ("PEND", JobStatus.SUBMITTED),
        ("PROV", JobStatus.SUBMITTED),
        ("PSUSP", JobStatus.SUBMITTED),
        ("WAIT", JobStatus.SUBMITTED),
        ("RUN", JobStatus.RUNNING),
        ("USUSP", JobStatus.RUNNING),
        ("SSUSP", JobStatus.RUNNING),
        ("DONE", JobStatus.COMPLETED),
        ("EXIT", JobStatus.FAILED),
        ("UNKWN", JobStatus.UNKNOWN),
        ("ZOMBI", JobStatus.UNKNOWN),
    ],
)
def test_every_state(stat: str, status: JobStatus) -> None:
    assert STATES[stat] == status
    assert state_info(stat).status == status
    assert state_info(stat).state == stat


def test_unknown_state_word_is_unknown_never_completed() -> None:
    assert state_info("PDONE").status == JobStatus.UNKNOWN
    assert state_info("").status == JobStatus.UNKNOWN


# -- bhist -l ------------------------------------------------------------------------

# Event lines as IBM documents them for bhist -l (and bjobs -l/-UF), folded at 80
# columns with a 21-column indent as bhist prints them.
BHIST_L = """\
Job <1>, User <lsfuser>, Project <default>, Command <./pi_css5 10000000>
Tue May  6 15:45:10: Submitted from host <hostA>, to Queue <normal>, CWD </home/lsf
                     user>;
Tue May  6 15:45:11: Dispatched 1 Task(s) on Host(s) <hostB>, Allocated 1 Slot(s)
                      on Host(s) <hostB>, Effective RES_REQ <select[type == local]
                      order[r15s:pg] >;
Tue May  6 15:45:11: Starting (Pid 8920);
Tue May  6 15:46:40: Done successfully. The CPU time used is 88.2 seconds;
Tue May  6 15:46:40: Post job process done successfully;

Summary of time in seconds spent in various states by  Tue May  6 15:46:40
  PEND     PSUSP    RUN      USUSP    SSUSP    UNKWN    TOTAL
  1        0        89       0        0        0        90
------------------------------------------------------------------------------

Job <2>, User <lsfuser>, Project <default>, Command <exit 3>
Tue May  6 15:45:10: Submitted from host <hostA>, to Queue <normal>, CWD </home/lsf
                     user>;
Tue May  6 15:45:11: Starting (Pid 8921);
Tue May  6 15:45:12: Exited with exit code 3. The CPU time used is 0.1 seconds;
Tue May  6 15:45:12: Completed <exit>;

Summary of time in seconds spent in various states by  Tue May  6 15:45:12
  PEND     PSUSP    RUN      USUSP    SSUSP    UNKWN    TOTAL
  1        0        1        0        0        0        2
------------------------------------------------------------------------------

Job <3>, User <lsfuser>, Project <default>, Command <sleep 1000>
Tue May  6 15:45:10: Submitted from host <hostA>, to Queue <normal>, CWD </home/lsf
                     user>;
Tue May  6 15:45:20: Signal <KILL> requested by user or administrator <lsfuser>;
Tue May  6 15:45:20: Exited; job has been forced to exit with exit code 2. The CPU
                      time used is 0.0 seconds;
Tue May  6 15:45:20: Completed <exit>; TERM_OWNER: job killed by owner.
------------------------------------------------------------------------------

Job <4>, User <lsfuser>, Project <default>, Command <sleep 1000>
Tue May  6 15:45:10: Submitted from host <hostA>, CWD </home/lsfuser>;
Tue May  6 15:45:11: Started on <hostB>, Execution Home </home/lsfuser>, Execution
                      CWD </home/lsfuser>;
"""


def test_parse_bhist_long() -> None:
    infos = parse_bhist(BHIST_L + "Job <5>: No matching job found\n")
    assert (infos["1"].status, infos["1"].exit_code) == (JobStatus.COMPLETED, 0)
    assert (infos["2"].status, infos["2"].exit_code) == (JobStatus.FAILED, 3)
    assert infos["3"].status == JobStatus.FAILED
    assert infos["3"].exit_code == 2
    assert infos["3"].reason == "TERM_OWNER: job killed by owner"
    # no end in the history: not trusted either way (UNKNOWN unless an exit_code file)
    assert "4" not in infos
    assert "5" not in infos
    assert all(i.extra["lsf_source"] == "bhist" for i in infos.values())


def test_parse_bhist_nothing() -> None:
    assert parse_bhist("No matching job found\n") == {}


# -- the #BSUB header ----------------------------------------------------------------


@pytest.fixture
def lsf_state(kong_home: Path) -> State:
    config = Config(data={
        "default_profile": "lsf",
        "profiles": {"lsf": {"driver": "lsf", "queue": "normal", "project": "proj-1",
                             "walltime": "1:30:00", "memory": 2000,
                             "extra": ["-app big", "#BSUB -x"]}},
    })
    return make_state(config)


def test_header(lsf_state: State) -> None:
    job = lsf_state.create_job(command="echo hi", cores=4)
    driver = lsf_state.driver("lsf")
    assert isinstance(driver, LSFDriver)
    lines = driver.header_lines(job, driver.job_options(job), "kong-x-1-1")
    paths = driver.job_paths(job)
    assert lines == [
        "#BSUB -J kong-x-1-1",
        f"#BSUB -o {paths.log_dir}/lsf.txt",
        "#BSUB -n 4",
        '#BSUB -R "span[hosts=1]"',
        "#BSUB -q normal",
        "#BSUB -P proj-1",
        "#BSUB -W 1:30",
        "#BSUB -M 2000MB",
        '#BSUB -R "rusage[mem=2000MB]"',
        "#BSUB -app big",
        "#BSUB -x",
        f"exec >>{paths.stdout} 2>>{paths.stderr}",
    ]


def test_header_per_job_overrides(lsf_state: State) -> None:
    job = lsf_state.create_job(command="echo hi", memory=512, queue="short", walltime=45,
                               resources="select[type==X86_64] order[-slots]", extra=[])
    driver = lsf_state.driver("lsf")
    assert isinstance(driver, LSFDriver)
    lines = driver.header_lines(job, driver.job_options(job), "t")
    assert "#BSUB -q short" in lines
    assert "#BSUB -W 0:45" in lines
    assert "#BSUB -M 512MB" in lines
    assert '#BSUB -R "select[type==X86_64] order[-slots]"' in lines
    assert "#BSUB -n 1" in lines
    assert not any("span" in line for line in lines)
    job = lsf_state.create_job(command="echo hi", cores=3)
    assert "#BSUB -n 3" in driver.header_lines(job, driver.job_options(job), "t")
    assert not any("-app" in line for line in lines)
    # bsub reads #BSUB lines only from a script on its stdin
    argv = driver.submit_argv(job, "/x/job.sh", "t")
    assert argv == ["sh", "-c", 'exec bsub < "$1"', "sh", "/x/job.sh"]


def test_array_header(lsf_state: State) -> None:
    job = lsf_state.create_job(command="echo hi", cores=2)
    driver = lsf_state.driver("lsf")
    assert isinstance(driver, LSFDriver)
    options = driver.job_options(job)
    lines = driver.array_header(job, options, "kong-x-1-1-array", 6, "/r/.arrays/a")
    # LSF's indices start at 1; its job report per element under the array's dir
    assert lines[:2] == ['#BSUB -J "kong-x-1-1-array[1-6]"', "#BSUB -o /r/.arrays/a/%I.txt"]
    own = driver.header_lines(job, options, "t")
    assert lines[2:] == own[2:-1]  # the job's directives, not its name, files or exec


@pytest.mark.parametrize(
    "options, message",
    [
        ({"queue": "a\nb"}, "no newlines"),
        ({"extra": ["-x\n-y"]}, "one directive per line"),
        ({"walltime": "soon"}, "walltime"),
        ({"memory": 0}, "memory"),
        ({"cores": 0}, "cores"),
        ({"bogus": 1}, "unknown option"),
    ],
)
def test_bad_options(lsf_state: State, options: dict[str, Any], message: str) -> None:
    with pytest.raises(KongError, match=message):  # DriverError or ArgumentValueError
        lsf_state.create_job(command="true", **options)
