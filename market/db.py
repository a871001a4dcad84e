"""Database engine, transactions and the column types every table shares.

Why this module exists: SQLite needs care to be a correct embedded default. Each connection
turns on WAL, foreign keys, a busy timeout and ``synchronous=FULL`` (ledgers must survive a
power cut), and write transactions start with ``BEGIN IMMEDIATE``: a plain ``BEGIN`` that later
writes gets SQLITE_BUSY regardless of the busy timeout. PostgreSQL needs none of this and is
chosen by the URL alone.

Use cases open exactly one transaction and commit once::

    with database.write() as session:   # BEGIN IMMEDIATE on SQLite
        accounts.create_user(session, ...)
    with database.read() as session:    # deferred BEGIN, never writes
        ...

PostgreSQL connections are checked with ``pool_pre_ping`` when taken from the pool, which
catches a server restart between requests. A connection dropped *during* a request still
fails it; ``retry_read_on_disconnect`` runs an idempotent read once more on a fresh
connection, and whatever still fails becomes a 503 (market.errors.database_failure).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import DateTime, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, create_engine

_BEGIN_OPTION = "market_sqlite_begin"

log = logging.getLogger(__name__)
T = TypeVar("T")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the only kind of time this codebase stores)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite keeps no zone; PostgreSQL's ``timestamptz`` does. Either way Python sees UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite would defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, *, sqlite_busy_timeout_ms: int = 5000) -> Engine:
    """An engine for ``url``; SQLite gets the pragmas and explicit BEGIN of this module."""
    if url.startswith("sqlite"):
        # Pooled: opening a connection costs its four pragmas and a file open, which was
        # about half of a catalog read (docs/benchmarks.md). A connection goes back to the
        # pool rolled back, so no WAL read snapshot outlives the transaction that took it.
        # Unbounded overflow, as NullPool was: a thread never waits for a free connection
        # (one that held a connection and waited for a second could deadlock the pool).
        engine = create_engine(
            url,
            poolclass=QueuePool,
            pool_size=8,
            max_overflow=-1,
            connect_args={"check_same_thread": False},
        )
        _configure_sqlite(engine, busy_timeout_ms=sqlite_busy_timeout_ms)
        return engine
    return create_engine(url, pool_pre_ping=True)


class Database:
    """The engine plus the two kinds of transaction a use case may open."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_engine = (
            engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"}) if self.is_sqlite else engine
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries only. Closing it ends the transaction without expiring the
        loaded rows, so they stay readable (detached) after the block."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: commits when the block ends, rolls back if it raises."""
        with Session(self._write_engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


def is_disconnect(exc: BaseException) -> bool:
    """True when ``exc`` says the database connection itself was lost (server restarted,
    backend terminated): SQLAlchemy has then invalidated it, and a new one may work."""
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def retry_read_on_disconnect(read: Callable[[], T]) -> T:
    """Run ``read`` (idempotent: it must not write) and, if its connection was lost, once more.

    One retry only: a database that is really down fails fast and the caller gets a 503.
    """
    try:
        return read()
    except DBAPIError as exc:
        if not is_disconnect(exc):
            raise
        log.warning("database connection lost (%s); retrying the read once", exc.orig)
    return read()
