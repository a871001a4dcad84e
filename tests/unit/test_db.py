"""The database layer: UTC everywhere, SQLite pragmas, BEGIN IMMEDIATE, one commit per use case."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlmodel import select

from market.accounts.models import Role, User
from market.db import Database, make_engine, utcnow


def _user(email: str) -> User:
    return User.model_validate({"email": email, "role": Role.OWNER}, update={"password_hash": "x"})


def test_times_come_back_timezone_aware_utc(database_url: str) -> None:
    database = Database(make_engine(database_url))
    paris = timezone(timedelta(hours=1))
    with database.write() as session:
        user = _user("tz@people.example")
        user.created_at = datetime(2026, 1, 1, 13, 0, tzinfo=paris)
        session.add(user)
    with database.read() as session:
        stored = session.exec(select(User)).one()
    assert stored.created_at.tzinfo is not None
    assert stored.created_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC_)
    assert stored.created_at.utcoffset() == timedelta(0)
    database.dispose()


UTC_ = UTC


def test_naive_datetimes_are_refused(database_url: str) -> None:
    database = Database(make_engine(database_url))
    with pytest.raises(Exception, match="naive datetime"):
        with database.write() as session:
            user = _user("naive@people.example")
            user.created_at = datetime(2026, 1, 1)
            session.add(user)
    database.dispose()


def test_a_failing_use_case_leaves_nothing_behind(database_url: str) -> None:
    database = Database(make_engine(database_url))
    with pytest.raises(RuntimeError):
        with database.write() as session:
            session.add(_user("half@people.example"))
            session.flush()
            raise RuntimeError("fails after the first write")
    with database.read() as session:
        assert session.exec(select(User)).all() == []
    database.dispose()


def test_sqlite_pragmas(sqlite_url: str) -> None:
    database = Database(make_engine(sqlite_url))
    with database.read() as session:
        pragmas = {
            name: session.exec(text(f"PRAGMA {name}")).one()[0]  # type: ignore[call-overload]
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        }
    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 5000,
        "synchronous": 2,
    }
    database.dispose()


def test_concurrent_read_modify_write_on_sqlite_never_loses_an_update(sqlite_url: str) -> None:
    """With a deferred BEGIN, two writers that read first get SQLITE_BUSY or lose updates;
    BEGIN IMMEDIATE serialises them so every increment lands."""
    database = Database(make_engine(sqlite_url))
    with database.write() as session:
        session.add(_user("counter@people.example"))
    rounds, threads = 25, 4
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(rounds):
                with database.write() as session:
                    user = session.exec(select(User)).one()
                    # The counter: last_login_at advances by one second per increment.
                    user.last_login_at = (user.last_login_at or EPOCH) + timedelta(seconds=1)
                    session.add(user)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=bump) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    with database.read() as session:
        final = session.exec(select(User)).one().last_login_at
    assert final == EPOCH + timedelta(seconds=rounds * threads)
    database.dispose()


EPOCH = datetime(2026, 1, 1, tzinfo=UTC_)


def test_utcnow_is_aware() -> None:
    assert utcnow().tzinfo is not None and utcnow().utcoffset() == timedelta(0)
