"""Lazy log sync: only bytes not yet cached cross the network (containerized sshd, and local)."""

from __future__ import annotations

import shlex
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kong.remote.base import Transport
from kong.remote.local import LocalTransport
from kong.remote.logsync import LogCache
from kong.remote.pool import SSHPool
from tests.test_ssh_transport import remote_tmpdir, transport_for


@dataclass
class Target:
    """The transport under test, plus a side door (its own channel) to set up files."""

    transport: Transport
    dir: str
    sh: Callable[[str], str]


@pytest.fixture(params=["ssh", "local"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "local":

        def local_sh(cmd: str) -> str:
            return subprocess.run(
                ["sh", "-c", cmd], check=True, capture_output=True, text=True
            ).stdout

        yield Target(LocalTransport(), str(tmp_path / "remote"), local_sh)
        return
    cluster = request.getfixturevalue("sshd_server")
    pool, side_pool = SSHPool(), SSHPool()
    side = transport_for(cluster, side_pool)

    def ssh_sh(cmd: str) -> str:
        return side.run_checked(["sh", "-c", cmd]).text()

    yield Target(transport_for(cluster, pool), remote_tmpdir(side), ssh_sh)
    pool.shutdown()
    side_pool.shutdown()


def test_tail_of_a_50mb_log_moves_only_the_tail(target: Target, tmp_path: Path) -> None:
    t = target.transport
    log = f"{target.dir}/big.out"
    # 500,000 lines of 100 bytes: "000000000 xxx...x\n".
    pad = "x" * 89
    target.sh(
        f"mkdir -p {shlex.quote(target.dir)} && "
        f"seq -f '%09g {pad}' 0 499999 > {shlex.quote(log)}"
    )
    assert t.sizes([log]) == {log: 50_000_000}
    cache = LogCache(tmp_path / "cache")
    before = t.stats.snapshot()

    got = cache.tail(t, log, ("p", "1", "stdout"), 20)

    lines = got.splitlines()
    assert len(lines) == 20
    assert lines[0].startswith(b"000499980 ")
    assert lines[-1].startswith(b"000499999 ")
    moved = t.stats.bytes_received - before["bytes_received"]
    assert moved < 100_000, moved
    assert cache.stats.bytes_fetched < 100_000
    assert t.stats.round_trips - before["round_trips"] == 2  # size, then one chunk

    # A tail longer than the first chunk reads further back in growing chunks.
    got = cache.tail(t, log, ("p", "1", "stdout"), 5_000)
    assert len(got.splitlines()) == 5_000
    assert got.splitlines()[0].startswith(b"000495000 ")
    assert t.stats.bytes_received - before["bytes_received"] < 1_000_000
    # The cache was not filled with a 50 MB prefix.
    assert not cache.path(("p", "1", "stdout")).exists()


def test_growing_log_fetches_only_new_bytes(target: Target, tmp_path: Path) -> None:
    t = target.transport
    log = f"{target.dir}/grow.out"
    target.sh(
        f"mkdir -p {target.dir} && head -c 999999 /dev/zero | tr '\\0' a > {log} && echo >> {log}"
    )
    cache = LogCache(tmp_path / "cache")
    key = "prof/inst/7/stdout"

    local = cache.sync(t, log, key, finished=False)
    assert local.read_bytes() == b"a" * 999_999 + b"\n"
    assert cache.stats.bytes_fetched == 1_000_000

    target.sh(f"echo 'new line' >> {log}")
    fetched, rx = cache.stats.bytes_fetched, t.stats.bytes_received
    cache.sync(t, log, key, finished=False)
    assert local.read_bytes().endswith(b"a\nnew line\n")
    assert local.stat().st_size == 1_000_009
    # The new bytes, plus one byte of overlap that tells a replaced log apart.
    assert cache.stats.bytes_fetched - fetched == len(b"new line\n") + 1
    assert t.stats.bytes_received - rx == len(b"new line\n") + 1

    fetched = cache.stats.bytes_fetched
    cache.sync(t, log, key, finished=False)
    assert cache.stats.bytes_fetched - fetched == 1

    # Finished: fetched once more, then never again.
    target.sh(f"echo done >> {log}")
    cache.sync(t, log, key, finished=True)
    assert local.read_bytes().endswith(b"new line\ndone\n")
    trips = t.stats.round_trips
    for _ in range(3):
        cache.sync(t, log, key, finished=True)
    assert t.stats.round_trips == trips
    assert cache.is_complete(key)
    # The tail of a complete log comes from the cache.
    assert cache.tail(t, log, key, 2) == b"new line\ndone\n"
    assert t.stats.round_trips == trips


def test_replaced_log_is_refetched(target: Target, tmp_path: Path) -> None:
    t = target.transport
    log = f"{target.dir}/re.out"
    target.sh(f"mkdir -p {target.dir} && echo 'first run output' > {log}")
    cache = LogCache(tmp_path / "cache")
    key = ("p", "9", "stderr")
    cache.sync(t, log, key, finished=False)
    target.sh(f"echo second > {log}")
    assert cache.sync(t, log, key, finished=False).read_bytes() == b"second\n"


def test_missing_log_is_empty(target: Target, tmp_path: Path) -> None:
    t = target.transport
    cache = LogCache(tmp_path / "cache")
    missing = f"{target.dir}/nope"
    assert cache.sync(t, missing, ("p", "1", "stdout"), finished=False).read_bytes() == b""
    assert cache.tail(t, missing, ("p", "1", "stdout"), 5) == b""


def test_follow_streams_and_caches(target: Target, tmp_path: Path) -> None:
    t = target.transport
    log = f"{target.dir}/f.out"
    target.sh(f"mkdir -p {target.dir} && echo old > {log}")
    cache = LogCache(tmp_path / "cache")
    key = ("p", "3", "stdout")
    writer = threading.Timer(
        0.3, target.sh, (f"for i in 0 1 2; do echo line $i >> {log}; sleep 0.1; done",)
    )
    writer.start()
    got = b""
    follow = cache.follow(t, log, key, poll_interval=0.05)
    for data in follow:
        got += data
        if got.endswith(b"line 2\n"):
            break
    follow.close()
    writer.join()
    # The writer may run ahead of the first sync: what was not synced was streamed.
    assert got and b"old\nline 0\nline 1\nline 2\n".endswith(got)
    assert cache.path(key).read_bytes() == b"old\nline 0\nline 1\nline 2\n"


def test_keys_map_to_directories(tmp_path: Path) -> None:
    cache = LogCache(tmp_path)
    assert cache.path("prof/inst/12/stdout") == tmp_path / "prof" / "inst" / "12" / "stdout"
    assert cache.path(("a b", "x/y", "1", "stdout")).parent.parent.name == "x%2Fy"
    with pytest.raises(ValueError):
        cache.path("p/../x")


def test_tail_then_follow_a_big_log_skips_the_middle(target: Target, tmp_path: Path) -> None:
    # `kong tail -f`: print the last lines, then follow; the 5 MB before them never moves.
    t = target.transport
    log = f"{target.dir}/bigf.out"
    target.sh(f"mkdir -p {target.dir} && seq -f '%09g {'y' * 89}' 0 49999 > {log}")
    cache = LogCache(tmp_path / "cache")
    key = ("p", "5", "stdout")
    assert cache.tail(t, log, key, 1).startswith(b"000049999 ")
    writer = threading.Timer(0.3, target.sh, (f"echo tail-f-line >> {log}",))
    writer.start()
    follow = cache.follow(t, log, key, poll_interval=0.05)
    got = b""
    for data in follow:
        got += data
        if got.endswith(b"\n"):
            break
    follow.close()
    writer.join()
    assert got == b"tail-f-line\n"
    assert cache.stats.bytes_fetched < 200_000


def test_tail_of_a_1gb_line_reads_only_its_end(target: Target, tmp_path: Path) -> None:
    """A log of 1 GiB without a newline (sparse: only its end is written): the tail is
    its last MiB, read and moved in about that much and held in bounded memory."""
    import tracemalloc

    from kong.logview import DEFAULT_MAX_BYTES

    t = target.transport
    log = f"{target.dir}/oneline.out"
    target.sh(f"mkdir -p {target.dir} && truncate -s 1073741800 {log} && "
              f"printf 'the-end' >> {log}")
    cache = LogCache(tmp_path / "cache")
    before = t.stats.snapshot()
    tracemalloc.start()
    got = cache.tail(t, log, ("p", "9", "stdout"), 5)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # What it reads, moves and holds is bounded; its time is benchmarks/bench_tail.py's.
    assert got.endswith(b"the-end") and len(got) == DEFAULT_MAX_BYTES
    assert peak < 8 * DEFAULT_MAX_BYTES, peak
    assert t.stats.bytes_received - before["bytes_received"] < 2 * DEFAULT_MAX_BYTES


def test_sync_fetches_a_big_log_in_pieces(target: Target, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Each fetch is one bounded command output (under the agent's frame limit)."""
    import kong.remote.logsync as logsync

    monkeypatch.setattr(logsync, "SYNC_CHUNK", 100_000)
    t = target.transport
    log = f"{target.dir}/pieces.out"
    target.sh(f"mkdir -p {target.dir} && seq 1 100000 > {log}")
    expected = target.sh(f"cat {log}").encode()
    cache = LogCache(tmp_path / "cache")
    local = cache.sync(t, log, ("p", "10", "stdout"), finished=True)
    assert local.read_bytes() == expected
    assert cache.stats.fetches == len(expected) // 100_000 + 1
    assert cache.stats.bytes_fetched == len(expected)


def test_kong_tail_of_a_local_job_with_a_1gb_line(tmp_path: Path) -> None:
    """`kong tail` of a local job whose stdout is 1 GiB without a newline: the last MiB,
    in about the time of any kong command (before: killed after 180 s at 357 MB)."""
    import os
    import sys
    import time

    from tests.kongcmd import KONG

    env = {**os.environ, "KONG_HOME": str(tmp_path / "h"), "KONG_AGENT": "0"}
    for words in (["create-job", "--submit", "--", "true"], ["wait", "1"]):
        subprocess.run([*KONG, *words], env=env, check=True, capture_output=True)
    [log] = (tmp_path / "h").glob("jobs/*/1/log/stdout.txt")
    with open(log, "wb") as fh:
        fh.truncate(1 << 30)
        fh.seek(1 << 30)
        fh.write(b"last-bytes")
    start = time.perf_counter()
    # kong tail is started by a small Python of its own, which reports its child's peak
    # memory: a direct child of this test process would count the test process's own
    # pages (shared at the fork, before the exec) as its peak.
    peak_file = tmp_path / "peak"
    measure = ("import resource, subprocess, sys; "
               "p = subprocess.run(sys.argv[2:], stdout=sys.stdout); "
               "open(sys.argv[1], 'w').write("
               "str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
               "sys.exit(p.returncode)")
    out = subprocess.run([sys.executable, "-c", measure, str(peak_file), *KONG, "tail",
                          "-n", "3", "1"], env=env, capture_output=True, timeout=60,
                         check=False)
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith(b"last-bytes") and len(out.stdout) == 1 << 20
    assert elapsed < 10, elapsed  # a kong start-up on a busy machine, not a 1 GB read
    peak_kib = int(peak_file.read_text())
    assert peak_kib < 200 * 1024, peak_kib  # under 200 MB
