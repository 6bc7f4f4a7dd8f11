"""Database files kong cannot use are refused in one line, and nothing is changed;
a read-only database still lists; a full disk still lets ``rm`` free space.

The read-only and full-disk cases use a real filesystem: a small tmpfs, remounted
read-only or filled up (this needs root; elsewhere those tests are skipped)."""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kong import db
from kong.db import DatabaseError
from kong.errors import KongError
from kong.state import State
from tests.oneline import kong, ok, refused


def _make_db_with_a_job(home: Path) -> Path:
    ok(kong("mkdir", "/a"))
    ok(kong("create-job", "-f", "/a", "--", "echo", "hi"))
    return home / "kong.sqlite"


def _refused_everywhere(home: Path, *words: str) -> None:
    before = (home / "kong.sqlite").read_bytes()
    refused(kong("ls", "/a"), *words)
    refused(kong("mkdir", "/b"), *words)
    with pytest.raises(DatabaseError) as info:
        State.get_instance()
    for word in words:
        assert word in str(info.value)
    db.dispose()
    assert (home / "kong.sqlite").read_bytes() == before  # nothing changed


def test_truncated_database(kong_home: Path) -> None:
    path = _make_db_with_a_job(kong_home)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    _refused_everywhere(kong_home, f"the database {path} is damaged", "restore it from a backup")


def test_random_bytes_database(kong_home: Path) -> None:
    path = kong_home / "kong.sqlite"
    path.write_bytes(bytes(range(256)) * 64)
    _refused_everywhere(kong_home, f"the database {path} is damaged (file is not a database)")


def test_empty_database_file_is_refused_not_reinitialised(kong_home: Path) -> None:
    path = kong_home / "kong.sqlite"
    path.touch()
    _refused_everywhere(kong_home, f"the database {path} is empty (0 bytes)", "install id")
    assert path.stat().st_size == 0


def test_schema_newer_than_this_kong(kong_home: Path) -> None:
    path = _make_db_with_a_job(kong_home)
    raw = sqlite3.connect(path)
    raw.execute("UPDATE alembic_version SET version_num = '0002'")
    raw.commit()
    raw.close()
    _refused_everywhere(
        kong_home, "this database was written by a newer kong (schema 0002); upgrade kong")


def test_kong_home_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home-file"
    home.write_text("not a dir\n")
    monkeypatch.setenv("KONG_HOME", str(home))
    refused(kong("ls"), f"{home} is not a directory", "KONG_HOME")
    with pytest.raises(DatabaseError, match="is not a directory"):
        State.get_instance()
    assert home.read_text() == "not a dir\n"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs of this test's own (needs root)."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs",
                           str(mount)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_read_only_database_lists_and_refuses_changes(
    tmpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONG_HOME", str(tmpfs))
    _make_db_with_a_job(tmpfs)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    out = ok(kong("ls", "/a"))
    assert "echo hi" in out and "CREATED" in out
    assert "job_id" in ok(kong("info", "1"))
    for args in (["mkdir", "/b"], ["create-job", "--", "true"], ["rm", "-y", "1"],
                 ["submit", "1"], ["mv", "1", "/"]):
        refused(kong(*args), "the database is read-only", "listing works, changes do not")
    state = State.get_instance()
    _folders, jobs = state.ls("/a")
    assert [j.command for j in jobs] == ["echo hi"]
    with pytest.raises(DatabaseError, match="read-only"):
        state.mkdir("/c")
    with pytest.raises(DatabaseError, match="read-only"):
        state.rm("1")
    assert "echo hi" in ok(kong("ls", "/a"))


def _fill(mount: Path) -> None:
    """Write until the filesystem says ENOSPC."""
    fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_full_disk_submit_is_one_line_and_rm_frees_space(
    tmpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONG_HOME", str(tmpfs))
    ok(kong("mkdir", "/a"))
    ok(kong("create-job", "-f", "/a", "--", "head -c 300000 /dev/zero"))
    ok(kong("submit", "1"))
    ok(kong("wait", "1", "-t", "60"))
    ok(kong("create-job", "-f", "/a", "--", "echo", "two"))
    _fill(tmpfs)
    # The submit's first write (its intent, in the database) or its upload of the job
    # script meets the full disk: either way one line that says so, nothing submitted.
    full = r"No space left on device|database or disk is full"
    line = refused(kong("submit", "2"))
    assert re.search(full, line), line
    state = State.get_instance()
    with pytest.raises(KongError, match=full):
        state.submit_job(2)
    assert state.get_jobs(2)[0].status.name == "CREATED"
    db.dispose()  # on a full disk this process holds the database alone: let go of it
    out = ok(kong("ls", "/a"))
    assert [line.split()[2] for line in out.splitlines()[1:]] == ["COMPLETED", "CREATED"]
    # rm must still work on a full disk, and frees the space of the job's files
    assert ok(kong("rm", "-y", "1")).strip() == "removed"
    out = ok(kong("ls", "/a"))
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["2"]
    # and with the space it freed, the other job can be submitted now
    ok(kong("submit", "2"))
