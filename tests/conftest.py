"""Fixtures shared by the whole suite: real databases, real apps, real accounts.

Databases: every test that takes ``database_url`` (and so ``app``/``client``) runs on SQLite
and on PostgreSQL. PostgreSQL is the server at MARKET_TEST_POSTGRES_URL (default: the local
one at 127.0.0.1:5432, database ``postgres``); each test session creates its own database
there and drops it afterwards. Where no server answers, those tests are skipped with the
reason; with MARKET_TEST_REQUIRE_SERVICES=1 (CI) they fail instead.

Parallel runs (``make test`` uses pytest-xdist): each worker process is its own test
session, so it creates its own PostgreSQL database (named after the worker), its own SQLite
template and tmp_path folders, and uses its own Redis database (``REDIS_URL``: the database
number of MARKET_TEST_REDIS_URL minus the worker's index). Served instances bind port 0 or a
free port, never a fixed one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from market import create_app
from market.accounts.models import Role
from market.audit import ensure_signing_key
from market.extensions import limiter
from market.migrations import upgrade_to_head
from market.models import metadata
from privacy.vault import init_keydir

POSTGRES_ADMIN_URL = os.environ.get(
    "MARKET_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_SERVICES = os.environ.get("MARKET_TEST_REQUIRE_SERVICES") == "1"
#: This process's pytest-xdist worker ("gw0", "gw1", ...), or "main" when run without -n.
WORKER_ID = os.environ.get("PYTEST_XDIST_WORKER", "main")
WORKER_INDEX = int(WORKER_ID[2:]) if WORKER_ID[:2] == "gw" and WORKER_ID[2:].isdigit() else 0
#: A Redis server has 16 databases (0-15) by default.
REDIS_DATABASES = 16


def worker_redis_url(base: str, index: int) -> str:
    """``base`` with its database number lowered by ``index`` (modulo 16), so that workers
    flushing "their" database never flush another's."""
    url = urlsplit(base)
    path = url.path.strip("/")
    db = int(path) if path.isdigit() else 0
    return urlunsplit(url._replace(path=f"/{(db - index) % REDIS_DATABASES}"))


#: This worker's Redis database: tests flush it, so no two workers may share one.
REDIS_URL = worker_redis_url(
    os.environ.get("MARKET_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"), WORKER_INDEX
)
TEST_PASSWORD = "correct horse battery staple"
# The OWASP floor: the fastest parameters the settings accept, so tests stay quick.
FAST_ARGON2 = {"argon2_memory_kib": 19456, "argon2_time_cost": 2, "argon2_parallelism": 1}


#: Tests marked ``integration`` here, by path: they train real models, or start the CLI, a
#: served instance or a worker as another process. ``make test-fast`` leaves them out (with
#: the slow, browser, postgres and redis markers) and runs the unit layer in under a minute.
INTEGRATION_PATHS = (
    "tests/abuse/test_operations.py",
    "tests/abuse/test_uploads.py",
    "tests/api/test_openapi_conformance.py",
    "tests/audit/test_cli_and_crash.py",
    "tests/bench/",
    "tests/cli/",
    "tests/client/",
    "tests/ledgers_web/",
    "tests/privacy/test_audit.py",
    "tests/privacy/test_neighbouring.py",
    "tests/privacy/test_package.py",
    "tests/privacy/test_training.py",
    "tests/trading/",
)


#: The longest tests (a minute or more each on a busy 2-core machine) run first, so that in a
#: parallel run they never start last and leave one worker finishing alone.
LONGEST_FIRST = (
    "tests/bench/",
    "tests/api/test_openapi_conformance.py",
    "tests/trading/test_worker_crashes.py",
    "tests/abuse/test_operations.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = config.rootpath
    paths = {item: item.path.relative_to(root).as_posix() for item in items}
    for item in items:
        if paths[item].startswith(INTEGRATION_PATHS):
            item.add_marker(pytest.mark.integration)

    def rank(item: pytest.Item) -> int:
        for index, prefix in enumerate(LONGEST_FIRST):
            if paths[item].startswith(prefix):
                return index
        return len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: whole modules move, the order within each is kept


def service_unavailable(what: str, reason: str) -> None:
    message = f"{what} unavailable ({reason})"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and MARKET_TEST_REQUIRE_SERVICES=1")
    pytest.skip(message + ": those tests did not run")


def _with_database(url: str, name: str) -> str:
    return sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session (one per xdist worker)."""
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"market_test_{WORKER_ID}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        service_unavailable("PostgreSQL", str(exc.orig).strip().splitlines()[0])
    url = _with_database(POSTGRES_ADMIN_URL, name)
    upgrade_to_head(url)
    yield url
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy (migrating per test would be slow)."""
    path = tmp_path_factory.mktemp("template") / "market.db"
    upgrade_to_head(f"sqlite:///{path}")
    return path


def _truncate_all(url: str) -> None:
    engine = sa.create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "market.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_server_url")
    _truncate_all(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite only: for tests about the embedded default itself."""
    path = tmp_path / "market.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


def app_overrides(home: Path, database_url: str, **extra: Any) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "home": str(home),
        "env": "development",
        "app": {"secret_key": "test-secret-key-that-is-long-enough-0123456789"},
        "database": {"url": database_url},
        "security": dict(FAST_ARGON2),
        "ratelimit": {"storage_uri": "memory://"},
    }
    for section, values in extra.items():
        if isinstance(values, dict):
            overrides.setdefault(section, {}).update(values)
        else:
            overrides[section] = values
    return overrides


@contextmanager
def running_app(tmp_path: Path, database_url: str, **extra: Any) -> Iterator[Any]:
    """An app on its own instance folder (``app_overrides(..., **extra)``), with the signing
    key, a reset rate limiter and a `cpu` worker's heartbeat; disposed afterwards."""
    from market.ops.heartbeat import Heartbeat

    init_keydir(tmp_path / "keys")
    application = create_app(app_overrides(tmp_path, database_url, **extra))
    application.config["TESTING"] = True
    market = application.extensions["market"]
    ensure_signing_key(market.settings)
    limiter.reset()
    # The tests train in this process (a Huey consumer or execute_run), as a `cpu` worker:
    # its heartbeat lets quotes of that class be bought (market.trading.purchases).
    pulse = Heartbeat(
        market.database,
        interval_s=market.settings.ops.heartbeat_s,
        backend=market.settings.queue.backend,
        worker_class="cpu",
        worker=f"tests:{os.getpid()}:{id(application)}",
    ).start()
    try:
        yield application
    finally:
        pulse.stop()
        market.database.dispose()


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Any]:
    with running_app(tmp_path, database_url) as application:
        yield application


@pytest.fixture
def client(app: Any) -> FlaskClient:
    return app.test_client()


@dataclass
class Account:
    id: int
    email: str
    role: Role
    password: str


@pytest.fixture
def make_user(app: Any) -> Callable[..., Account]:
    """Create a real account through the accounts service."""
    from market.accounts import services as accounts

    counter = iter(range(1, 10_000))

    def make(role: Role | str = Role.RESEARCHER, email: str | None = None) -> Account:
        role = Role(role)
        email = email or f"{role.value}{next(counter)}@people.example"
        market = app.extensions["market"]
        with market.database.write() as session:
            user = accounts.create_user(
                session, email=email, role=role, password=TEST_PASSWORD, passwords=market.passwords
            )
            return Account(id=user.id, email=user.email, role=user.role, password=TEST_PASSWORD)

    return make


@pytest.fixture
def token_for(client: FlaskClient) -> Callable[[Account], dict[str, str]]:
    """Sign in through the API and return the Authorization header."""

    def issue(account: Account) -> dict[str, str]:
        response = client.post(
            "/api/v1/tokens", json={"email": account.email, "password": account.password}
        )
        assert response.status_code == 201, response.get_json()
        return {"Authorization": f"Bearer {response.get_json()['token']}"}

    return issue
