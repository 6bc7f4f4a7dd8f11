"""Lazy log sync: only bytes not yet cached cross the network (real sshd and local)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kong.remote.base import Transport
from kong.remote.local import LocalTransport
from kong.remote.logsync import LogCache
from kong.remote.pool import SSHPool
from kong.remote.ssh import ssh_transport
from tests.test_ssh_transport import HostSshd, host_sshd, pytestmark  # noqa: F401


@pytest.fixture(params=["ssh", "local"])
def transport(request: pytest.FixtureRequest, host_sshd: HostSshd) -> Iterator[Transport]:  # noqa: F811
    if request.param == "local":
        yield LocalTransport()
        return
    pool = SSHPool()
    yield ssh_transport(
        host_sshd.host,
        port=host_sshd.port,
        user=host_sshd.user,
        identity_file=host_sshd.identity_file,
        known_hosts=host_sshd.known_hosts,
        config=[os.devnull],
        pool=pool,
    )
    pool.shutdown()


def test_tail_of_a_50mb_log_moves_only_the_tail(transport: Transport, tmp_path: Path) -> None:
    log = tmp_path / "big.out"
    line = b"x" * 99 + b"\n"
    with open(log, "wb") as fh:
        for i in range(50 * 10_000):
            fh.write(b"%09d " % i + line[10:])
    assert log.stat().st_size == 50_000_000
    cache = LogCache(tmp_path / "cache")
    before = transport.stats.snapshot()

    got = cache.tail(transport, str(log), ("p", "1", "stdout"), 20)

    lines = got.splitlines()
    assert len(lines) == 20
    assert lines[-1].startswith(b"000499999 ")
    assert lines[0].startswith(b"000499980 ")
    moved = transport.stats.bytes_received - before["bytes_received"]
    assert moved < 100_000, moved
    assert cache.stats.bytes_fetched < 100_000
    assert transport.stats.round_trips - before["round_trips"] <= 3

    # A tail longer than the first chunk reads further back in growing chunks.
    got = cache.tail(transport, str(log), ("p", "1", "stdout"), 5_000)
    assert len(got.splitlines()) == 5_000
    assert got.splitlines()[0].startswith(b"000495000 ")
    assert cache.stats.bytes_fetched < 1_500_000


def test_growing_log_fetches_only_new_bytes(transport: Transport, tmp_path: Path) -> None:
    log = tmp_path / "grow.out"
    log.write_bytes(b"a" * 999_999 + b"\n")
    cache = LogCache(tmp_path / "cache")
    key = "prof/inst/7/stdout"

    local = cache.sync(transport, str(log), key, finished=False)
    assert local.read_bytes() == log.read_bytes()
    assert cache.stats.bytes_fetched == 1_000_000

    with open(log, "ab") as fh:
        fh.write(b"new line\n")
    fetched, rx = cache.stats.bytes_fetched, transport.stats.bytes_received
    cache.sync(transport, str(log), key, finished=False)
    assert local.read_bytes() == log.read_bytes()
    # The new bytes plus the one byte of overlap that detects a replaced log.
    assert cache.stats.bytes_fetched - fetched == len(b"new line\n") + 1
    assert transport.stats.bytes_received - rx == len(b"new line\n") + 1

    # Nothing new: one byte.
    fetched = cache.stats.bytes_fetched
    cache.sync(transport, str(log), key, finished=False)
    assert cache.stats.bytes_fetched - fetched == 1

    # Finished: fetched once more, then never again.
    with open(log, "ab") as fh:
        fh.write(b"done\n")
    cache.sync(transport, str(log), key, finished=True)
    assert local.read_bytes() == log.read_bytes()
    trips = transport.stats.round_trips
    for _ in range(3):
        cache.sync(transport, str(log), key, finished=True)
    assert transport.stats.round_trips == trips
    assert cache.is_complete(key)
    # The tail of a complete log is read from the cache.
    assert cache.tail(transport, str(log), key, 2) == b"new line\ndone\n"
    assert transport.stats.round_trips == trips


def test_replaced_log_is_refetched(transport: Transport, tmp_path: Path) -> None:
    log = tmp_path / "re.out"
    log.write_bytes(b"first run output\n")
    cache = LogCache(tmp_path / "cache")
    key = ("p", "9", "stderr")
    cache.sync(transport, str(log), key, finished=False)
    log.write_bytes(b"second\n")
    local = cache.sync(transport, str(log), key, finished=False)
    assert local.read_bytes() == b"second\n"


def test_missing_log_is_empty(transport: Transport, tmp_path: Path) -> None:
    cache = LogCache(tmp_path / "cache")
    local = cache.sync(transport, str(tmp_path / "nope"), ("p", "1", "stdout"), finished=False)
    assert local.read_bytes() == b""
    assert cache.tail(transport, str(tmp_path / "nope"), ("p", "1", "stdout"), 5) == b""


def test_follow_streams_and_caches(transport: Transport, tmp_path: Path) -> None:
    log = tmp_path / "f.out"
    log.write_bytes(b"old\n")
    cache = LogCache(tmp_path / "cache")
    key = ("p", "3", "stdout")

    def writer() -> None:
        for i in range(3):
            time.sleep(0.2)
            with open(log, "ab") as fh:
                fh.write(b"line %d\n" % i)

    threading.Thread(target=writer).start()
    got = b""
    follow = cache.follow(transport, str(log), key, poll_interval=0.05)
    for data in follow:
        got += data
        if got.endswith(b"line 2\n"):
            break
    follow.close()
    # The writer may have run ahead of the first sync: what was not synced was streamed.
    assert b"old\nline 0\nline 1\nline 2\n".endswith(got) and len(got) >= len(b"line 2\n")
    assert cache.path(key).read_bytes() == log.read_bytes()


def test_keys_map_to_directories(tmp_path: Path) -> None:
    cache = LogCache(tmp_path)
    assert cache.path("prof/inst/12/stdout") == tmp_path / "prof" / "inst" / "12" / "stdout"
    assert cache.path(("a b", "x/y", "1", "stdout")).parent.parent.name == "x%2Fy"
    with pytest.raises(ValueError):
        cache.path("p/../x")
