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

from kong.logview import DEFAULT_MAX_BYTES, tail_file, tail_range
from kong.paths import make_private_dir
from kong.remote.base import Transport

try:
    import fcntl
except ImportError:  # Windows: one kong process at a time writes the cache
    fcntl = None  # type: ignore[assignment]

#: a cache key: ``"profile/install/job/stdout"`` or the same as a tuple
LogKey = str | tuple[str, ...]

_COMPLETE = ".complete"
#: bytes of a log fetched per command when syncing
SYNC_CHUNK = 8 << 20
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
        make_private_dir(local.parent)
        with _locked(local) as fh:
            have = os.fstat(fh.fileno()).st_size
            # One byte of overlap tells "nothing new" (the byte comes back) apart
            # from "the remote log was truncated or replaced" (it does not, or differs).
            start = max(have - 1, 0)
            data = self._read(transport, remote_path, start)
            if have:
                fh.seek(have - 1)
                last = fh.read(1)
                if data[:1] != last:
                    fh.truncate(0)
                    data = self._read(transport, remote_path, 0)
                    have = 0
                else:
                    data = data[1:]
            fh.seek(have)
            fh.write(data)
            have += len(data)
            # The rest in pieces: each is one command's output, kept under the agent's
            # frame limit and this process's memory.
            while len(data) >= SYNC_CHUNK - 1:
                data = self._read(transport, remote_path, have)
                fh.write(data)
                have += len(data)
            fh.flush()
            if finished:
                os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600))
        return local

    def _read(self, transport: Transport, remote_path: str, offset: int) -> bytes:
        data = transport.read_range(remote_path, offset, SYNC_CHUNK)
        self.stats.add(len(data))
        return data

    def tail(
        self,
        transport: Transport,
        remote_path: str,
        key: LogKey,
        n_lines: int,
        *,
        finished: bool = False,
        chunk: int = 64 * 1024,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> bytes:
        """The last ``n_lines`` lines of the log (at most its last ``max_bytes``),
        fetching only about that much of its end.

        When the part not yet cached is small, it is synced instead, so the
        cache grows; otherwise the end is read in growing chunks and the cache
        is left alone (it holds a prefix, and the tail is not contiguous with it).
        """
        if n_lines <= 0:
            return b""
        local = self.path(key)
        if self.is_complete(key):
            return tail_file(local, n_lines, max_bytes)[0]
        have = local.stat().st_size if local.exists() else 0
        size = transport.sizes([remote_path]).get(remote_path)
        if size is None:
            return b""
        if size - have <= chunk:
            synced = self.sync(transport, remote_path, key, finished)
            data, self._tail_end[local] = tail_file(synced, n_lines, max_bytes)
            return data

        def read_at(offset: int, length: int) -> bytes:
            piece = transport.read_range(remote_path, offset, length)
            self.stats.add(len(piece))
            return piece

        self._tail_end[local] = size
        return tail_range(read_at, size, n_lines, max_bytes)

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
        make_private_dir(local.parent)
        stream = transport.stream(remote_path, offset, poll_interval)
        try:
            for data in stream:
                self.stats.add(len(data))
                cached = local.stat().st_size if local.exists() else 0
                if cached == offset:
                    with _locked(local) as fh:
                        fh.seek(0, os.SEEK_END)
                        fh.write(data)
                offset += len(data)
                yield data
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[IO[bytes]]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+b") as fh:
        if fcntl is not None:
            # Two kong processes syncing one log must not both append the same bytes.
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield fh
