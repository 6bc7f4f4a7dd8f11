"""Reading a job's log for people: its last lines, what it writes next, a file to page.

``State.tail_log``/``follow_log``/``log_file`` are the way in; the CLI and the REPL
print what these return and know nothing of drivers, transports or caches.

Tails read from the end, in chunks that grow, and never more than ``max_bytes``
(1 MiB by default): a log of 1 GB without a newline is tailed by reading its last
MiB, in bounded memory, whether it is on this machine or on a cluster.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kong.drivers.base import DriverBase
    from kong.model.job import Job

#: the most bytes a tail returns (and reads): the end of a line longer than this
DEFAULT_MAX_BYTES = 1 << 20
_FIRST_CHUNK = 64 * 1024
_LOG_NAMES = ("stdout", "stderr")


def last_lines(data: bytes, n: int) -> bytes:
    """The last ``n`` lines of ``data`` (``\\n``-separated, as tail(1) counts them)."""
    if n <= 0:
        return b""
    pos = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(n):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return data
    return data[pos + 1:]


def tail_range(read_at: Callable[[int, int], bytes], size: int, n: int,
               max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The last ``n`` lines of a file of ``size`` bytes read with ``read_at(offset,
    length)``, reading backwards in growing chunks and at most its last ``max_bytes``."""
    if n <= 0 or size <= 0:
        return b""
    floor = max(size - max_bytes, 0)
    pieces: list[bytes] = []  # newest first; joined once (prepending would be quadratic)
    newlines = 0
    start = size
    step = _FIRST_CHUNK
    while start > floor:
        begin = max(start - step, floor)
        piece = read_at(begin, start - begin)
        if not piece:
            break
        pieces.append(piece)
        newlines += piece.count(b"\n")
        start = begin
        # n lines need n+1 newlines before them unless the log ends without one.
        if newlines > n:
            break
        # Grow by what the lines seen so far suggest is still missing, at least 4x.
        per_line = (size - start) / max(newlines, 1)
        step = min(max(step * 4, int((n + 1 - newlines) * per_line * 1.25)), 16 << 20)
    return last_lines(b"".join(reversed(pieces)), n)


def tail_file(path: str | Path, n: int, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[bytes, int]:
    """The last ``n`` lines of a local file (at most ``max_bytes``) and its size; a
    missing file is empty."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return b"", 0
    try:
        size = os.fstat(fd).st_size
        return tail_range(lambda off, length: os.pread(fd, length, off), size, n,
                          max_bytes), size
    finally:
        os.close(fd)


def _check(which: str) -> None:
    if which not in _LOG_NAMES:
        from kong.errors import KongError

        raise KongError(f"no log named {which!r} (expected stdout or stderr)")


def _is_local(driver: DriverBase) -> bool:
    from kong.remote.local import LocalTransport

    return isinstance(driver.transport, LocalTransport)


def tail(job: Job, which: str = "stdout", lines: int = 10,
         max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The last ``lines`` lines of a job's log, reading only its end (one or two round
    trips for a cluster job)."""
    from kong.remote.logsync import LogCache

    _check(which)
    driver = job._driver()
    path = driver.log_path(job, which)
    if _is_local(driver):
        return tail_file(path, lines, max_bytes)[0]
    cache = LogCache(driver.config.data_dir / "logcache")
    return cache.tail(driver.transport, path, driver.log_cache_key(job, which), lines,
                      finished=job.status.finished, max_bytes=max_bytes)


def follow(job: Job, which: str = "stdout", *, lines: int = 10,
           refresh: Callable[[Job], object] | None = None,
           poll_interval: float = 0.2) -> Iterator[bytes]:
    """The last ``lines`` lines of the log, then what the job writes, until it has
    finished (a local job, checked with ``refresh`` about once a second) or the caller
    stops iterating (a cluster job is followed until then)."""
    from kong.remote.logsync import LogCache

    _check(which)
    driver = job._driver()
    path = driver.log_path(job, which)
    if not _is_local(driver):
        cache = LogCache(driver.config.data_dir / "logcache")
        key = driver.log_cache_key(job, which)
        yield cache.tail(driver.transport, path, key, lines, finished=job.status.finished)
        if not job.status.finished:
            yield from cache.follow(driver.transport, path, key)
        return
    data, offset = tail_file(path, lines)
    yield data
    finished = job.status.finished or job.status.name == "CREATED"
    last_check = time.monotonic()
    while True:
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(8 << 20)
        except FileNotFoundError:
            data = b""
        if data:
            offset += len(data)
            yield data
            continue
        if finished:
            return
        time.sleep(poll_interval)
        if refresh is not None and time.monotonic() - last_check > 1.0:
            last_check = time.monotonic()
            refresh(job)
            # One more read after the job ended catches its last lines.
            finished = job.status.finished


def log_file(job: Job, which: str = "stdout") -> Path | None:
    """A local file holding the whole log (a cluster log synced to the cache first,
    fetching only what is not cached yet); None when the job has no such log yet."""
    _check(which)
    driver = job._driver()
    path = Path(driver.log_path(job, which)) if _is_local(driver) else driver.sync_log(job, which)
    return path if path.exists() else None


__all__ = ["DEFAULT_MAX_BYTES", "follow", "last_lines", "log_file", "tail", "tail_file",
           "tail_range"]
