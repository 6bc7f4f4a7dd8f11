"""The job database: one SQLAlchemy engine and session per process.

SQLite is the default (one file in the data dir, WAL mode, created 0600); any
SQLAlchemy URL works. Two kong processes share one SQLite file safely because
writes run in ``BEGIN IMMEDIATE`` transactions (they wait for each other on the
busy timeout instead of failing with "database is locked" when a read
transaction tries to upgrade) and kong never holds a transaction open while it
talks to a cluster.

The schema is owned by the alembic migrations in ``kong/migrations``; a database
at an older revision is upgraded on open.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from kong.errors import KongError

#: the head revision of kong/migrations/versions; checked against alembic in the tests
SCHEMA_REVISION = "0001"

BUSY_TIMEOUT_MS = 60_000

# One session per process, shared by the threads that run drivers concurrently;
# every change goes through write(), which holds _write_lock.
_session: Session | None = None
_write_lock = threading.RLock()
_engine: Engine | None = None
_url: str | None = None


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


def _make_engine(url: str) -> Engine:
    path = _sqlite_path(url)
    if path is None:
        return create_engine(url)
    from kong.paths import check_trusted, make_private_dir

    make_private_dir(path.parent)
    check_trusted(path, "the database")
    # Create the file 0600 ourselves: SQLite would create it with the umask.
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (pysqlite's implicit BEGIN is always DEFERRED).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writes take the write lock up front. Reads run without BEGIN, each statement
        # on the newest snapshot: a session that stays open (a REPL) then sees what
        # other processes wrote, and never pins an old snapshot that would keep the
        # WAL from being checkpointed.
        if conn.get_execution_options().get("kong_write", False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def init(url: str) -> None:
    """Open (creating and migrating if needed) the database at ``url`` for this process."""
    global _session, _engine, _url
    if _url == url and _session is not None:
        return
    if _engine is not None:
        dispose()
    engine = _make_engine(url)
    _migrate(engine)
    path = _sqlite_path(url)
    if path is not None:
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(path) + suffix)
            if p.exists():
                p.chmod(0o600)
    _engine = engine
    _url = url
    _session = Session(bind=engine, expire_on_commit=False, autoflush=False)
    event.listen(_session, "do_orm_execute", _fresh_reads)


_writes_in_progress = 0


def _fresh_reads(orm_execute_state: Any) -> None:
    """Let every top-level SELECT refresh the objects it loads.

    Objects outlive transactions (``expire_on_commit=False``, so that 100,000 listed
    jobs are not reloaded one by one after a write), so without this a query would
    hand back an object as this process last saw it, missing what another kong
    process (a ``kong wait``, a second REPL) changed since. Not inside ``write()``,
    where it would overwrite changes not yet flushed.
    """
    if (
        _writes_in_progress == 0
        and orm_execute_state.is_select
        and not orm_execute_state.is_column_load
        and not orm_execute_state.is_relationship_load
    ):
        orm_execute_state.update_execution_options(populate_existing=True)


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        has_table = conn.execute(
            text("SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'")
            if engine.dialect.name == "sqlite"
            else text(
                "SELECT 1 FROM information_schema.tables WHERE table_name='alembic_version'"
            )
        ).first()
        if not has_table:
            return None
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        return None if row is None else str(row[0])


def _migrate(engine: Engine) -> None:
    # Fast path: an up-to-date database costs one query, and alembic is not imported.
    if _current_revision(engine) == SCHEMA_REVISION:
        return
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    # One write transaction (BEGIN IMMEDIATE on SQLite): a migration is all or nothing,
    # and of two processes opening a new database at once, the second waits and then
    # finds it already at head.
    with engine.connect() as conn:
        conn.execution_options(kong_write=True)
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")


_install_id: str | None = None


def install_id() -> str:
    """A random id made when this database was created.

    It names this database's job dirs and scheduler job names on clusters, so
    two databases (two laptops) sharing a cluster account never collide.
    """
    global _install_id
    if _install_id is None:
        row = session().execute(text("SELECT value FROM kong_meta WHERE key='install_id'")).first()
        if row is None:
            raise RuntimeError("the database has no install_id")
        _install_id = str(row[0])
    return _install_id


def engine() -> Engine:
    if _engine is None:
        raise RuntimeError("kong.db.init() has not been called")
    return _engine


def session() -> Session:
    """The session of this process."""
    if _session is None:
        raise RuntimeError("kong.db.init() has not been called")
    return _session


@contextmanager
def write() -> Iterator[Session]:
    """A short write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on exit.

    Any read transaction the session still holds is ended first, so the write
    starts from the newest snapshot instead of failing to upgrade a stale one.
    """
    global _writes_in_progress
    with _write_lock:
        s = session()
        s.commit()
        s.connection(execution_options={"kong_write": True})
        _writes_in_progress += 1
        try:
            yield s
            s.commit()
        except StaleDataError:
            s.rollback()
            raise KongError(
                "another kong process changed or removed these jobs meanwhile; try again"
            ) from None
        except BaseException:
            s.rollback()
            raise
        finally:
            _writes_in_progress -= 1


def end_read() -> None:
    """End the session's read transaction, so the next read sees other processes' writes."""
    if _session is not None:
        with _write_lock:
            _session.commit()


def dispose() -> None:
    global _session, _engine, _url, _install_id
    _install_id = None
    if _session is not None:
        _session.close()
    if _engine is not None:
        _engine.dispose()
    _session = None
    _engine = None
    _url = None
