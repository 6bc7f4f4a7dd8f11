"""Sweeps: ``kong sweep``, ``kong create-job --from-file``, ``State.sweep`` /
``State.create_jobs``, parameters shown (``ls -x``, ``--json``) and selected
(``ls --where``).

Real SQLite file, real local jobs (their output is what the values must survive),
the real ``kong`` command in subprocesses where stdin or the process matters.
Every refusal must be one ``kong: error:`` line (a KongError from Python) and leave
the database exactly as it was.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kong.cli import Context, run
from kong.errors import ArgumentValueError, DriverError, KongError, NoSuchFolder
from kong.model import JobStatus
from kong.state import YES, State
from kong.sweep import SweepError
from tests.kongcmd import KONG


def kong(*words: str) -> int:
    """One command line on a fresh Context, as a separate ``kong`` call would be."""
    return run(list(words), obj=Context())


def kong_proc(home: Path, *words: str, stdin: str | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KONG_HOME": str(home)}
    env.pop("KONG_CONFIG_DIR", None)
    return subprocess.run([*KONG, *words], env=env, capture_output=True, text=True,
                          input=stdin if stdin is not None else "", timeout=timeout,
                          check=False)


def snapshot(home: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every job and folder row, read through a connection of its own."""
    conn = sqlite3.connect(home / "kong.sqlite")
    try:
        return {table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
                for table in ("folders", "jobs")}
    finally:
        conn.close()


def listing(home: Path, *words: str) -> dict[str, Any]:
    proc = kong_proc(home, "ls", "--json", *words)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def outputs(state: State, jobs: list[Any]) -> list[str]:
    state.submit_job(jobs)
    state.wait(jobs, notify=False, timeout=60, poll_interval=0.05)
    assert [j.status for j in jobs] == [JobStatus.COMPLETED] * len(jobs)
    return [state.tail_log(j).decode() for j in jobs]


# -- kong sweep -------------------------------------------------------------------------


def test_sweep_makes_the_product_and_keeps_each_jobs_values(kong_home: Path) -> None:
    proc = kong_proc(kong_home, "sweep", "python sim.py --x {x} --seed {seed}",
                     "-p", "x=0.1,0.2,0.5", "-p", "seed=1..4")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "created 12 job(s): 1..12\n"
    jobs = listing(kong_home, "-x", "x", "-x", "seed")["jobs"]
    assert [(j["x"], j["seed"]) for j in jobs] == [
        (x, str(s)) for x in ("0.1", "0.2", "0.5") for s in range(1, 5)]
    assert [j["command"] for j in jobs][:2] == ["python sim.py --x 0.1 --seed 1",
                                                "python sim.py --x 0.1 --seed 2"]
    # the table shows the values as columns
    table = kong_proc(kong_home, "ls", "-x", "x", "-x", "seed").stdout.splitlines()
    assert table[0].split()[-3:] == ["seed", "x", "command"]
    assert " 4 0.5 python sim.py --x 0.5 --seed 4" in " ".join(table[-1].split())
    # and info --json has them under data.params
    info = json.loads(kong_proc(kong_home, "info", "--json", "7").stdout)
    assert info[0]["data"]["params"] == {"x": "0.2", "seed": "3"}


def test_where_selects_by_parameter(kong_home: Path) -> None:
    assert kong_proc(kong_home, "sweep", "echo {x} {seed}", "-p", "x=0.1,0.2",
                     "-p", "seed=1..3").returncode == 0
    picked = listing(kong_home, "--where", "x=0.2", "-x", "seed")["jobs"]
    assert [(j["job_id"], j["seed"]) for j in picked] == [(4, "1"), (5, "2"), (6, "3")]
    both = listing(kong_home, "-w", "x=0.1", "-w", "seed=2,3")["jobs"]
    assert [j["job_id"] for j in both] == [2, 3]
    # values compare as text, as typed: 0.20 is not 0.2
    assert listing(kong_home, "--where", "x=0.20")["jobs"] == []
    none = kong_proc(kong_home, "ls", "--where", "x=9")
    assert none.returncode == 0
    assert none.stdout == "no jobs with x=9 in /\n"
    bad = kong_proc(kong_home, "ls", "--where", "x")
    assert bad.returncode == 1
    assert bad.stderr == "kong: error: --where takes KEY=VALUE (or KEY=A,B), got 'x'\n"


def test_zip_pairs_the_values(kong_home: Path) -> None:
    proc = kong_proc(kong_home, "sweep", "run {a} {b}", "-p", "a=1..3", "-p", "b=x,y,z",
                     "--zip", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "1\n2\n3\n"
    jobs = listing(kong_home)["jobs"]
    assert [j["command"] for j in jobs] == ["run 1 x", "run 2 y", "run 3 z"]
    before = snapshot(kong_home)
    uneven = kong_proc(kong_home, "sweep", "run {a} {b}", "-p", "a=1..3", "-p", "b=x,y",
                       "--zip")
    assert uneven.returncode == 1
    assert uneven.stderr == ("kong: error: --zip needs the same number of values for every "
                             "parameter (a has 3, b has 2)\n")
    assert snapshot(kong_home) == before


def test_step_ranges_are_exact_decimals(state: State) -> None:
    jobs = state.sweep("echo {lr}", ["lr=0..1:0.1"])
    assert [j.command for j in jobs] == [f"echo {v}" for v in (
        "0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1")]
    mixed = state.sweep("echo {n}", ["n=1..3,10,-2..-1,2..3:0.5"])
    assert [j.data["params"]["n"] for j in mixed] == [
        "1", "2", "3", "10", "-2", "-1", "2", "2.5", "3"]
    # a step that does not land on STOP stops before it
    assert [j.command for j in state.sweep("e {v}", ["v=0..1:0.3"])] == [
        "e 0", "e 0.3", "e 0.6", "e 0.9"]
    assert [j.command for j in state.sweep("e {v}", ["v=1..10:3"])] == [
        "e 1", "e 4", "e 7", "e 10"]
    # times, paths and names with dots are values, not ranges
    texts = state.sweep("e {t} {d}", ["t=12:30:00,1:00:00", "d=../data,v1..v2"])
    assert [j.command for j in texts] == ["e 12:30:00 ../data", "e 12:30:00 v1..v2",
                                          "e 1:00:00 ../data", "e 1:00:00 v1..v2"]


@pytest.mark.parametrize(("words", "message"), [
    (["echo {y}", "-p", "x=1,2"],
     "unknown placeholder {y} in the command (parameters: x; write {{ and }} for a literal "
     "brace, as in ${{HOME}})"),
    (["echo ${HOME} {x}", "-p", "x=1"],
     "unknown placeholder {HOME} in the command (parameters: x; write {{ and }} for a "
     "literal brace, as in ${{HOME}})"),
    (["echo {x", "-p", "x=1"],
     "bad command template 'echo {x': expected '}' before end of string (write {{ and }} "
     "for a literal brace)"),
    (["echo {x.real}", "-p", "x=1"],
     "bad placeholder {x.real} in the command (placeholders are {NAME}; write {{ and }} "
     "for a literal brace)"),
    (["echo {x}", "-p", "x=1.."],
     "parameter x: bad range '1..' (ranges are A..B of whole numbers, or START..STOP:STEP)"),
    (["echo {x}", "-p", "x=5..1"], "parameter x: range 5..1 is empty (5 is after 1)"),
    (["echo {x}", "-p", "x=..5"],
     "parameter x: bad range '..5' (ranges are A..B of whole numbers, or START..STOP:STEP)"),
    (["echo {x}", "-p", "x=0..1:"],
     "parameter x: bad range '0..1:' (ranges are A..B of whole numbers, or "
     "START..STOP:STEP)"),
    (["echo {x}", "-p", "x=1..0:0.5"],
     "parameter x: range 1..0:0.5 is empty (the step goes away from 0)"),
    (["echo {x}", "-p", "x=0..1:0"], "parameter x: range 0..1:0 has a step of 0"),
    (["echo {x}", "-p", "x="], "parameter x: empty value in ''"),
    (["echo {x}", "-p", "x=1,,2"], "parameter x: empty value in '1,,2'"),
    (["echo {x}", "-p", "x"], "expected NAME=VALUES, got 'x'"),
    (["echo {x}", "-p", "1x=3"],
     "bad parameter name '1x': use letters, digits and _ (not first a digit)"),
    (["echo {x}", "-p", "x=1,2", "-p", "x=3"],
     "parameter x is given twice (give all its values in one -p x=A,B)"),
    (["echo {x}", "-p", "x=1..10000000000"],
     "parameter x: range 1..10000000000 has 10000000000 values, more than 200000"),
    (["echo {x}{y}", "-p", "x=1..10000", "-p", "y=1..1000", "-y"],
     "the sweep makes 10,000,000 jobs, more than kong makes in one go (200,000); "
     "split it"),
    (["echo {x}", "-p", "x=1..20000"],
     "Create 20,000 jobs? Refusing without a terminal to ask; pass -y to confirm"),
    (["echo {x}", "-p", "x=1,2", "--folders", "{x}"],
     "--folders '{x}': folder name '1' is all digits: it would read as a job id"),
    (["echo {x}", "-p", "x=a/b", "--folders", "v{x}"],
     "--folders: the value 'a/b' of x contains a /"),
    (["echo {x}", "-p", "x=a", "--folders", "../{x}"],
     "--folders '../{x}' must stay below the target folder (no leading / or ..), got "
     "'../a'"),
    (["echo {x}", "-p", "x=1", "-a", "bogus=3"], None),
    (["echo {x}", "-p", "x=1", "-f", "/no/such"], "no such folder: /no/such"),
])
def test_bad_sweeps_are_one_line_and_create_nothing(
    kong_home: Path, words: list[str], message: str | None
) -> None:
    assert kong_proc(kong_home, "mkdir", "/kept").returncode == 0
    assert kong_proc(kong_home, "create-job", "--", "true").returncode == 0
    before = snapshot(kong_home)
    proc = kong_proc(kong_home, "sweep", *words)
    assert proc.returncode == 1, proc.stdout
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kong: error: "), proc.stderr
    if message is not None:
        assert lines[0] == f"kong: error: {message}"
    assert snapshot(kong_home) == before


def test_quoted_values_reach_the_job_as_typed(state: State, tmp_path: Path) -> None:
    """Values with spaces, quotes, ``;``, ``$``, backticks and globs stay one word each
    and run nothing: the job prints exactly what was given."""
    nasty = ["a b", "it's", 'say "hi"', "x; touch injected", "$(touch injected)",
             "`touch injected`", "*", "-n", "tab\there", "ünï"]
    jobs = state.sweep("printf '%s|' {v}", {"v": nasty}, cwd=str(tmp_path))
    assert outputs(state, jobs) == [f"{v}|" for v in nasty]
    assert not (tmp_path / "injected").exists()


def test_folders_one_per_value_made_like_mkdir_p(kong_home: Path, state: State) -> None:
    state.mkdir("/runs/x=0.1", create_parent=True)
    jobs = state.sweep("echo {x} {seed}", ["x=0.1,0.2", "seed=1..2"],
                       folders="x={x}/s{seed}", folder="/runs")
    assert [j.folder.path for j in jobs] == [
        "/runs/x=0.1/s1", "/runs/x=0.1/s2", "/runs/x=0.2/s1", "/runs/x=0.2/s2"]
    assert [f.path for f in state.get_folders("/runs/*")] == ["/runs/x=0.1", "/runs/x=0.2"]
    proc = kong_proc(kong_home, "ls", "/runs")
    assert proc.stdout.splitlines() == ["x=0.1/  2 created", "x=0.2/  2 created"]
    # the CLI's form, relative to the target folder
    cli = kong_proc(kong_home, "sweep", "echo {x}", "-p", "x=a,b", "--folders", "{x}",
                    "-f", "/runs/x=0.2")
    assert cli.returncode == 0, cli.stderr
    assert [f["path"] for f in listing(kong_home, "/runs/x=0.2")["folders"]] == [
        "/runs/x=0.2/a", "/runs/x=0.2/b", "/runs/x=0.2/s1", "/runs/x=0.2/s2"]


def test_env_values_take_placeholders_unquoted(state: State) -> None:
    jobs = state.sweep("printf '%s' \"$SEED_TEXT\"", ["seed=1,2 3"], env={"SEED_TEXT": "s={seed}"})
    assert outputs(state, jobs) == ["s=1", "s=2 3"]


def test_sweep_submit_runs_them_all(kong_home: Path) -> None:
    proc = kong_proc(kong_home, "sweep", "echo $(( {a} * {b} ))", "-p", "a=2,3",
                     "-p", "b=5,7", "--submit", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "2", "3", "4"]
    wait = kong_proc(kong_home, "wait", "-q", "-t", "60", "1..4")
    assert wait.returncode == 0, wait.stderr
    tails = [kong_proc(kong_home, "tail", str(i)).stdout.strip() for i in range(1, 5)]
    assert tails == ["10", "14", "15", "21"]


def test_more_than_ten_thousand_asks_first(state: State) -> None:
    asked: list[str] = []

    def decline(question: str) -> bool:
        asked.append(question)
        return False

    assert state.sweep("echo {i}", {"i": range(10_001)}, confirm=decline) == []
    assert asked == ["Create 10,001 jobs?"]
    assert len(state.ls("/")[1]) == 0
    with pytest.raises(SweepError, match="the sweep makes 10,001 jobs: confirm it"):
        state.sweep("echo {i}", {"i": range(10_001)})
    assert len(state.sweep("echo {i}", {"i": range(10_000)})) == 10_000


# -- all or nothing ---------------------------------------------------------------------


def test_a_failure_inside_the_transaction_leaves_nothing(
    kong_home: Path, state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The insert and the new folders are one transaction: dirs that cannot be made
    (here: the disk refuses the 1,500th job) take every row and folder back."""
    from kong.drivers import base

    state.mkdir("/keep")
    before = snapshot(kong_home)
    made = 0
    real_mkdir = os.mkdir

    def mkdir(path: Any, mode: int = 0o777) -> None:
        nonlocal made
        if str(path).endswith("/output"):
            made += 1
            if made >= 1500:  # and from then on: the disk is full
                raise OSError(28, "No space left on device", str(path))
        real_mkdir(path, mode)

    monkeypatch.setattr(base.os, "mkdir", mkdir)  # the os module: kong.paths' too
    with pytest.raises(OSError, match="No space left"):
        state.sweep("echo {x} {s}", ["x=0.1,0.2", "s=1..1000"], folders="x{x}")
    monkeypatch.undo()
    assert snapshot(kong_home) == before
    assert list(kong_home.glob("**/log")) == []  # nor their dirs
    # and kong goes on: the same sweep works once the disk does
    assert len(state.sweep("echo {x} {s}", ["x=0.1,0.2", "s=1..1000"],
                           folders="x{x}")) == 2000


def test_bad_driver_option_creates_nothing(state: State, kong_home: Path) -> None:
    before = snapshot(kong_home)
    with pytest.raises(DriverError, match="unknown option 'bogus'"):
        state.create_jobs(["true", {"command": "true", "bogus": 1}])
    with pytest.raises(NoSuchFolder):
        state.create_jobs(["true", {"command": "true", "folder": "/nope"}])
    with pytest.raises(ArgumentValueError):
        state.create_jobs(["true", "bad\0command"])
    with pytest.raises(ArgumentValueError, match="one profile"):
        state.create_jobs(["true", {"command": "true", "profile": "local"}])
    assert snapshot(kong_home) == before


# -- create-job --from-file -------------------------------------------------------------


def test_from_file_one_job_per_line(kong_home: Path, tmp_path: Path) -> None:
    commands = tmp_path / "commands.txt"
    commands.write_text("# header\necho one\n\n  # indented comment\necho 'two words' | wc -w\n"
                        "./run.sh --x 3 > out.txt\n")
    proc = kong_proc(kong_home, "create-job", "--from-file", str(commands), "-c", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "created 3 job(s): 1..3\n"
    jobs = listing(kong_home)["jobs"]
    assert [(j["command"], j["cores"]) for j in jobs] == [
        ("echo one", 2), ("echo 'two words' | wc -w", 2), ("./run.sh --x 3 > out.txt", 2)]


def test_from_stdin_with_quiet_ids_and_submit(kong_home: Path) -> None:
    lines = "".join(f"echo line{i}\n" for i in range(5))
    proc = kong_proc(kong_home, "create-job", "--from-file", "-", "-q", "-s", stdin=lines)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "1\n2\n3\n4\n5\n"
    assert kong_proc(kong_home, "wait", "-q", "-t", "60", "1..5").returncode == 0
    assert kong_proc(kong_home, "tail", "5").stdout == "line4\n"


@pytest.mark.parametrize(("content", "extra", "message"), [
    ("# only a comment\n\n", [], "--from-file {f}: no commands in it (one a line; blank "
                                 "lines and # comments are skipped)"),
    (b"echo \xff\n", [], "--from-file {f}: not UTF-8 text (invalid start byte at byte 5)"),
    ("echo a\n", ["--", "echo", "b"], "give COMMAND or --from-file, not both (see: kong "
                                      "create-job --help)"),
    ("echo a\n", ["-a", "nope=1"], None),
    (None, [], "--from-file: no such file: {f}"),
])
def test_from_file_refusals(kong_home: Path, tmp_path: Path, content: str | bytes | None,
                            extra: list[str], message: str | None) -> None:
    path = tmp_path / "commands.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert kong_proc(kong_home, "create-job", "--", "true").returncode == 0
    before = snapshot(kong_home)
    proc = kong_proc(kong_home, "create-job", "--from-file", str(path), *extra)
    assert proc.returncode in (1, 2)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kong: error: "), proc.stderr
    if message is not None:
        assert lines[0] == "kong: error: " + message.format(f=path)
    assert snapshot(kong_home) == before


def test_create_job_quiet_prints_the_id(kong_home: Path) -> None:
    proc = kong_proc(kong_home, "create-job", "-q", "--", "echo", "hi")
    assert (proc.returncode, proc.stdout) == (0, "1\n")
    missing = kong_proc(kong_home, "create-job")
    assert missing.returncode == 2
    assert missing.stderr.startswith("kong: error: missing COMMAND (or --from-file FILE)")


# -- Python ------------------------------------------------------------------------------


def test_create_jobs_from_python(state: State) -> None:
    state.mkdir("/b")
    jobs = state.create_jobs(
        ["echo a", {"command": "echo b", "cores": 2, "folder": "/b",
                    "params": {"x": 0.5, "name": "b"}}],
        memory=100,
    )
    assert [(j.command, j.cores, j.memory, j.folder.path) for j in jobs] == [
        ("echo a", 1, 100, "/"), ("echo b", 2, 100, "/b")]
    assert jobs[1].data["params"] == {"x": "0.5", "name": "b"}
    assert "params" not in jobs[0].data
    assert state.jobs_where(jobs, {"x": 0.5}) == [jobs[1]]
    assert state.jobs_where(jobs, ["name=a,b"]) == [jobs[1]]
    assert state.create_jobs([]) == []
    with pytest.raises(KongError):
        state.create_jobs([42])  # type: ignore[list-item]


def test_sweep_from_python_with_mappings(state: State) -> None:
    jobs = state.sweep("sim --x {x} --seed {seed:>03}", {"x": [0.1, 1e-3], "seed": range(1, 3)},
                       cores=2, walltime=5)
    assert [j.command for j in jobs] == ["sim --x 0.1 --seed 001", "sim --x 0.1 --seed 002",
                                         "sim --x 0.001 --seed 001", "sim --x 0.001 --seed 002"]
    assert {j.cores for j in jobs} == {2}
    assert [j.data["params"] for j in jobs][2] == {"x": "0.001", "seed": "1"}
    picked = state.jobs_where(state.get_jobs("/"), {"x": "0.001", "seed": ["2"]})
    assert [j.job_id for j in picked] == [jobs[3].job_id]
    with pytest.raises(SweepError, match="give a list of values"):
        state.sweep("echo {x}", {"x": "abc"})
    with pytest.raises(SweepError, match="needs at least one parameter"):
        state.sweep("echo", {})
    assert state.sweep("echo {x}", {"x": range(5)}, confirm=YES)[-1].command == "echo 4"


# -- the interactive shell ----------------------------------------------------------------


def test_lines_piped_into_the_shell(kong_home: Path) -> None:
    """``kong < script``: sweep runs in the shell as on the command line; stdin is the
    script, so ``--from-file -`` is refused there (and the script stops at it)."""
    script = ("mkdir /scan\n"
              "cd /scan\n"
              "sweep 'echo {x}' -p x=1..3 --folders 'x{x}'\n"
              "ls -R -x x\n"
              "create_job --from-file -\n"
              "ls\n")
    proc = kong_proc(kong_home, stdin=script)
    assert proc.returncode == 1
    out = proc.stdout.splitlines()
    assert out[0] == "created 3 job(s): 1..3"
    assert [line.split()[0] for line in out[1:4]] == ["x1/", "x2/", "x3/"]
    assert [line.split()[-3:] for line in out[5:]] == [
        ["1", "echo", "1"], ["2", "echo", "2"], ["3", "echo", "3"]]
    assert proc.stderr == ("kong: error: --from-file -: in kong's shell stdin is the shell's "
                           "own input; give a file path\n")


def test_where_on_submit_kill_and_info(kong_home: Path) -> None:
    assert kong_proc(kong_home, "sweep", "sleep {t}; echo {k}", "-p", "t=30,31",
                     "-p", "k=a,b").returncode == 0  # jobs 1..4: (30,a) (30,b) (31,a) (31,b)
    submitted = kong_proc(kong_home, "submit", "/", "--where", "k=a")
    assert submitted.stdout.splitlines()[-1] == "submitted 2 job(s)", submitted.stderr
    statuses = {j["job_id"]: j["status"] for j in listing(kong_home)["jobs"]}
    assert statuses[2] == statuses[4] == "CREATED"
    assert statuses[1] != "CREATED" and statuses[3] != "CREATED"
    killed = kong_proc(kong_home, "kill", "/", "-y", "-w", "t=30")
    assert killed.stdout.splitlines()[-1] == "killed 1 job(s)", killed.stderr
    info = json.loads(kong_proc(kong_home, "info", "/", "--json", "-w", "k=a").stdout)
    assert (info[0]["job_id"], info[0]["status"]) == (1, "FAILED")
    assert [j["job_id"] for j in info] == [1, 3]
    assert kong_proc(kong_home, "kill", "/", "-y").returncode == 0


# -- on a real cluster ---------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.timeout(600)
def test_sweep_on_slurm_values_survive_the_job_script(kong_home: Path,
                                                      slurm_cluster: Any) -> None:
    """The quoted values pass kong's job script, SSH and sbatch unchanged: each job on
    the real Slurm cluster prints exactly its values."""
    from kong.config import Config
    from tests.clusters import needs_container
    from tests.fixtures_state import make_state

    needs_container(slurm_cluster)
    state = make_state(Config(data={"default_profile": "slurm", "profiles": {
        "slurm": {**slurm_cluster.profile(), "poll_interval": 0.5}}}))
    nasty = ["a b", "it's", "$(hostname)", "x; exit 3"]
    jobs = state.sweep("printf '%s|' {v} {n}", {"v": nasty, "n": ["1", "2"]},
                       folders="n{n}")
    state.submit_job(jobs)
    state.wait(jobs, notify=False, timeout=300, poll_interval=0.5)
    assert [j.status for j in jobs] == [JobStatus.COMPLETED] * len(jobs)
    assert [state.tail_log(j).decode() for j in jobs] == [
        f"{v}|{n}|" for v in nasty for n in "12"]
    assert [j.folder.path for j in jobs][:2] == ["/n1", "/n2"]
    assert state.jobs_where(jobs, {"v": "it's"}) == jobs[2:4]
