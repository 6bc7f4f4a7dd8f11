"""Private by default: the checks and helpers that keep a user's kong files their own.

Like OpenSSH with ``~/.ssh``, kong refuses to start from a place another user
could have changed: a config file, KONG_HOME, data dir or local jobs dir that
someone else owns or can write (directly, or through a parent directory that
is neither sticky nor owned by root or this user). Whoever can write there can
plant a config, a database or a local runner script that kong would then run
as this user. The error names the path and the command that fixes it.

What kong creates itself is made private from the start: directories 0700
(each missing component, not only the last), files 0600.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from kong.errors import KongError


class UnsafePath(KongError):
    """A path kong would trust can be changed by another user: kong does not start."""


def make_private_dir(path: Path) -> Path:
    """Create ``path`` and every missing parent with mode 0700 (existing ones are left
    as they are; ``Path.mkdir(parents=True)`` would give the parents the umask's mode)."""
    missing: list[Path] = []
    current = Path(path)
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        # Made meanwhile by another kong process: fine, it is checked like any other.
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
    return Path(path)


def _owner_ok(st: os.stat_result, uid: int) -> bool:
    return st.st_uid in (uid, 0)


def problem(path: Path, *, ancestor: bool = False) -> str | None:
    """Why another user could change ``path`` (None when nobody can, or it does not
    exist). An ancestor directory may be sticky and world-writable, as ``/tmp`` is."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be checked ({exc.strerror})"
    uid = os.getuid()
    if not _owner_ok(st, uid):
        return (f"belongs to uid {st.st_uid}, not to you (uid {uid}); make your own "
                f"(or, as root, `chown {uid} {path}`)")
    if st.st_mode & 0o022:
        if ancestor and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
            return None  # sticky: others cannot rename or replace what is ours in it
        if not ancestor and st.st_uid == uid:
            return f"is writable by other users: run `chmod go-w {path}`"
        return f"is writable by other users: run `chmod go-w {path}` (as its owner)"
    return None


def check_trusted(path: Path, what: str) -> None:
    """Raise ``UnsafePath`` if another user can change ``path`` or any directory above
    it (which would let them swap ``path`` for their own)."""
    path = Path(path).absolute()
    reason = problem(path)
    if reason is not None:
        raise UnsafePath(f"refusing to use {what} {path}: it {reason}")
    real = Path(os.path.realpath(path))
    for parent in real.parents:
        reason = problem(parent, ancestor=True)
        if reason is not None:
            raise UnsafePath(f"refusing to use {what} {path}: its parent {parent} {reason}")


def tighten(paths: Iterable[Path]) -> None:
    """Take group/world access away from kong's own directories (created 0755 by older
    kong versions); only those this user owns, and never through a symlink."""
    uid = os.getuid()
    for path in paths:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == uid and st.st_mode & 0o077:
            os.chmod(path, 0o700)


def check_start_up(config_file: Path, data_dir: Path, kong_home: Path | None) -> None:
    """What every kong process checks before it reads its config: the config file, its
    directory, KONG_HOME, the data dir and the local jobs dir (the local runner lives
    there). Raises ``UnsafePath``."""
    if kong_home is not None:
        if kong_home.exists() and not kong_home.is_dir():
            from kong.db import DatabaseError

            raise DatabaseError(f"{kong_home} is not a directory, so KONG_HOME cannot be "
                                "there (kong keeps its config, database and job dirs in it)")
        check_trusted(kong_home, "KONG_HOME")
    check_trusted(config_file.parent, "the config dir")
    check_trusted(config_file, "the config file")
    check_trusted(data_dir, "the data dir")
    jobs = data_dir / "jobs"
    check_trusted(jobs, "the local jobs dir")
    if jobs.is_dir():
        for install in jobs.iterdir():
            # Each install dir holds a local_runner-*.py that `kong ls -u` runs.
            for path in (install, *install.glob("local_runner-*.py")):
                reason = problem(path)
                if reason is not None:
                    raise UnsafePath(f"refusing to use the local jobs dir: {path} {reason}")
    tighten([p for p in (data_dir, jobs, data_dir / "logcache") if p.is_dir()])


__all__ = ["UnsafePath", "check_start_up", "check_trusted", "make_private_dir", "problem",
           "tighten"]
