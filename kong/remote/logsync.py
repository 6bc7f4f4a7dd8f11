"""Lazy job-log fetching: logs stay on the cluster, the laptop caches what it has read.

A cached log is a file under ``cache_dir`` holding a prefix of the remote log.
``sync`` fetches only the bytes past that prefix (one round trip); once a
finished job's log has been synced it is marked complete and never fetched
again. ``tail`` reads the end of a big log without fetching the rest, and
``follow`` streams a running job's log into the cache as it grows.
"""

from __future__ import annotations

import contextlib
import os
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from kong.remote.base import Transport

try:
    import fcntl
except ImportError:  # Windows: one kong process at a time writes the cache
    fcntl = None  # type: ignore[assignment]

#: a cache key: ``"profile/install/job/stdout"`` or the same as a tuple
LogKey = str | tuple[str, ...]

_COMPLETE = ".complete"
_SAFE = "-_.@+=,:~"


@dataclass
class LogCacheStats:
    """What crossed the network for logs; tests read it to prove nothing was refetched."""

    fetches: int = 0
    bytes_fetched: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, nbytes: int) -> None:
        with self._lock:
            self.fetches += 1
            self.bytes_fetched += nbytes


class LogCache:
    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self.stats = LogCacheStats()
        # Where the last ``tail`` of each log ended: ``follow`` goes on from there
        # rather than first fetching everything before it.
        self._tail_end: dict[Path, int] = {}

    def path(self, key: LogKey) -> Path:
        """The cached file of ``key``; each part of the key is one directory level."""
        parts = key.split("/") if isinstance(key, str) else list(key)
        if not parts or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"bad log cache key: {key!r}")
        return self.cache_dir.joinpath(*(urllib.parse.quote(p, safe=_SAFE) for p in parts))

    def is_complete(self, key: LogKey) -> bool:
        local = self.path(key)
        return local.with_name(local.name + _COMPLETE).exists()

    def sync(self, transport: Transport, remote_path: str, key: LogKey, finished: bool) -> Path:
        """Bring the cached copy up to date with one round trip (none once complete)."""
        local = self.path(key)
        marker = local.with_name(local.name + _COMPLETE)
        if marker.exists():
            return local
        local.parent.mkdir(parents=True, exist_ok=True)
        with _locked(local) as fh:
            have = os.fstat(fh.fileno()).st_size
            # One byte of overlap tells "nothing new" (the byte comes back) apart
            # from "the remote log was truncated or replaced" (it does not, or differs).
            start = max(have - 1, 0)
            data = transport.read_range(remote_path, start)
            self.stats.add(len(data))
            if have:
                fh.seek(have - 1)
                last = fh.read(1)
                if data[:1] != last:
                    fh.truncate(0)
                    data = transport.read_range(remote_path, 0)
                    self.stats.add(len(data))
                    have = 0
                else:
                    data = data[1:]
            fh.seek(have)
            fh.write(data)
            fh.flush()
            if finished:
                marker.touch()
        return local

    def tail(
        self,
        transport: Transport,
        remote_path: str,
        key: LogKey,
        n_lines: int,
        *,
        finished: bool = False,
        chunk: int = 64 * 1024,
    ) -> bytes:
        """The last ``n_lines`` lines of the log, fetching only about that much of its end.

        When the part not yet cached is small, it is synced instead, so the
        cache grows; otherwise the end is read in growing chunks and the cache
        is left alone (it holds a prefix, and the tail is not contiguous with it).
        """
        if n_lines <= 0:
            return b""
        local = self.path(key)
        if self.is_complete(key):
            return _last_lines(local.read_bytes(), n_lines)
        have = local.stat().st_size if local.exists() else 0
        size = transport.sizes([remote_path]).get(remote_path)
        if size is None:
            return b""
        if size - have <= chunk:
            synced = self.sync(transport, remote_path, key, finished)
            self._tail_end[local] = synced.stat().st_size
            return _last_lines(synced.read_bytes(), n_lines)
        got = b""
        start = size
        step = chunk
        while start > 0:
            begin = max(start - step, 0)
            piece = transport.read_range(remote_path, begin, start - begin)
            self.stats.add(len(piece))
            got = piece + got
            start = begin
            # n lines need n+1 newlines before them unless the log ends without one.
            newlines = got.count(b"\n")
            if newlines > n_lines:
                break
            # Grow by what the lines seen so far suggest is still missing, at least 4x.
            per_line = len(got) / max(newlines, 1)
            step = max(step * 4, int((n_lines + 1 - newlines) * per_line * 1.25))
        self._tail_end[local] = size
        return _last_lines(got, n_lines)

    def follow(
        self,
        transport: Transport,
        remote_path: str,
        key: LogKey,
        poll_interval: float = 0.5,
        *,
        offset: int | None = None,
    ) -> Iterator[bytes]:
        """Yield what is appended to the log from ``offset`` on, until the caller stops.

        Without ``offset``: from where this cache's last ``tail`` of the log ended,
        else from the end of the cached part (synced first). Bytes that extend
        the cached prefix are cached as they come.
        """
        local = self.path(key)
        if offset is None:
            offset = self._tail_end.get(local)
        if offset is None:
            offset = self.sync(transport, remote_path, key, finished=False).stat().st_size
        stream = transport.stream(remote_path, offset, poll_interval)
        try:
            for data in stream:
                self.stats.add(len(data))
                cached = local.stat().st_size if local.exists() else 0
                if cached == offset:
                    with open(local, "ab") as fh:
                        fh.write(data)
                offset += len(data)
                yield data
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()


def _last_lines(data: bytes, n: int) -> bytes:
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-n:])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[IO[bytes]]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+b") as fh:
        if fcntl is not None:
            # Two kong processes syncing one log must not both append the same bytes.
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield fh
