"""Staging: inputs travel with the submit, outputs come home with ``pull``.

Local-driver tests use this machine and a real SQLite file; the ``cluster`` tests
use the sshd container (the local driver over SSH) and the Slurm container.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from kong.cli import run
from kong.config import Config
from kong.errors import ArgumentValueError, ConnectionLost, KongError
from kong.model.job import JobStatus
from kong.state import State
from tests.clusters import Cluster
from tests.fixtures_state import make_state

POLL = 0.3


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def local_tree(root: Path) -> dict[str, str]:
    """Every file below ``root``, relative path -> sha256."""
    return {p.relative_to(root).as_posix(): sha(p) for p in sorted(root.rglob("*"))
            if p.is_file()}


def remote_tree(cluster: Cluster, root: str) -> dict[str, str]:
    code, out = cluster.exec(f"cd {root} && find . -type f -exec sha256sum {{}} +",
                             user=cluster.user)
    assert code == 0, out
    return {path[2:]: digest for digest, path in (line.split(None, 1) for line in
                                                   out.splitlines())}


def no_parts(root: Path) -> bool:
    return not any(p.name.endswith(".kongpart") for p in root.rglob("*"))


def run_and_wait(state: State, spec: str, timeout: float = 90) -> None:
    state.submit_job(spec, recursive=True)
    state.wait(spec, recursive=True, notify=False, timeout=timeout, poll_interval=POLL)


# -- the local driver: no container ---------------------------------------------------------


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "table" / "sub").mkdir(parents=True)
    (src / "shared.dat").write_bytes(os.urandom(50_000))
    (src / "table" / "a.csv").write_text("a,b\n1,2\n")
    (src / "table" / "sub" / "b.csv").write_text("c\n3\n")
    for i in range(3):
        (src / f"param{i}.txt").write_text(f"{i}\n")
    return src


def test_local_inputs_arrive_and_outputs_come_home(
    state: State, inputs: Path, tmp_path: Path
) -> None:
    state.mkdir("/runs")
    jobs = [state.create_job(
        command='cd "$KONG_JOB_OUTPUT_DIR" && cat p.txt table/sub/b.csv > result.txt '
                '&& sha256sum shared.dat > shared.sum && mkdir -p deep && echo x > deep/log.txt',
        folder="/runs",
        inputs=[inputs / "shared.dat", (inputs / f"param{i}.txt", "p.txt"), inputs / "table"])
        for i in range(3)]
    run_and_wait(state, "/runs")
    assert [j.status for j in jobs] == [JobStatus.COMPLETED] * 3

    dest = tmp_path / "dest"
    dry = state.pull("/runs", dest, dry_run=True)
    assert not dest.exists()  # a dry run moves nothing
    result = state.pull("/runs", dest)
    assert result.bytes_moved == dry.bytes_planned > 0
    shared_sum = hashlib.sha256((inputs / "shared.dat").read_bytes()).hexdigest()
    for i, job in enumerate(jobs):
        here = dest / "runs" / str(job.job_id)
        # inputs are not pulled back; outputs are, identical
        assert sorted(local_tree(here)) == ["deep/log.txt", "result.txt", "shared.sum"]
        assert (here / "result.txt").read_text() == f"{i}\nc\n3\n"
        assert (here / "shared.sum").read_text().split()[0] == shared_sum
        assert local_tree(here) == local_tree_of_remote(Path(job.output_dir), here)

    again = state.pull("/runs", dest)
    assert (again.bytes_moved, again.files_moved) == (0, 0)
    assert sum(j.unchanged for j in again.jobs) == 9


def local_tree_of_remote(output_dir: Path, pulled: Path) -> dict[str, str]:
    """The job's own output dir, minus what came from the laptop (same names as pulled)."""
    return {rel: digest for rel, digest in local_tree(output_dir).items()
            if (pulled / rel).exists()}


def test_default_dest_is_pulled_dir_and_globs_select(state: State) -> None:
    job = state.create_job(
        command='cd "$KONG_JOB_OUTPUT_DIR" && echo a > a.txt && echo b > b.log '
                '&& mkdir sub && echo c > sub/c.txt && echo d > sub/d.log')
    run_and_wait(state, str(job.job_id))
    dry = state.pull(job, include=["*.txt"], exclude=["sub/*"], dry_run=True)
    assert [Path(i.local).name for j in dry.jobs for i in j.items] == ["a.txt"]
    result = state.pull(job, include=["*.txt"], exclude=["sub/*"])
    assert job.pulled_dir == state.config.data_dir / "pulled" / str(job.job_id)
    assert local_tree(job.pulled_dir).keys() == {"a.txt"}
    assert result.bytes_moved == dry.bytes_planned == 2
    state.pull(job, exclude=["*.txt"])
    assert local_tree(job.pulled_dir).keys() == {"a.txt", "b.log", "sub/d.log"}


def test_a_changed_file_comes_again_and_remove_remote_frees_the_host(
    state: State, tmp_path: Path
) -> None:
    job = state.create_job(command='echo one > "$KONG_JOB_OUTPUT_DIR/r.txt"')
    run_and_wait(state, str(job.job_id))
    state.pull(job, tmp_path / "d")
    remote = Path(job.output_dir) / "r.txt"
    remote.write_text("changed, longer\n")
    os.utime(remote, ns=(remote.stat().st_atime_ns, remote.stat().st_mtime_ns + 10**9))
    assert state.pull(job, tmp_path / "d", dry_run=True).bytes_planned == 16
    result = state.pull(job, tmp_path / "d", remove_remote=True)
    assert result.bytes_moved == 16 and result.removed_remote == [job.job_id]
    assert (tmp_path / "d" / str(job.job_id) / "r.txt").read_text() == "changed, longer\n"
    assert not Path(job.output_dir).exists()
    assert (tmp_path / "d" / str(job.job_id) / "r.txt").exists()  # the laptop copy stays


def test_checksum_finds_a_change_that_kept_size_and_mtime(state: State, tmp_path: Path) -> None:
    job = state.create_job(command='echo aaaa > "$KONG_JOB_OUTPUT_DIR/r.txt"')
    run_and_wait(state, str(job.job_id))
    state.pull(job, tmp_path / "d")
    remote = Path(job.output_dir) / "r.txt"
    st = remote.stat()
    remote.write_text("bbbb\n")  # same size, and the old mtime put back
    os.utime(remote, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert state.pull(job, tmp_path / "d", dry_run=True).bytes_planned == 0
    result = state.pull(job, tmp_path / "d", checksum=True)
    assert result.files_moved == 1
    assert (tmp_path / "d" / str(job.job_id) / "r.txt").read_text() == "bbbb\n"
    assert state.pull(job, tmp_path / "d", checksum=True).files_moved == 0


def test_a_part_of_another_version_is_dropped_not_continued(state: State, tmp_path: Path) -> None:
    job = state.create_job(command='cd "$KONG_JOB_OUTPUT_DIR" && echo new-content > r.txt '
                                   '&& echo b > r.txt.bak')
    run_and_wait(state, str(job.job_id))
    here = tmp_path / "d" / str(job.job_id)
    here.mkdir(parents=True)
    stale = here / ".r.txt.5-123.kongpart"  # an older r.txt, cut off: useless now
    stale.write_bytes(b"old-c")
    other = here / ".r.txt.bak.9-99.kongpart"  # a part of another file: not r.txt's
    other.write_bytes(b"x")
    assert state.pull(job, tmp_path / "d", include=["r.txt"]).bytes_moved == 12
    assert (here / "r.txt").read_text() == "new-content\n"
    assert not stale.exists() and other.exists()
    # a part of the current version is continued from its length
    remote = Path(job.output_dir) / "r.txt.bak"
    st = remote.stat()
    (here / f".r.txt.bak.{st.st_size}-{st.st_mtime_ns}.kongpart").write_bytes(b"b")
    result = state.pull(job, tmp_path / "d")
    assert result.bytes_moved == 1 and (here / "r.txt.bak").read_text() == "b\n"
    assert not other.exists() and no_parts(here)


def test_input_refusals_are_one_line_and_create_nothing(state: State, tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("ok")
    for bad, words in [
        ([tmp_path / "missing.txt"], "does not exist"),
        ([(tmp_path / "ok.txt", "../escape")], "inside the job dir"),
        ([(tmp_path / "ok.txt", "/abs")], "inside the job dir"),
        ([tmp_path / "ok.txt", (tmp_path / "ok.txt", "ok.txt")], "two inputs"),
        (str(tmp_path / "ok.txt"), "list"),
    ]:
        with pytest.raises(KongError, match=words):
            state.create_job(command="true", inputs=bad)
    assert state.get_jobs("/", recursive=True) == []
    with pytest.raises(ArgumentValueError, match="remove_remote"):
        state.pull("/", remove_remote=True, include=["*.txt"])


def test_pull_of_a_profile_gone_from_the_config_is_one_clear_error(kong_home: Path) -> None:
    first = make_state(Config(data={"default_profile": "old",
                                    "profiles": {"old": {"driver": "local"}}}))
    job = first.create_job(command="true")
    later = make_state(Config(data={"default_profile": "new",
                                    "profiles": {"new": {"driver": "local"}}}))
    with pytest.raises(KongError, match="profile 'old' is no longer in the config"):
        later.pull(job.job_id)


def test_cli_create_job_input_and_pull_dry_run(
    kong_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "in.txt").write_text("input\n")
    monkeypatch.setenv("KONG_AGENT", "0")
    monkeypatch.chdir(tmp_path)

    def kong(*args: str) -> tuple[int, str, str]:
        code = run(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, err = kong("create-job", "-s", "-i", f"{tmp_path / 'in.txt'}=data/x.txt", "--",
                          'cd "$KONG_JOB_OUTPUT_DIR" && cat data/x.txt data/x.txt > out.txt')
    assert code == 0 and out.strip() == "created job 1 (submitted)", err
    assert kong("wait", "1", "--timeout", "60")[0] == 0
    code, out, err = kong("pull", "1", str(tmp_path / "d"), "--dry-run")
    assert code == 0, err
    assert "would pull 1 file(s), 12B (12 bytes)" in out
    assert not (tmp_path / "d").exists()
    code, out, err = kong("pull", "1", str(tmp_path / "d"))
    assert code == 0 and "pulled 1 file(s), 12B" in out, err
    assert (tmp_path / "d" / "1" / "out.txt").read_text() == "input\ninput\n"
    code, out, err = kong("create-job", "-i", str(tmp_path / "nope"), "--", "true")
    assert code == 1
    assert err.strip().splitlines() == [
        f"kong: error: input {str(tmp_path / 'nope')!r} does not exist"]
    code, out, err = kong("ls", "-x", "size")
    header = out.splitlines()[0].split()
    assert code == 0 and "size" in header, out
    # measured on the host, not the job's data (the header's "batch id" is two words)
    assert out.splitlines()[1].split()[header.index("size") - 1].endswith("K")
    # a user error in a pull is one line, and nothing moves
    code, out, err = kong("pull", "1", "--remove-remote", "--include", "*.txt")
    assert code == 1 and err.count("\n") == 1 and "remove_remote" in err


# -- over SSH: the sshd container ----------------------------------------------------------


@pytest.fixture
def remote(kong_home: Path, sshd_server: Cluster) -> State:
    block: dict[str, Any] = {**sshd_server.profile(), "driver": "local", "max_parallel": 4}
    config = Config(data={"default_profile": "box", "profiles": {"box": block}})
    return make_state(config)


def _stats(state: State) -> Any:
    return state.default_driver.transport.stats


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_ssh_shared_input_sent_once_and_arrives(
    remote: State, sshd_server: Cluster, inputs: Path
) -> None:
    remote.mkdir("/in")
    big = inputs / "big.bin"
    big.write_bytes(os.urandom(2_000_000))
    jobs = [remote.create_job(command='cd "$KONG_JOB_OUTPUT_DIR" && sha256sum big.bin p.txt '
                                      'table/a.csv table/sub/b.csv > sums',
                              folder="/in",
                              inputs=[big, (inputs / f"param{i}.txt", "p.txt"), inputs / "table"])
              for i in range(3)]
    remote.default_driver.base_dir  # noqa: B018 - learn the remote home before counting
    before = _stats(remote).snapshot()
    run_and_wait(remote, "/in")
    sent = _stats(remote).snapshot()["bytes_sent"] - before["bytes_sent"]
    # three jobs share the 2 MB file: it went over once
    assert 2_000_000 < sent < 3_000_000
    want = {name: sha(inputs / name) for name in ("big.bin", "table/a.csv", "table/sub/b.csv")}
    for i, job in enumerate(jobs):
        assert job.status == JobStatus.COMPLETED
        code, out = sshd_server.exec(["cat", f"{job.output_dir}/sums"], user=sshd_server.user)
        assert code == 0, out
        got = {path: digest for digest, path in (line.split() for line in out.splitlines())}
        assert got == {**want, "p.txt": hashlib.sha256(f"{i}\n".encode()).hexdigest()}


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_ssh_200_jobs_pulled_identical_then_repull_is_one_round_trip(
    remote: State, sshd_server: Cluster, tmp_path: Path
) -> None:
    remote.mkdir("/many")
    jobs = [remote.create_job(command="true", folder="/many") for _ in range(200)]
    dirs = " ".join(j.output_dir for j in jobs)
    # the jobs' results, written on the host in one go: 3 files each, one in a subdir
    code, out = sshd_server.exec(
        f"for d in {dirs}; do mkdir -p $d/sub && head -c 3000 /dev/urandom > $d/a.bin "
        f"&& echo $d > $d/b.txt && head -c 700 /dev/urandom > $d/sub/c.dat; done",
        user=sshd_server.user)
    assert code == 0, out
    dest = tmp_path / "dest"
    stats = _stats(remote)
    remote.default_driver.base_dir  # noqa: B018
    dry = remote.pull("/many", dest, dry_run=True)
    before = stats.snapshot()
    result = remote.pull("/many", dest)
    after = stats.snapshot()
    # nothing of it here yet: listed and sent in one command
    assert after["round_trips"] - before["round_trips"] == 1
    assert result.files_moved == 600 and result.bytes_moved == dry.bytes_planned
    assert result.files_planned == dry.files_planned == 600
    # every file of every job, hashed on both sides (one find on the host)
    on_host = remote_tree(sshd_server, remote.default_driver.base_dir)
    want = {f"{job_id}/{rest}": digest for path, digest in on_host.items()
            for job_id, _, rest in [path.partition("/output/")] if rest}
    assert local_tree(dest / "many") == want and len(want) == 600
    assert no_parts(dest)

    before = stats.snapshot()
    again = remote.pull("/many", dest)
    after = stats.snapshot()
    assert after["round_trips"] - before["round_trips"] == 1  # the listing only
    assert again.bytes_moved == 0 and again.files_moved == 0

    # one file grows on the host: only it comes again
    code, _ = sshd_server.exec(f"echo more >> {jobs[5].output_dir}/b.txt", user=sshd_server.user)
    assert code == 0
    third = remote.pull("/many", dest)
    assert third.files_moved == 1
    assert (dest / "many" / str(jobs[5].job_id) / "b.txt").read_text() == \
        f"{jobs[5].output_dir}\nmore\n"


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_ssh_first_pull_filters_on_the_host_and_mixes_with_an_incremental_one(
    remote: State, sshd_server: Cluster, tmp_path: Path
) -> None:
    jobs = [remote.create_job(command="true") for _ in range(3)]
    for job in jobs:
        code, out = sshd_server.exec(
            f"mkdir -p {job.output_dir}/sub && cd {job.output_dir} && echo a > a.txt && "
            f"head -c 200000 /dev/urandom > b.log && echo c > sub/c.txt && echo d > sub/d.log",
            user=sshd_server.user)
        assert code == 0, out
    dest = tmp_path / "dest"
    stats = _stats(remote)
    remote.default_driver.base_dir  # noqa: B018
    dry = remote.pull(jobs, dest, include=["*.txt"], exclude=["sub/*"], dry_run=True)
    seen: list[tuple[int, int]] = []
    before = stats.snapshot()
    result = remote.pull(jobs, dest, include=["*.txt"], exclude=["sub/*"],
                         progress=lambda done, total: seen.append((done, total)))
    # first pull: one command, and the globs were applied on the host (only a.txt came)
    assert stats.snapshot()["round_trips"] - before["round_trips"] == 1
    assert stats.snapshot()["bytes_received"] - before["bytes_received"] < 20_000
    for job in jobs:
        assert local_tree(dest / str(job.job_id)).keys() == {"a.txt"}
    assert result.bytes_moved == dry.bytes_planned == 6 and result.files_moved == 3
    assert seen and seen[-1] == (6, 6) and all(done <= total for done, total in seen)

    # then one job grows a file and a new job comes: the old ones are compared with
    # their listing and only the change moves, the new one comes whole
    code, _ = sshd_server.exec(f"echo more >> {jobs[0].output_dir}/a.txt", user=sshd_server.user)
    assert code == 0
    new = remote.create_job(command="true")
    code, _ = sshd_server.exec(f"mkdir -p {new.output_dir} && echo n > {new.output_dir}/n.txt",
                               user=sshd_server.user)
    assert code == 0
    before = stats.snapshot()
    again = remote.pull([*jobs, new], dest)
    # listing of the three + stream of what changed + the new job's one command
    assert stats.snapshot()["round_trips"] - before["round_trips"] == 3
    assert (dest / str(jobs[0].job_id) / "a.txt").read_text() == "a\nmore\n"
    assert local_tree(dest / str(new.job_id)).keys() == {"n.txt"}
    assert again.files_moved == 1 + 3 * 3 + 1  # a.txt, b.log + sub/* of three, n.txt
    for job in [*jobs, new]:
        assert local_tree(dest / str(job.job_id)) == remote_tree(sshd_server, job.output_dir)
    assert no_parts(dest)


def test_a_listing_naming_a_path_outside_the_job_dir_is_refused() -> None:
    from kong.errors import TransportError
    from kong.remote import transfer

    for rel in ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", ""]:
        raw = f'[[["{rel}", 1, 2]]]'.encode()
        with pytest.raises(TransportError, match="not a path inside the job dir"):
            transfer._parse_listing(raw, ["/r"], "host")
    assert transfer._parse_listing(b'[[["a/b..c", 1, 2]], null]', ["/r", "/s"], "host") == {
        "/r": [transfer.RemoteFile("a/b..c", 1, 2)], "/s": None}


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_ssh_pull_cut_mid_file_resumes_identical(
    remote: State, sshd_server: Cluster, tmp_path: Path
) -> None:
    job = remote.create_job(command="true")
    code, out = sshd_server.exec(
        f"mkdir -p {job.output_dir} && head -c 5000 /dev/urandom > {job.output_dir}/small "
        f"&& head -c 60000000 /dev/urandom > {job.output_dir}/big", user=sshd_server.user)
    assert code == 0, out
    dest = tmp_path / "dest"
    final = dest / str(job.job_id) / "big"
    seen: list[int] = []

    def cut(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == 3:  # a few chunks in: drop every connection, as a network would
            sshd_server.kill_ssh_connections()

    with pytest.raises(ConnectionLost, match="pull again to continue where it stopped"):
        remote.pull(job, dest, progress=cut)
    parts = [p for p in final.parent.iterdir() if p.name.endswith(".kongpart")]
    assert not final.exists() and len(parts) == 1  # never half a file under its name
    got = parts[0].stat().st_size
    assert 0 < got < 60_000_000

    dry = remote.pull(job, dest, dry_run=True)
    result = remote.pull(job, dest)
    # the rest of the big file (it comes first, by name), then the small one
    assert result.bytes_moved == dry.bytes_planned == 60_000_000 - got + 5000
    assert local_tree(dest / str(job.job_id)) == remote_tree(sshd_server, job.output_dir)
    assert no_parts(dest)


# -- Slurm ----------------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_slurm_inputs_and_pull(kong_home: Path, slurm_cluster: Cluster, inputs: Path,
                               tmp_path: Path) -> None:
    config = Config(data={"default_profile": "slurm", "profiles": {
        "slurm": {**slurm_cluster.profile(), "poll_interval": POLL}}})
    state = make_state(config)
    state.mkdir("/s")
    jobs = [state.create_job(command='cd "$KONG_JOB_OUTPUT_DIR" && mkdir -p out '
                                     '&& sha256sum shared.dat > out/sum && cat p.txt > out/p',
                             folder="/s",
                             inputs=[inputs / "shared.dat", (inputs / f"param{i}.txt", "p.txt")])
              for i in range(3)]
    run_and_wait(state, "/s", timeout=120)
    assert [j.status for j in jobs] == [JobStatus.COMPLETED] * 3
    started = time.monotonic()
    result = state.pull("/s", tmp_path / "d")
    assert result.files_moved == 6, result
    shared = sha(inputs / "shared.dat")
    for i, job in enumerate(jobs):
        here = tmp_path / "d" / "s" / str(job.job_id)
        assert local_tree(here).keys() == {"out/sum", "out/p"}
        assert (here / "out" / "p").read_text() == f"{i}\n"
        assert (here / "out" / "sum").read_text().split()[0] == shared
        assert local_tree(here) == {k: v for k, v in remote_tree(slurm_cluster,
                                                                 job.output_dir).items()
                                    if k.startswith("out/")}
    assert time.monotonic() - started < 30


def _results_on_host(cluster: Cluster, jobs: list[Any], size: int) -> None:
    dirs = " ".join(j.output_dir for j in jobs)
    code, out = cluster.exec(f"for d in {dirs}; do mkdir -p $d && head -c {size} /dev/urandom "
                             f"> $d/r.bin && echo ok > $d/ok.txt; done", user=cluster.user)
    assert code == 0, out


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_pull_through_the_agent_in_pieces(
    kong_home: Path, sshd_server: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kong.remote import agent, transfer

    monkeypatch.setenv("KONG_AGENT", "1")
    block: dict[str, Any] = {**sshd_server.profile(), "driver": "local"}
    state = make_state(Config(data={"default_profile": "box", "agent": True,
                                    "agent_idle_timeout": 60, "profiles": {"box": block}}))
    try:
        assert type(state.default_driver.transport).__name__ == "AgentTransport"
        # the agent holds a reply in memory: big files come in pieces (made small here)
        monkeypatch.setattr(transfer, "PIECE_BYTES", 300_000)
        jobs = [state.create_job(command="true") for _ in range(3)]
        _results_on_host(sshd_server, jobs, 1_000_000)
        result = state.pull("/", tmp_path / "d", recursive=True)
        assert result.files_moved == 6 and result.bytes_moved == 3 * 1_000_003
        for job in jobs:
            assert local_tree(tmp_path / "d" / str(job.job_id)) == remote_tree(
                sshd_server, job.output_dir)
        assert no_parts(tmp_path / "d")
        assert state.pull("/", tmp_path / "d", recursive=True).bytes_moved == 0

        # an input over the agent's stdin limit goes in pieces, once for all jobs
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(agent.MAX_STDIN + 1_000_000))
        state.mkdir("/in")
        users = [state.create_job(command='cd "$KONG_JOB_OUTPUT_DIR" && sha256sum big.bin '
                                          '> sum', folder="/in", inputs=[big]) for _ in range(3)]
        stats = state.default_driver.transport.stats
        before = stats.snapshot()["bytes_sent"]
        run_and_wait(state, "/in")
        assert stats.snapshot()["bytes_sent"] - before < 2 * big.stat().st_size
        state.pull("/in", tmp_path / "in")
        for job in users:
            assert (tmp_path / "in" / "in" / str(job.job_id) / "sum").read_text().split()[0] \
                == sha(big)
    finally:
        agent.stop_agent()


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_pull_through_proxy_jump(
    kong_home: Path, sshd_server: Cluster, sshd_jump_server: Cluster, tmp_path: Path
) -> None:
    import shlex

    pub = Path(str(sshd_server.identity_file) + ".pub").read_text().strip()
    code, out = sshd_jump_server.exec(
        f"grep -qxF {shlex.quote(pub)} /etc/ssh/authorized_keys/{sshd_jump_server.user} || "
        f"echo {shlex.quote(pub)} >> /etc/ssh/authorized_keys/{sshd_jump_server.user}")
    assert code == 0, out
    known = tmp_path / "known_hosts"
    known.write_text(sshd_server.known_hosts.read_text()
                     + sshd_jump_server.known_hosts.read_text())
    block: dict[str, Any] = {
        **sshd_server.profile(), "driver": "local", "known_hosts": str(known),
        "jump_host": f"{sshd_jump_server.user}@{sshd_jump_server.host}:{sshd_jump_server.port}"}
    state = make_state(Config(data={"default_profile": "box", "profiles": {"box": block}}))
    before = sshd_jump_server.accepted_logins()
    jobs = [state.create_job(command="true") for _ in range(2)]
    _results_on_host(sshd_server, jobs, 200_000)
    result = state.pull("/", tmp_path / "d", recursive=True)
    assert result.files_moved == 4
    assert sshd_jump_server.accepted_logins() > before  # it went through the jump host
    for job in jobs:
        assert local_tree(tmp_path / "d" / str(job.job_id)) == remote_tree(sshd_server,
                                                                           job.output_dir)
