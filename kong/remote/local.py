"""The local transport: commands run as subprocesses on this machine."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from kong.errors import TransportError
from kong.paths import make_private_dir
from kong.remote.base import CommandResult, LocalFile, Transport, TransportStats, Upload


class LocalTransport(Transport):
    label = "local"

    def __init__(self, umask: int = 0o077) -> None:
        self.stats = TransportStats()
        #: of every command it runs (the local runner, and so the jobs): private files
        self.umask = umask

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        self.stats.add(round_trips=1, sent=len(stdin or b""))
        try:
            proc = subprocess.run(
                list(argv),
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=timeout,
                check=False,
                umask=self.umask,
            )
        except FileNotFoundError as exc:
            raise TransportError(f"command not found: {argv[0]}") from exc
        except subprocess.TimeoutExpired as exc:
            raise TransportError(f"`{argv[0]}` timed out after {timeout} s") from exc
        self.stats.add(received=len(proc.stdout) + len(proc.stderr))
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def upload(self, files: Mapping[str, Upload], *, mode: int = 0o600) -> None:
        self.stats.add(round_trips=1, sent=sum(
            c.size if isinstance(c, LocalFile) else len(c) for c in files.values()))
        for path, content in files.items():
            if isinstance(content, LocalFile):
                _copy_local_file(Path(path), content)
                continue
            target = Path(path)
            make_private_dir(target.parent)
            # A name of its own per writer: two kong processes may upload one file at once.
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(content)
            except OSError as exc:  # a full disk: leave no partial file behind
                os.unlink(tmp_name)
                raise TransportError(f"cannot write {target}: {exc.strerror}") from None
            os.chmod(tmp_name, mode)
            os.replace(tmp_name, target)

    def read_range(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        self.stats.add(round_trips=1)
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read() if length is None else fh.read(length)
        except FileNotFoundError:
            return b""
        self.stats.add(received=len(data))
        return data

    def sizes(self, paths: Sequence[str]) -> dict[str, int | None]:
        self.stats.add(round_trips=1)
        result: dict[str, int | None] = {}
        for path in paths:
            try:
                result[path] = os.stat(path).st_size
            except FileNotFoundError:
                result[path] = None
        return result

    def remove_trees(self, paths: Sequence[str]) -> None:
        self.stats.add(round_trips=1)
        for path in paths:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                os.unlink(path)

    def stream(self, path: str, offset: int = 0, poll_interval: float = 0.5) -> Iterator[bytes]:
        while True:
            chunk = self.read_range(path, offset)
            if chunk:
                offset += len(chunk)
                yield chunk
            else:
                time.sleep(poll_interval)

    def home(self) -> str:
        return os.path.expanduser("~")


def _copy_local_file(target: Path, content: LocalFile) -> None:
    """Copy a job input into place under a temporary name, then rename it."""
    make_private_dir(target.parent)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        shutil.copyfile(content.source, tmp_name)
        shutil.copystat(content.source, tmp_name)
        os.chmod(tmp_name, content.mode)
        os.replace(tmp_name, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise TransportError(f"cannot copy input {content.source} to {target}: "
                             f"{exc.strerror}") from None
