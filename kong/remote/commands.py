"""Transports built on one primitive, running a command line on the host.

Every operation of the ``Transport`` interface beyond ``run`` is one remote
command built from an argv with ``shlex.join``; bulk data (file contents, path
lists) travels on stdin, never on the command line, because the remote login
shell receives the whole command line as one argument of at most 128 KiB.
``SSHTransport`` (in-process pool) and ``AgentTransport`` (the kong agent) share
these helpers. No asyncssh here: an agent client never imports it.
"""

from __future__ import annotations

import io
import os
import posixpath
import shlex
import tarfile
import time
from collections.abc import Mapping, Sequence

from kong.errors import TransportError
from kong.remote.base import LocalFile, Transport, Upload

#: Linux MAX_ARG_STRLEN (32 pages) including the terminating NUL: sshd passes the
#: command line to ``$SHELL -c`` as one argument, and execve refuses longer ones.
MAX_COMMAND_BYTES = 128 * 1024 - 1

_READ_SCRIPT = 'test -f "$1" || exit 0; tail -c +"$2" -- "$1"'
_SIZES_SCRIPT = (
    'for p; do s=-; if [ -f "$p" ]; then s=$(wc -c 2>/dev/null < "$p") || s=-; fi; '
    'echo "$s"; done'
)


#: what kong's commands (and the jobs they start) run under on a host: files 0600,
#: dirs 0700, whatever the login's own umask; a profile's ``umask:`` may relax it
DEFAULT_UMASK = "077"


def command_line(argv: Sequence[str], umask: str | None = None) -> str:
    """The one string sent to sshd for ``argv``, refused if the remote side cannot take it;
    preceded by ``umask UMASK;`` when given (sh, bash, zsh, csh and fish all take that)."""
    if not argv:
        raise TransportError("empty command")
    line = shlex.join(argv)
    if umask is not None:
        if not umask.isdigit():
            raise TransportError(f"bad umask {umask!r}")
        line = f"umask {umask}; {line}"
    size = len(line.encode("utf-8", errors="surrogateescape"))
    if size > MAX_COMMAND_BYTES:
        raise TransportError(
            f"command line of {size} bytes is over the remote limit of 128 KiB "
            f"(MAX_ARG_STRLEN): pass bulk data on stdin instead (`{line[:60]}...`)"
        )
    return line


class CommandTransport(Transport):
    """upload, read_range, sizes and remove_trees, each one ``run`` of a command."""

    umask: str = DEFAULT_UMASK

    def upload(self, files: Mapping[str, Upload], *, mode: int = 0o600) -> None:
        self.upload_tar(files, mode=mode, sent={})

    def upload_tar(
        self, files: Mapping[str, Upload], *, mode: int, sent: dict[str, str]
    ) -> None:
        """``upload`` as one tar stream; ``sent`` maps laptop files to the remote path
        (without its leading /) that already has their bytes, from this call or an
        earlier one of the same upload: those become hard links."""
        if not files:
            return
        buf = io.BytesIO()
        now = time.time()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path, content in files.items():
                remote = self.expand(path)
                info = tarfile.TarInfo(remote.lstrip("/"))
                if isinstance(content, LocalFile):
                    _add_local_file(tar, info, content, sent)
                    continue
                info.size = len(content)
                info.mode = mode
                info.mtime = int(now)
                tar.addfile(info, io.BytesIO(content))
        # -p: the given mode exactly, not filtered by the remote umask; as root,
        # --no-same-owner keeps files owned by the login user rather than uid 0 of the tar.
        argv = ["tar", "-x", "-p", "--no-same-owner", "-f", "-", "-C", "/"]
        self.run_checked(argv, stdin=buf.getvalue())

    def read_range(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        if length is not None and length <= 0:
            return b""
        script = _READ_SCRIPT + ("" if length is None else ' | head -c "$3"')
        argv = ["sh", "-c", script, "sh", self.expand(path), str(offset + 1)]
        if length is not None:
            argv.append(str(length))
        return self.run_checked(argv).stdout

    def sizes(self, paths: Sequence[str]) -> dict[str, int | None]:
        if not paths:
            return {}
        remote = [self.expand(p) for p in paths]
        stdin = b"".join(p.encode("utf-8", errors="surrogateescape") + b"\0" for p in remote)
        out = self.run_checked(["xargs", "-0", "sh", "-c", _SIZES_SCRIPT, "sh"], stdin=stdin)
        lines = out.stdout.decode("ascii", errors="replace").split()
        if len(lines) != len(paths):
            raise TransportError(
                f"size query on {self.label} returned {len(lines)} answers for {len(paths)} paths"
            )
        return {p: (None if s == "-" else int(s)) for p, s in zip(paths, lines, strict=True)}

    def remove_trees(self, paths: Sequence[str]) -> None:
        if not paths:
            return
        remote = [self.expand(p) for p in paths]
        for p in remote:
            if posixpath.normpath(p) in ("/", "//"):
                raise TransportError(f"refusing to remove {p!r} on {self.label}")
        stdin = b"".join(p.encode("utf-8", errors="surrogateescape") + b"\0" for p in remote)
        self.run_checked(["xargs", "-0", "rm", "-rf", "--"], stdin=stdin)


def _add_local_file(
    tar: tarfile.TarFile, info: tarfile.TarInfo, content: LocalFile, sent: dict[str, str]
) -> None:
    """A laptop file as a tar member: its bytes the first time in this upload, a hard
    link to that member after (one copy on the wire for a file many jobs share)."""
    key = os.path.realpath(content.source)
    info.mode = content.mode
    first = sent.get(key)
    if first is not None:
        info.type = tarfile.LNKTYPE
        info.linkname = first
        tar.addfile(info)
        return
    try:
        with open(content.source, "rb") as fh:
            st = os.fstat(fh.fileno())
            info.size = st.st_size
            info.mtime = int(st.st_mtime)
            tar.addfile(info, fh)
    except OSError as exc:
        raise TransportError(f"cannot read input {content.source}: {exc.strerror}") from None
    sent[key] = info.name
