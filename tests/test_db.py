"""The SQLite database: private file, WAL, migrations that build exactly the models' schema."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from kong import db
from kong.config import Config
from kong.model import Base
from kong.state import State

MIGRATIONS = Path(db.__file__).parent / "migrations"


def _db_file(home: Path) -> Path:
    return home / "kong.sqlite"


def test_database_file_is_private(kong_home: Path) -> None:
    os.umask(0o022)  # a permissive umask must not leak into the database's mode
    state = State.get_instance()
    state.create_job(command="true")  # a write, so the WAL files exist
    path = _db_file(kong_home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for suffix in ("-wal", "-shm"):
        side = Path(str(path) + suffix)
        if side.exists():
            assert stat.S_IMODE(side.stat().st_mode) == 0o600, side


def test_wal_mode_and_busy_timeout(kong_home: Path) -> None:
    State.get_instance()
    # WAL is a property of the file: any new connection sees it
    raw = sqlite3.connect(_db_file(kong_home))
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()
    with db.engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.BUSY_TIMEOUT_MS
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def _alembic_head() -> str:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    heads = ScriptDirectory.from_config(cfg).get_heads()
    assert len(heads) == 1, f"migrations have several heads: {heads}"
    return heads[0]


def test_schema_revision_is_the_migrations_head() -> None:
    assert _alembic_head() == db.SCHEMA_REVISION


def test_fresh_database_reaches_head_with_root_and_install_id(kong_home: Path) -> None:
    State.get_instance()
    raw = sqlite3.connect(_db_file(kong_home))
    try:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (db.SCHEMA_REVISION,)
        ]
        assert raw.execute("SELECT folder_id, parent_id FROM folders").fetchall() == [(1, None)]
        (install_id,) = raw.execute("SELECT value FROM kong_meta WHERE key='install_id'").fetchone()
    finally:
        raw.close()
    assert len(install_id) == 8
    assert db.install_id() == install_id


def test_migrations_build_the_models_schema(kong_home: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    State.get_instance()
    db.dispose()
    engine = create_engine(f"sqlite:///{_db_file(kong_home)}")
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, type_, _parent: not (
                        type_ == "table" and name in ("kong_meta", "alembic_version")
                    ),
                },
            )
            diff: list[Any] = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_existing_database_opens_without_alembic(kong_home: Path) -> None:
    State.get_instance()
    db.dispose()
    code = (
        "import sys, kong\n"
        "state = kong.get_instance()\n"
        "state.ls()\n"
        "assert 'alembic' not in sys.modules, 'alembic imported'\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_fresh_database_does_import_alembic(kong_home: Path) -> None:
    """The converse, so the fast-path test above cannot pass vacuously."""
    code = "import sys, kong\nkong.get_instance()\nprint('alembic' in sys.modules)\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


def test_reopening_keeps_data_and_install_id(kong_home: Path) -> None:
    state = State.get_instance()
    state.mkdir("/keep")
    job = state.create_job(command="true", folder="/keep")
    first_id = db.install_id()
    db.dispose()
    state = State.get_instance()
    assert db.install_id() == first_id
    _folders, jobs = state.ls("/keep")
    assert [j.job_id for j in jobs] == [job.job_id]


def test_init_is_idempotent_and_switches_databases(kong_home: Path, tmp_path: Path) -> None:
    config = Config()
    db.init(config.database_url)
    session = db.session()
    db.init(config.database_url)
    assert db.session() is session
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    db.init(other)
    assert db.session() is not session
    assert (tmp_path / "other.sqlite").is_file()


def test_processes_opening_a_new_database_at_once(kong_home: Path) -> None:
    """Several kong processes started together on a new database: one migrates, the
    others wait and find it done; one root folder, one install id."""
    code = "import kong\nkong.get_instance().ls()\n"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ},
        )
        for _ in range(6)
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    raw = sqlite3.connect(_db_file(kong_home))
    try:
        assert raw.execute("SELECT count(*) FROM folders").fetchone() == (1,)
        assert raw.execute("SELECT count(*) FROM kong_meta").fetchone() == (1,)
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (db.SCHEMA_REVISION,)
        ]
    finally:
        raw.close()


def test_failed_migration_leaves_nothing_behind(kong_home: Path, tmp_path: Path) -> None:
    """A migration is one transaction: if it fails, no half-made schema remains."""
    path = tmp_path / "broken.sqlite"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE jobs (x INTEGER)")  # clashes with migration 0001
    raw.commit()
    raw.close()
    with pytest.raises(Exception, match="jobs"):
        db.init(f"sqlite:///{path}")
    raw = sqlite3.connect(path)
    try:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        raw.close()
    assert tables == {"jobs"}


def test_write_to_a_row_removed_elsewhere_is_a_kong_error(kong_home: Path) -> None:
    from kong.errors import KongError
    from kong.model import JobStatus

    state = State.get_instance()
    job = state.create_job(command="true")
    other = state.create_job(command="true")
    raw = sqlite3.connect(_db_file(kong_home))
    raw.execute("DELETE FROM jobs WHERE job_id = ?", (job.job_id,))
    raw.commit()
    raw.close()
    with pytest.raises(KongError, match="another kong process"), db.write():
        job.status = JobStatus.FAILED
        other.status = JobStatus.FAILED
    # nothing of the failed write was kept, and the session still works
    assert state.get_jobs(other.job_id)[0].status == JobStatus.CREATED
    with db.write():
        other.status = JobStatus.FAILED
    assert state.get_jobs(other.job_id)[0].status == JobStatus.FAILED
