"""Bulk, incremental, resumable copies of remote files to this machine (``kong pull``).

Two commands per host, whatever the number of jobs or files:

manifest  one listing (size, mtime in ns) of every regular file under many dirs;
          the caller compares it with its local copy and decides what to fetch.
fetch     one stream of only the files (or the remainders of files) it asks for.

Both run ``transfer_remote.py`` on the host as ``python3 -c``, so nothing is
installed there. A file arrives under a hidden part name that carries the remote
version it belongs to (``.NAME.SIZE-MTIME.kongpart``) and is renamed to its final
name only once every byte is in and its mtime is set to the remote one; a fetch
cut off mid-file leaves the part, and the next plan continues it from its length
if the remote file is still that version. So a final name never holds a half
file, and "unchanged" is a plain size + mtime comparison.

On a transport that streams (SSH) the fetch is one command; on the others (the
local host, the kong agent, whose replies are held in memory) it goes in pieces
of at most ``PIECE_BYTES``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import NamedTuple

from kong.errors import TransportError
from kong.paths import make_private_dir
from kong.remote.base import LocalFile, Transport

#: the most bytes one fetch command returns on a transport that does not stream
PIECE_BYTES = 64 << 20

PART_SUFFIX = ".kongpart"
#: what a part's name holds between the file's name and the suffix: SIZE-MTIME_NS
_VERSION = re.compile(r"[0-9]+-[0-9]+")


@cache
def _remote_source() -> str:
    return (Path(__file__).parent / "transfer_remote.py").read_text()


def _argv(*mode: str) -> list[str]:
    return ["python3", "-c", _remote_source(), *mode]


class RemoteFile(NamedTuple):
    """One regular file under a remote dir, as the manifest saw it (a tuple: a
    listing holds one per file of every job)."""

    rel: str  # path below the dir, with /
    size: int
    mtime_ns: int
    sha256: str | None = None  # only when the manifest was asked for hashes


def manifest(
    transport: Transport, roots: Sequence[str], checksum: bool = False
) -> dict[str, list[RemoteFile] | None]:
    """Every regular file under each remote dir (None: no such dir), one command;
    with ``checksum`` each with its SHA-256 (the host reads every byte)."""
    if not roots:
        return {}
    argv = _argv("manifest", "sha256") if checksum else _argv("manifest")
    result = transport.run_checked(argv, stdin=json.dumps(list(roots)).encode())
    return _parse_listing(result.stdout, roots, transport.label)


def _parse_listing(
    raw: bytes, roots: Sequence[str], label: str
) -> dict[str, list[RemoteFile] | None]:
    try:
        listing = json.loads(raw)
        if not isinstance(listing, list) or len(listing) != len(roots):
            raise ValueError
        out = {root: None if files is None else [
                   RemoteFile(str(f[0]), int(f[1]), int(f[2]), f[3] if len(f) > 3 else None)
                   for f in files]
               for root, files in zip(roots, listing, strict=True)}
    except (ValueError, TypeError, IndexError):
        raise TransportError(f"unreadable file listing from {label}") from None
    for files in out.values():
        for rf in files or ():
            if not _inside(rf.rel):
                raise TransportError(f"the file listing from {label} names {rf.rel!r}, "
                                     f"which is not a path inside the job dir")
    return out


def _inside(rel: str) -> bool:
    """Whether a listed path stays below its dir (a host's listing is not trusted to)."""
    return bool(rel) and "\0" not in rel and not rel.startswith("/") and all(
        part not in ("", ".", "..") for part in rel.split("/"))


@dataclass(frozen=True)
class FetchItem:
    """One remote file to bring to ``local``, from byte ``offset`` (what a part has)."""

    remote: str
    local: str  # a plain path: a pull makes one per file, and pathlib costs more than I/O
    size: int
    mtime_ns: int
    offset: int = 0

    @property
    def part(self) -> Path:
        return part_path(Path(self.local), self.size, self.mtime_ns)

    @property
    def to_move(self) -> int:
        return self.size - self.offset


def part_path(local: Path, size: int, mtime_ns: int) -> Path:
    return local.with_name(f".{local.name}.{size}-{mtime_ns}{PART_SUFFIX}")


def plan_file(remote: str, local_path: str, rf: RemoteFile) -> FetchItem | None:
    """What fetching ``rf`` to ``local_path`` takes: None when the local copy is that
    version (same size and mtime; with a hash in ``rf``, same size and SHA-256)."""
    try:
        st = os.stat(local_path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    else:
        if st.st_size == rf.size:
            if rf.sha256 is not None:
                if _sha256(local_path) == rf.sha256:
                    return None
            elif st.st_mtime_ns == rf.mtime_ns:
                return None
    offset = 0
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        have = part_path(Path(local_path), rf.size, rf.mtime_ns).stat().st_size
        if have <= rf.size:
            offset = have
    return FetchItem(remote, local_path, rf.size, rf.mtime_ns, offset)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class FetchReport:
    """What a fetch did: bytes written, files completed, and files it could not take."""

    bytes_moved: int = 0
    done: list[FetchItem] = field(default_factory=list)
    #: remote file changed while it was read (or since the plan, for a part): fetch again
    changed: list[FetchItem] = field(default_factory=list)
    #: remote file could not be read: (item, why)
    failed: list[tuple[FetchItem, str]] = field(default_factory=list)


class _Reader:
    """Lines and exact byte counts out of an iterator of chunks (read in place: a
    piece of a non-streaming transport is one chunk of up to ``PIECE_BYTES``)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._pos = 0

    def _more(self) -> None:
        chunk = next(self._chunks, None)
        if chunk is None:
            raise TransportError("the file stream ended early")
        rest = self._buf[self._pos:]
        self._buf = rest + chunk if rest else chunk
        self._pos = 0

    def line(self, limit: int = 1 << 16) -> bytes:
        while (end := self._buf.find(b"\n", self._pos)) < 0:
            if len(self._buf) - self._pos > limit:
                raise TransportError("the file stream is out of frame")
            self._more()
        out = self._buf[self._pos:end]
        self._pos = end + 1
        return out

    def copy(self, n: int, write: Callable[[memoryview], object]) -> None:
        while n:
            if self._pos >= len(self._buf):
                self._more()
            take = min(n, len(self._buf) - self._pos)
            write(memoryview(self._buf)[self._pos:self._pos + take])
            self._pos += take
            n -= take


def _drop_stale_parts(
    parent: str, name: str, part_name: str, parts_in: dict[str, set[str]]
) -> None:
    """Make the file's dir, or remove the parts of other versions of the file in it:
    they can never be continued. Each dir is listed once per fetch."""
    names = parts_in.get(parent)
    if names is None:
        try:
            names = {n for n in os.listdir(parent) if n.endswith(PART_SUFFIX)}
        except FileNotFoundError:
            make_private_dir(Path(parent))
            names = set()
        parts_in[parent] = names
    if not names:
        return
    prefix = f".{name}."
    for stale in [n for n in names if n.startswith(prefix) and n != part_name
                  and _VERSION.fullmatch(n[len(prefix):-len(PART_SUFFIX)])]:
        _unlink(f"{parent}/{stale}")
        names.discard(stale)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def fetch(
    transport: Transport,
    items: Sequence[FetchItem],
    progress: Callable[[int], None] | None = None,
) -> FetchReport:
    """Bring ``items`` over in as few commands as the transport allows (see module doc).

    ``progress`` gets the number of bytes written, as they are. A dropped
    connection raises ``ConnectionLost``; what arrived stays in the parts."""
    report = FetchReport()
    for piece in _pieces(transport, items):
        _fetch_piece(transport, piece, report, progress)
    return report


#: one request line: the item, from where, and how many bytes at most (-1: to the end)
_Request = tuple[FetchItem, int, int]


def _pieces(transport: Transport, items: Sequence[FetchItem]) -> Iterator[list[_Request]]:
    if transport.streams:
        yield [(item, item.offset, -1) for item in items]
        return
    piece: list[_Request] = []
    budget = PIECE_BYTES
    for item in items:
        offset = item.offset
        while True:
            take = min(item.size - offset, budget)
            piece.append((item, offset, take if offset + take < item.size else -1))
            budget -= take
            offset += take
            if budget <= 0:
                yield piece
                piece, budget = [], PIECE_BYTES
            if offset >= item.size:
                break
    if piece:
        yield piece


def _fetch_piece(
    transport: Transport,
    piece: list[_Request],
    report: FetchReport,
    progress: Callable[[int], None] | None,
) -> None:
    stdin = json.dumps([[item.remote, offset, limit] for item, offset, limit in piece]).encode()
    reader = _Reader(transport.run_stream(_argv("send"), stdin=stdin))
    _receive(reader, piece, report, progress, transport.label)


def _receive(
    reader: _Reader,
    piece: list[_Request],
    report: FetchReport,
    progress: Callable[[int], None] | None,
    label: str,
) -> None:
    """Write one ``send`` stream's files into their parts, and each whole one to its name."""
    dropped: set[str] = {item.remote for item in report.changed}
    parts_in: dict[str, set[str]] = {}  # local dir -> the part files it had
    for index, (item, offset, limit) in enumerate(piece):
        header = reader.line().split(b" ", 2)
        if len(header) != 3 or int(header[0]) != index:
            raise TransportError(f"the file stream from {label} is out of frame")
        length = int(header[2])
        if length < 0:
            report.failed.append((item, reader.line().decode("utf-8", "replace")))
            continue
        if item.remote in dropped:  # an earlier piece of it was torn: skip the rest
            reader.copy(length, lambda _data: None)
            reader.line()
            continue
        # Plain strings from here on: pathlib costs more than the system calls per file.
        local = item.local
        parent, name = os.path.split(local)
        part_name = f".{name}.{item.size}-{item.mtime_ns}{PART_SUFFIX}"
        part = f"{parent}/{part_name}"
        if offset == item.offset:  # the first bytes of this item in this fetch
            _drop_stale_parts(parent, name, part_name, parts_in)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if offset else os.O_TRUNC)
        fd = os.open(part, flags, 0o600)
        try:
            if os.lseek(fd, 0, os.SEEK_END) != offset:
                raise TransportError(f"{part} changed under the pull")

            def write(data: memoryview, fd: int = fd) -> None:
                done = 0
                while done < len(data):
                    done += os.write(fd, data[done:])
                report.bytes_moved += len(data)
                if progress is not None:
                    progress(len(data))

            reader.copy(length, write)
            ok, size, mtime_ns = (int(x) for x in reader.line().split(b" "))
            complete = os.lseek(fd, 0, os.SEEK_CUR) == size
            if ok and complete and limit < 0:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)
        same_version = (size, mtime_ns) == (item.size, item.mtime_ns)
        if not ok or (not same_version and (offset > 0 or limit >= 0)):
            _unlink(part)  # torn, or a mix of two versions
            report.changed.append(item)
            dropped.add(item.remote)
            continue
        if limit >= 0:
            continue  # more pieces of this file follow
        if not complete:
            _unlink(part)
            report.changed.append(item)
            continue
        os.replace(part, local)
        report.done.append(item if same_version else
                           FetchItem(item.remote, item.local, size, mtime_ns))
    if reader.line() != b"END":
        raise TransportError(f"the file stream from {label} did not end cleanly")


@dataclass(frozen=True)
class TreeRequest:
    """One remote dir to bring whole into ``local``, which holds nothing of it yet."""

    remote: str
    local: Path
    #: names in the dir that do not come (the job's inputs; a dir's covers its files)
    skip: tuple[str, ...] = ()


#: the most a tree's listing line may be (about 40 bytes a file)
_LISTING_LIMIT = 1 << 30


def fetch_trees(
    transport: Transport,
    trees: Sequence[TreeRequest],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    listed: Callable[[dict[str, list[FetchItem] | None]], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> FetchReport:
    """Bring dirs into empty local places in ONE command on a streaming transport: the
    host lists what passes ``include``/``exclude`` and sends it on at once, so there
    is no separate listing round trip and no comparison (there is nothing local to
    compare with). ``listed`` gets, per remote dir, the items that are coming (None:
    no such dir) before their bytes do. Parts, names and mtimes as ``fetch``."""
    assert transport.streams, "fetch_trees needs a transport that streams"
    report = FetchReport()
    if not trees:
        return report
    roots = [t.remote for t in trees]
    stdin = json.dumps({"roots": roots, "skip": [list(t.skip) for t in trees],
                        "include": list(include), "exclude": list(exclude)}).encode()
    reader = _Reader(transport.run_stream(_argv("tree"), stdin=stdin))
    listing = _parse_listing(reader.line(_LISTING_LIMIT), roots, transport.label)
    coming: dict[str, list[FetchItem] | None] = {}
    requests: list[_Request] = []
    for tree in trees:
        files = listing[tree.remote]
        if files is None:
            coming[tree.remote] = None
            continue
        local = str(tree.local)
        items = [FetchItem(f"{tree.remote}/{rf.rel}", f"{local}/{rf.rel}",
                           rf.size, rf.mtime_ns) for rf in files]
        coming[tree.remote] = items
        requests.extend((item, 0, -1) for item in items)
    if listed is not None:
        listed(coming)
    _receive(reader, requests, report, progress, transport.label)
    return report


# Pieces of one big upload: the first makes the file (and its dirs), the rest append.
_FIRST_PIECE = 'mkdir -p -- "${1%/*}" && cat > "$1"'
_NEXT_PIECE = 'cat >> "$1"'
# The whole file is in: its mode and mtime, then its name.
_LAST_PIECE = 'chmod "$2" "$1" && touch -d "@$3" "$1" && mv -f -- "$1" "$4"'


def upload_in_pieces(transport: Transport, remote: str, content: LocalFile, piece: int) -> None:
    """Upload one laptop file bigger than a command's stdin may be (the kong agent's
    limit), one command per ``piece`` bytes, under a temporary name until it is whole."""
    tmp = f"{remote}.kongup"
    with open(content.source, "rb") as fh:
        st = os.fstat(fh.fileno())
        script = _FIRST_PIECE
        while True:
            chunk = fh.read(piece)
            transport.run_checked(["sh", "-c", script, "sh", tmp], stdin=chunk)
            script = _NEXT_PIECE
            if len(chunk) < piece:
                break
    transport.run_checked(["sh", "-c", _LAST_PIECE, "sh", tmp, f"{content.mode:o}",
                           str(int(st.st_mtime)), remote])
