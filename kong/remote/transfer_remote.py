#!/usr/bin/env python3
"""kong's file sender for ``kong pull``: runs on the job host, standard library only.

It is passed as ``python3 -c SOURCE MODE`` (nothing is installed on the host) and
reads its request as JSON on stdin:

    manifest   stdin ["/abs/root", ...]
               stdout one JSON list, per root either null (no such dir) or
               [[relative path, size, mtime in ns], ...] of every regular file below it
               (``manifest sha256``: each entry with the file's SHA-256 after them)
    send       stdin [["/abs/file", offset, limit], ...] (limit -1: to the end)
               stdout per file a header line ``INDEX OFFSET LENGTH\\n`` (LENGTH -1: the
               file cannot be read, then an error line follows), LENGTH bytes, then a
               trailer line ``OK SIZE MTIME_NS\\n``; OK is 1 when the file's size and
               mtime were the same before and after reading (else the bytes may be
               torn and the receiver drops them); a last line ``END\\n``.
    tree       stdin {"roots": [...], "skip": [[name, ...] per root], "include": [glob],
               "exclude": [glob]}: a pull into an empty destination in one command.
               stdout the manifest of the files that pass the filters (one JSON line,
               as ``manifest``), then all of them as ``send`` streams them, in that
               order (INDEX counts over every root).

Sizes and mtimes come from ``fstat`` of the open file, so what the header
announces is exactly what follows (a file that shrank meanwhile is padded with
zeros and flagged, never cut short: the stream stays in frame).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import stat
import sys
from collections.abc import Sequence
from typing import Any

CHUNK = 1 << 20


def sha256(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(CHUNK), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def manifest(roots: list[str], with_hash: bool) -> list[list[list[object]] | None]:
    out: list[list[list[object]] | None] = []
    for root in roots:
        if not os.path.isdir(root):
            out.append(None)
            continue
        files: list[list[object]] = []
        _walk(root, "", files, with_hash)
        out.append(files)
    return out


def _walk(path: str, rel: str, files: list[list[object]], with_hash: bool) -> None:
    """Regular files below ``path`` in name order; links, sockets, fifos are no results."""
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return  # went away (or unreadable) while we looked
    for entry in entries:
        name = rel + entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                _walk(entry.path, name + "/", files, with_hash)
                continue
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            item: list[object] = [name, st.st_size, st.st_mtime_ns]
            if with_hash:
                item.append(sha256(entry.path))
            files.append(item)


def matches(rel: str, patterns: Sequence[str]) -> bool:
    """rsync-like: a pattern without / matches the base name anywhere; one with / the
    whole path below the output dir (kong.staging filters its plan with this too)."""
    base = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, p) if "/" in p else fnmatch.fnmatchcase(base, p)
               for p in patterns)


def wanted(rel: str, skip: Sequence[str], include: Sequence[str],
           exclude: Sequence[str]) -> bool:
    """Whether a pull takes the file: not one of the job's inputs (``skip``: names in
    the job dir, a dir's name covers what is below it), and through the globs."""
    if any(rel == name or rel.startswith(name + "/") for name in skip):
        return False
    if include and not matches(rel, include):
        return False
    return not (exclude and matches(rel, exclude))


def tree(request: dict[str, Any]) -> None:
    roots: list[str] = [str(r) for r in request["roots"]]
    skips: list[list[str]] = request["skip"]
    include = [str(p) for p in request.get("include", [])]
    exclude = [str(p) for p in request.get("exclude", [])]
    listing = manifest(roots, False)
    sends: list[list[object]] = []
    for i, files in enumerate(listing):
        if files is None:
            continue
        skip = [str(n) for n in skips[i]]
        files[:] = [f for f in files if wanted(str(f[0]), skip, include, exclude)]
        sends.extend([f"{roots[i]}/{f[0]}", 0, -1] for f in files)
    out = sys.stdout.buffer
    out.write(json.dumps(listing, separators=(",", ":")).encode() + b"\n")
    send(sends)


def send(requests: list[list[object]]) -> None:
    write = sys.stdout.buffer.write
    for index, (path, offset, limit) in enumerate(requests):
        assert isinstance(path, str) and isinstance(offset, int) and isinstance(limit, int)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below, after the trailer
        except OSError as exc:
            write(b"%d %d -1\n%s\n" % (index, offset, str(exc).encode("utf-8", "replace")
                                        .replace(b"\n", b" ")))
            continue
        with fh:
            before = os.fstat(fh.fileno())
            length = max(0, before.st_size - offset)
            if limit >= 0:
                length = min(length, limit)
            write(b"%d %d %d\n" % (index, offset, length))
            fh.seek(offset)
            left = length
            while left:
                data = fh.read(min(CHUNK, left))
                if not data:
                    break
                write(data)
                left -= len(data)
            torn = left > 0
            while left:  # the file shrank: pad to keep the stream in frame
                pad = min(CHUNK, left)
                write(b"\0" * pad)
                left -= pad
            after = os.fstat(fh.fileno())
            ok = not torn and (after.st_size, after.st_mtime_ns) == (
                before.st_size, before.st_mtime_ns)
            write(b"%d %d %d\n" % (int(ok), before.st_size, before.st_mtime_ns))
    write(b"END\n")
    sys.stdout.buffer.flush()


def main() -> None:
    request = json.load(sys.stdin)
    if sys.argv[1] == "manifest":
        with_hash = sys.argv[2:] == ["sha256"]
        json.dump(manifest(request, with_hash), sys.stdout, separators=(",", ":"))
    elif sys.argv[1] == "send":
        send(request)
    elif sys.argv[1] == "tree":
        tree(request)
    else:
        sys.exit("usage: transfer_remote.py manifest|send|tree < request.json")


if __name__ == "__main__":
    main()
