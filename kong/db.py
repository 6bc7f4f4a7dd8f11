"""The job database: one SQLAlchemy engine and session per process.

SQLite is the default (one file in the data dir, WAL mode, created 0600); any
SQLAlchemy URL works. Two kong processes share one SQLite file safely because
writes run in ``BEGIN IMMEDIATE`` transactions (they wait for each other on the
busy timeout instead of failing with "database is locked" when a read
transaction tries to upgrade) and kong never holds a transaction open while it
talks to a cluster.

The schema is owned by the alembic migrations in ``kong/migrations``; a database
at an older revision is upgraded on open. A new SQLite database is built under a
temporary name and linked into place whole, so a file that exists is either a
kong database or refused: an empty or damaged file is never re-initialised, since
its install id names this database's job dirs on every cluster. A database kong
may not write is opened read-only: listing works, changes are refused in one line.
"""

from __future__ import annotations

import errno
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.pool import StaticPool

from kong.errors import KongError

#: the head revision of kong/migrations/versions; checked against alembic in the tests
SCHEMA_REVISION = "0001"

BUSY_TIMEOUT_MS = 60_000

#: SQLite's words for a file that is not (or no longer) a usable database
_DAMAGED = ("file is not a database", "database disk image is malformed")


class DatabaseError(KongError):
    """The database cannot be opened or written: damaged, newer, read-only, disk full."""


class DiskFull(DatabaseError):
    """The database cannot grow: its disk is full (or failing)."""

# One session per process, shared by the threads that run drivers concurrently;
# every change goes through write(), which holds _write_lock.
_session: Session | None = None
_write_lock = threading.RLock()
_engine: Engine | None = None
_url: str | None = None
_read_only = False


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


def _check_sqlite_file(path: Path) -> bool:
    """Make sure ``path`` holds a kong database, building a new one if there is none.

    Returns whether it must be opened read-only. Refuses (DatabaseError) a parent
    that is not a directory, and an empty file.
    """
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise DatabaseError(f"{parent} is not a directory, so the database {path.name} cannot "
                            "live there (is KONG_HOME set to a file?)")
    from kong.paths import check_trusted, make_private_dir

    try:
        make_private_dir(parent)
    except OSError as exc:
        raise DatabaseError(f"cannot create {parent} for the database: "
                            f"{exc.strerror}") from None
    check_trusted(path, "the database")
    if not path.exists():
        _create_sqlite(path)
        return False
    if path.is_dir():
        raise DatabaseError(f"the database {path} is a directory, not a file")
    if path.stat().st_size == 0:
        raise DatabaseError(
            f"the database {path} is empty (0 bytes), not a kong database: restore it from a "
            "backup, or move it away to start a new one (a new database has a new install id, "
            "so kong would not find the job dirs of the old one on the clusters)"
        )
    return not _writable(path)


def _writable(path: Path) -> bool:
    """Whether SQLite could write ``path`` and its -wal/-shm files beside it."""
    if not os.access(path, os.W_OK):
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return False
        raise DatabaseError(f"cannot open the database {path}: {exc.strerror}") from None
    os.close(fd)
    wal = Path(f"{path}-wal")
    return wal.exists() or os.access(path.parent, os.W_OK)


def _create_sqlite(path: Path) -> None:
    """Build a new database at a temporary name and link it into place, so that no
    other process ever sees a half-made file; of two racing, the first link wins."""
    temp = path.with_name(f".{path.name}.new-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        # Create the file 0600 ourselves: SQLite would create it with the umask.
        fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.close(fd)
        engine = _sqlite_engine(temp, read_only=False)
        try:
            _migrate(engine)
        finally:
            engine.dispose()  # the last connection checkpoints the WAL into the file
        with suppress(FileExistsError):  # another kong process made it first: use that one
            os.link(temp, path)
    except OSError as exc:
        raise DatabaseError(f"cannot create the database {path}: {exc.strerror}") from None
    finally:
        for suffix in ("", "-wal", "-shm"):
            with suppress(FileNotFoundError):
                os.unlink(f"{temp}{suffix}")


def _sqlite_engine(path: Path, read_only: bool, exclusive: bool = False) -> Engine:
    """An engine on ``path``. ``exclusive`` is the fallback for a full disk: SQLite then
    keeps the WAL index in memory instead of the -shm file it cannot create, so that
    ``kong rm`` can still read the database and free space (one connection, no sharing
    with other processes while it runs)."""
    url = f"sqlite:///{path}"
    if read_only:
        # An SQLite URI, where the path must be percent-quoted. Reading a WAL database
        # needs its -shm file; where none can be made (a read-only mount), the file is
        # opened as immutable: nobody can change it there anyway.
        mode = "mode=ro" if os.access(path.parent, os.W_OK) else "immutable=1"
        url = f"sqlite:///file:{quote(str(path))}?{mode}&uri=true"
    engine = create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        **({"poolclass": StaticPool} if exclusive else {}),
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (pysqlite's implicit BEGIN is always DEFERRED).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if exclusive:  # before the first read, or SQLite maps the -shm file anyway
            cur.execute("PRAGMA locking_mode=EXCLUSIVE")
        if not read_only:
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

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        _explain(path, context.original_exception)

    return engine


def _explain(path: Path, exc: BaseException) -> None:
    """Turn SQLite's errors about the file itself (not about a statement) into one line."""
    message = str(exc)
    if any(words in message for words in _DAMAGED):
        raise DatabaseError(
            f"the database {path} is damaged ({message}): restore it from a backup, or move "
            "it away to start a new one"
        ) from None
    if "database or disk is full" in message or "disk I/O error" in message:
        raise DiskFull(f"cannot write the database {path}: {message} (free some space: "
                            "kong rm removes jobs and their files)") from None
    if "readonly database" in message:
        raise DatabaseError(f"the database {path} is read-only: listing works, "
                            "changes do not") from None


def _make_engine(url: str) -> tuple[Engine, bool]:
    """The engine for ``url`` and whether it is read-only."""
    path = _sqlite_path(url)
    if path is None:
        try:
            return create_engine(url), False
        except NoSuchModuleError as exc:
            raise DatabaseError(f"unknown database kind in {make_url(url).drivername!r}: "
                                f"{exc}") from None
        except ImportError as exc:
            raise DatabaseError(_missing_driver(url, exc)) from None
    read_only = _check_sqlite_file(path)
    return _sqlite_engine(path, read_only), read_only


#: the package that provides a DBAPI module SQLAlchemy could not import
_DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary",
                    "MySQLdb": "mysqlclient", "pymysql": "PyMySQL", "mariadb": "mariadb",
                    "pyodbc": "pyodbc", "oracledb": "oracledb", "asyncpg": "asyncpg"}


def _missing_driver(url: str, exc: ImportError) -> str:
    parsed = make_url(url)
    module = (exc.name or str(exc)).partition(".")[0]
    package = _DRIVER_PACKAGES.get(module, module)
    return (f"the database {parsed.render_as_string(hide_password=True)} needs the Python "
            f"package {package} (module {module!r} is not installed): "
            f"pip install '{package}'")


def init(url: str) -> None:
    """Open (creating and migrating if needed) the database at ``url`` for this process."""
    global _session, _engine, _url, _read_only
    if _url == url and _session is not None:
        return
    if _engine is not None:
        dispose()
    engine, read_only = _make_engine(url)
    path = _sqlite_path(url)
    try:
        try:
            _migrate(engine, read_only)
        except DatabaseError as exc:
            if path is None or read_only or "cannot write" not in str(exc):
                raise
            # A full disk: the -shm file could not be made. Retry without it.
            engine.dispose()
            engine = _sqlite_engine(path, read_only, exclusive=True)
            _migrate(engine, read_only)
    except DBAPIError as exc:
        engine.dispose()
        if path is not None:
            _explain(path, exc.orig or exc)
        raise DatabaseError(f"cannot open the database: {exc.orig or exc}") from None
    except BaseException:
        engine.dispose()
        raise
    if path is not None and not read_only:
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(path) + suffix)
            if p.exists():
                p.chmod(0o600)
    _engine = engine
    _url = url
    _read_only = read_only
    _session = Session(bind=engine, expire_on_commit=False, autoflush=False)
    event.listen(_session, "do_orm_execute", _fresh_reads)


def read_only() -> bool:
    """Whether this process opened the database read-only (it may not write it)."""
    return _read_only


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


def _known_revisions() -> set[str]:
    versions = Path(__file__).parent / "migrations" / "versions"
    return {p.name.partition("_")[0] for p in versions.glob("[0-9]*_*.py")}


def _migrate(engine: Engine, read_only: bool = False) -> None:
    # Fast path: an up-to-date database costs one query, and alembic is not imported.
    revision = _current_revision(engine)
    if revision == SCHEMA_REVISION:
        return
    if revision is not None and revision not in _known_revisions():
        raise DatabaseError(f"this database was written by a newer kong (schema {revision}); "
                            "upgrade kong")
    if read_only:
        raise DatabaseError(f"the database is read-only and at schema {revision or 'none'}, "
                            f"older than this kong's {SCHEMA_REVISION}: open it once with "
                            "write access to upgrade it")
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
    require_writable()
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


def require_writable() -> None:
    """Refuse a change before it starts (before any cluster is told) on a read-only
    database, so that nothing is done that the database could not record."""
    if _read_only:
        raise DatabaseError(f"the database is read-only ({_url_path()}): listing works, "
                            "changes do not")


def _url_path() -> str:
    path = _sqlite_path(_url) if _url else None
    return str(path) if path is not None else "not a file"


def end_read() -> None:
    """End the session's read transaction, so the next read sees other processes' writes."""
    if _session is not None:
        with _write_lock:
            _session.commit()


def dispose() -> None:
    global _session, _engine, _url, _install_id, _read_only
    _install_id = None
    _read_only = False
    if _session is not None:
        _session.close()
    if _engine is not None:
        _engine.dispose()
    _session = None
    _engine = None
    _url = None
