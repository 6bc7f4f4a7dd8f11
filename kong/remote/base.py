"""The transport interface: how drivers reach the machine their jobs run on.

A driver cannot tell a local transport from an SSH one. Every method is one
round trip to the target host (``stats.round_trips`` counts them), so a bulk
operation is built from a constant number of calls, whatever the number of jobs.
Commands are argv lists, never shell strings: when a driver needs a shell it
passes ``["sh", "-c", script, "sh", *args]`` with the user's words in ``args``.
"""

from __future__ import annotations

import os
import shlex
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kong.errors import TransportError

if TYPE_CHECKING:
    from kong.remote.statusview import Verdict, ViewAnswer


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    def check(self) -> CommandResult:
        """Raise a one-line ``TransportError`` unless the command exited 0."""
        if self.exit_code != 0:
            err = self.stderr.decode("utf-8", errors="replace").strip().splitlines()
            last = err[-1] if err else f"exit code {self.exit_code}"
            raise TransportError(f"`{shlex.join(self.argv)[:120]}` failed: {last}")
        return self


@dataclass(frozen=True)
class LocalFile:
    """An upload's content read from a file on this machine (a job input), rather than
    bytes in memory. The same ``source`` under several remote paths of one upload is
    sent once (the others become hard links of it on the host), so it is ``mode``
    read-only by default: a job that changed it in place would change it for all."""

    source: str
    mode: int = 0o400

    @property
    def size(self) -> int:
        return os.stat(self.source).st_size


#: what an upload writes at a remote path
Upload = bytes | LocalFile


@dataclass
class TransportStats:
    """Counters a test or benchmark can read to prove how much a call cost."""

    round_trips: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    connections_opened: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, round_trips: int = 0, sent: int = 0, received: int = 0) -> None:
        with self._lock:
            self.round_trips += round_trips
            self.bytes_sent += sent
            self.bytes_received += received

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "round_trips": self.round_trips,
                "bytes_sent": self.bytes_sent,
                "bytes_received": self.bytes_received,
                "connections_opened": self.connections_opened,
            }


class Transport(ABC):
    """Runs commands and moves bytes on one target host."""

    stats: TransportStats

    #: a short name for messages, e.g. ``local`` or ``alice@login.example.org:22``
    label: str

    #: whether ``run_stream`` hands output over while the command runs (else it
    #: holds all of it in memory first, so callers keep each command's output small)
    streams: bool = False

    @abstractmethod
    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run ``argv`` on the host and return its result (non-zero exit is not an error).

        Raises ``ConnectionLost`` if the command was cut off: it may have run.
        Raises ``TransportError`` if it could not be started at all: it did not run.
        """

    def shared_query(
        self,
        argv: Sequence[str],
        ids: Sequence[str],
        verdict: Verdict,
        *,
        floor: float,
        cap: float | None = None,
        force: bool = False,
        timeout: float | None = None,
        prompt: bool = True,
        submitted: bool = False,
    ) -> ViewAnswer | None:
        """A status query shared with every kong process of this user (the kong agent's
        view, ``kong.remote.statusview``); None where there is no agent: the caller
        runs ``argv`` itself. ``prompt=False``: never ask for a login code (a listing
        must not), fail instead."""
        return None

    @abstractmethod
    def upload(self, files: Mapping[str, Upload], *, mode: int = 0o600) -> None:
        """Write many files (absolute remote path -> content) in one round trip,
        creating parent directories. Bytes get ``mode``, a ``LocalFile`` its own."""

    @abstractmethod
    def read_range(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read ``length`` bytes (all, if None) of a file from ``offset``.
        Returns b"" if the file does not exist or is shorter than ``offset``."""

    @abstractmethod
    def sizes(self, paths: Sequence[str]) -> dict[str, int | None]:
        """Size in bytes of each file (None where it does not exist), one round trip."""

    @abstractmethod
    def remove_trees(self, paths: Sequence[str]) -> None:
        """``rm -rf`` every path, one round trip. Missing paths are fine."""

    @abstractmethod
    def stream(self, path: str, offset: int = 0, poll_interval: float = 0.5) -> Iterator[bytes]:
        """Yield bytes appended to ``path`` from ``offset`` on, until the caller stops."""

    @abstractmethod
    def home(self) -> str:
        """The absolute home directory on the host (cached after the first call)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the transport may be used again afterwards."""

    def run_stream(self, argv: Sequence[str], *, stdin: bytes | None = None) -> Iterator[bytes]:
        """Yield the stdout of ``argv`` in chunks; ``TransportError`` if it exits non-zero
        (after its output), ``ConnectionLost`` if cut off. This one runs the command to
        its end and yields its output at once; a transport that can do better overrides
        it and sets ``streams``."""
        yield self.run_checked(argv, stdin=stdin).stdout

    def run_checked(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        return self.run(argv, stdin=stdin, timeout=timeout).check()

    def expand(self, path: str) -> str:
        """Turn ``~`` and ``~/x`` into absolute paths on the host."""
        if path == "~":
            return self.home()
        if path.startswith("~/"):
            return self.home().rstrip("/") + path[1:]
        if not path.startswith("/"):
            raise TransportError(f"remote path must be absolute or start with ~/: {path!r}")
        return path
