"""Hostile requests against the JSON API: huge bodies, huge ids, a locked or vanished database.

Each case asserts the status, the error code, that no row was written, and for the big
bodies that this process's peak memory stayed bounded. Peak memory is VmHWM from
/proc/self/status after resetting it (``echo 5 > /proc/self/clear_refs``), so it measures
the request alone, not what pytest and torch cost before it. The application runs in this
process (Flask's test client), on real SQLite files and the real PostgreSQL.

The bound, PEAK_BOUND_MIB: the JSON limit is 1 MiB, and the worst a 1 MiB body can cost is
measured at about 50 MiB (the parsed object, pydantic's error list for ~96k unknown keys,
its JSON text); before the limit an 18 MB body of a million keys cost 500 MB.
"""

from __future__ import annotations

import io
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from market import create_app
from market.accounts.models import Role
from market.audit import ensure_signing_key
from market.extensions import limiter
from market.models import metadata
from privacy.vault import init_keydir
from tests.conftest import TEST_PASSWORD, Account, _truncate_all, app_overrides
from tests.unit.test_errors import assert_error_shape

PEAK_BOUND_MIB = 64
BIG_BODY_BYTES = 18 * 1024 * 1024
INT64_MAX = 2**63 - 1
ID_MAX = 2**31 - 1  # INTEGER columns: 32-bit in PostgreSQL (market.api.schemas.ID_MAX)


# --- helpers -------------------------------------------------------------------------------


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/self/status")


class PeakMemory:
    """Peak RSS growth (MiB) of this process during a block, from /proc."""

    def __enter__(self) -> PeakMemory:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        self.start_kib = _status_kib("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth_mib = (_status_kib("VmHWM") - self.start_kib) / 1024


def million_keys_body(size: int = BIG_BODY_BYTES) -> bytes:
    """A JSON object of small keys, ``size`` bytes: the body that used to take 12 s."""
    parts, total, i = [], 2, 0
    while total < size:
        part = b'"field_%09d":0' % i
        parts.append(part)
        total += len(part) + 1
        i += 1
    return b"{" + b",".join(parts) + b"}"


def row_counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return {
                table.name: connection.execute(
                    sa.select(sa.func.count()).select_from(table)
                ).scalar_one()
                for table in metadata.sorted_tables
            }
    finally:
        engine.dispose()


def _make_app(tmp_path: Path, url: str, **extra: Any) -> Any:
    init_keydir(tmp_path / "keys")
    application = create_app(app_overrides(tmp_path, url, **extra))
    application.config["TESTING"] = True
    ensure_signing_key(application.extensions["market"].settings)
    limiter.reset()
    return application


def _account(app: Any, role: Role, email: str) -> Account:
    from market.accounts import services as accounts

    market = app.extensions["market"]
    with market.database.write() as session:
        user = accounts.create_user(
            session, email=email, role=role, password=TEST_PASSWORD, passwords=market.passwords
        )
        return Account(id=user.id or 0, email=user.email, role=user.role, password=TEST_PASSWORD)


def _headers(client: FlaskClient, account: Account) -> dict[str, str]:
    response = client.post(
        "/api/v1/tokens", json={"email": account.email, "password": account.password}
    )
    assert response.status_code == 201, response.get_json()
    headers = {"Authorization": f"Bearer {response.get_json()['token']}"}
    assert client.get("/api/v1/me", headers=headers).status_code == 200  # touches the token
    return headers


# --- big bodies (SQLite: the database plays no part) ---------------------------------------


@pytest.fixture
def sqlite_app(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    application = _make_app(tmp_path, sqlite_url)
    yield application
    application.extensions["market"].database.dispose()


@pytest.fixture
def researcher(sqlite_app: Any) -> dict[str, str]:
    client = sqlite_app.test_client()
    return _headers(client, _account(sqlite_app, Role.RESEARCHER, "r@abuse.example"))


@pytest.fixture(scope="module")
def big_body() -> bytes:
    return million_keys_body()


def _post_stream(
    client: FlaskClient, path: str, body: bytes, headers: dict[str, str], *, chunked: bool
) -> Any:
    """POST ``body`` from a stream made before the measurement (the test client would copy
    ``data=``), with its Content-Length or, ``chunked``, without one."""
    stream = io.BytesIO(body)
    if chunked:
        return client.post(
            path,
            input_stream=stream,
            headers={**headers, "Transfer-Encoding": "chunked"},
            content_type="application/json",
            environ_overrides={"wsgi.input_terminated": True},
        )
    return client.post(
        path,
        input_stream=stream,
        content_length=len(body),
        headers=headers,
        content_type="application/json",
    )


def test_big_body_without_a_token_is_401_before_a_byte_is_read(
    sqlite_app: Any, sqlite_url: str, big_body: bytes
) -> None:
    client = sqlite_app.test_client()
    before = row_counts(sqlite_url)
    with PeakMemory() as peak:
        response = _post_stream(client, "/api/v1/quotes", big_body, {}, chunked=False)
    assert response.status_code == 401
    assert_error_shape(response.get_json(), "authentication_required")
    assert peak.growth_mib < PEAK_BOUND_MIB
    assert row_counts(sqlite_url) == before


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_big_body_with_a_token_is_413(
    sqlite_app: Any, sqlite_url: str, researcher: dict[str, str], big_body: bytes, chunked: bool
) -> None:
    client = sqlite_app.test_client()
    before = row_counts(sqlite_url)
    with PeakMemory() as peak:
        response = _post_stream(client, "/api/v1/quotes", big_body, researcher, chunked=chunked)
    assert response.status_code == 413
    body = response.get_json()
    assert_error_shape(body, "payload_too_large")
    assert body["error"]["details"]["limit_bytes"] == 1 << 20
    assert peak.growth_mib < PEAK_BOUND_MIB
    assert row_counts(sqlite_url) == before


def test_body_just_under_the_limit_gets_a_bounded_422(
    sqlite_app: Any, sqlite_url: str, researcher: dict[str, str]
) -> None:
    """~52k unknown keys in 1 MiB: validated, but the error body lists 20 and the count."""
    body = million_keys_body((1 << 20) - 64)
    assert len(body) <= 1 << 20
    client = sqlite_app.test_client()
    before = row_counts(sqlite_url)
    with PeakMemory() as peak:
        response = _post_stream(client, "/api/v1/quotes", body, researcher, chunked=False)
    assert response.status_code == 422
    error = response.get_json()
    assert_error_shape(error, "validation_error")
    assert len(error["error"]["details"]["fields"]) == 20
    assert error["error"]["details"]["error_count"] > 50_000
    assert len(response.data) < 16 * 1024
    assert peak.growth_mib < PEAK_BOUND_MIB
    assert row_counts(sqlite_url) == before


def test_chunked_body_under_the_limit_is_read(sqlite_app: Any, researcher: dict[str, str]) -> None:
    """The limit applies while reading, not by refusing every body without a length."""
    response = _post_stream(
        sqlite_app.test_client(),
        "/api/v1/quotes",
        b'{"dataset_id": "nope", "model": {"template": "mlp"}, "epsilon": 1}',
        researcher,
        chunked=True,
    )
    assert response.status_code == 404
    assert_error_shape(response.get_json(), "not_found")


# --- ids beyond 64 bits --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("DELETE", f"/api/v1/tokens/{INT64_MAX + 1}", "token_id"),
        ("DELETE", f"/api/v1/tokens/{10**40}", "token_id"),
        ("DELETE", f"/api/v1/tokens/{ID_MAX + 1}", "token_id"),
        ("GET", f"/api/v1/audit/entries?after={ID_MAX + 1}", "after"),
        ("GET", f"/api/v1/audit/entries?after={INT64_MAX + 1}", "after"),
        ("GET", f"/api/v1/audit/entries?limit={INT64_MAX + 1}", "limit"),
        ("GET", f"/api/v1/audit/entries/{INT64_MAX + 1}/proof", "seq"),
        ("GET", f"/api/v1/audit/entries/1/proof?tree_size={INT64_MAX + 1}", "tree_size"),
        ("GET", f"/api/v1/audit/consistency?first={INT64_MAX + 1}", "first"),
        ("GET", f"/api/v1/audit/consistency?first=1&second={INT64_MAX + 1}", "second"),
    ],
)
def test_ids_beyond_64_bits_are_422_naming_the_field(
    app: Any, client: FlaskClient, database_url: str, method: str, path: str, field: str
) -> None:
    auditor = _headers(client, _account(app, Role.AUDITOR, "a@abuse.example"))
    before = row_counts(database_url)
    response = client.open(path, method=method, headers=auditor)
    assert response.status_code == 422, response.get_data(as_text=True)
    body = response.get_json()
    assert_error_shape(body, "validation_error")
    assert [f["field"] for f in body["error"]["details"]["fields"]] == [field]
    assert row_counts(database_url) == before


def test_largest_ids_reach_the_database(app: Any, client: FlaskClient) -> None:
    """The bound is the columns' range, so the largest id accepted is a plain "no such row"."""
    auditor = _headers(client, _account(app, Role.AUDITOR, "a@abuse.example"))
    response = client.delete(f"/api/v1/tokens/{ID_MAX}", headers=auditor)
    assert response.status_code == 404
    assert_error_shape(response.get_json(), "not_found")
    response = client.get(f"/api/v1/audit/entries?after={ID_MAX}", headers=auditor)
    assert response.status_code == 200
    assert response.get_json()["items"] == []
    response = client.get(f"/api/v1/audit/entries?limit={INT64_MAX}", headers=auditor)
    assert response.status_code == 200


# --- SQLite: a lock held past the busy timeout ---------------------------------------------


def test_database_locked_is_503_with_retry_after(tmp_path: Path, sqlite_url: str) -> None:
    app = _make_app(tmp_path, sqlite_url, database={"sqlite_busy_timeout_ms": 50})
    client = app.test_client()
    account = _account(app, Role.RESEARCHER, "r@abuse.example")
    before = row_counts(sqlite_url)
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        response = client.post(
            "/api/v1/tokens", json={"email": account.email, "password": account.password}
        )
        assert response.status_code == 503
        assert_error_shape(response.get_json(), "service_unavailable")
        assert int(response.headers["Retry-After"]) >= 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert row_counts(sqlite_url) == before
    retried = client.post(
        "/api/v1/tokens", json={"email": account.email, "password": account.password}
    )
    assert retried.status_code == 201
    app.extensions["market"].database.dispose()


# --- PostgreSQL: backends terminated, server unreachable -----------------------------------


class BackendKiller:
    """Terminates the PostgreSQL backend of the ``nth`` connection checked out of the app's
    pool, after pool_pre_ping has passed it: the next statement on it finds it dead, as when
    the server restarts mid-request. The termination is real (pg_terminate_backend from
    another connection); only its moment is chosen."""

    def __init__(self, engine: sa.Engine, admin_url: str) -> None:
        self.engine = engine
        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.countdown: int | None = None
        self.killed: list[int] = []
        self.lock = threading.Lock()
        sa.event.listen(engine, "checkout", self._on_checkout)

    def arm(self, nth: int) -> None:
        self.countdown = nth

    def _on_checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        with self.lock:
            if self.countdown is None:
                return
            self.countdown -= 1
            if self.countdown > 0:
                return
            self.countdown = None
        pid = dbapi_connection.info.backend_pid
        with self.admin.connect() as connection:
            # The timeout form (PostgreSQL 14+) returns once the backend has exited.
            assert connection.execute(
                sa.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}
            ).scalar_one()
        self.killed.append(pid)

    def close(self) -> None:
        sa.event.remove(self.engine, "checkout", self._on_checkout)
        self.admin.dispose()


@pytest.fixture
def postgres_app(tmp_path: Path, postgres_server_url: str) -> Iterator[Any]:
    _truncate_all(postgres_server_url)
    application = _make_app(tmp_path, postgres_server_url)
    yield application
    application.extensions["market"].database.dispose()


@pytest.fixture
def killer(postgres_app: Any, postgres_server_url: str) -> Iterator[BackendKiller]:
    k = BackendKiller(postgres_app.extensions["market"].database.engine, postgres_server_url)
    yield k
    k.close()


@pytest.mark.postgres
@pytest.mark.parametrize("nth", [1, 2], ids=["during-authentication", "during-the-view"])
def test_get_is_retried_once_when_its_connection_is_terminated(
    postgres_app: Any, killer: BackendKiller, nth: int
) -> None:
    client = postgres_app.test_client()
    auditor = _headers(client, _account(postgres_app, Role.AUDITOR, "a@abuse.example"))
    killer.arm(nth)  # 1: the token lookup; 2: the view's own read
    response = client.get("/api/v1/audit/entries", headers=auditor)
    assert len(killer.killed) == 1
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["tree_size"] >= 1


@pytest.mark.postgres
def test_write_on_a_terminated_connection_is_503_and_writes_nothing(
    postgres_app: Any, killer: BackendKiller, postgres_server_url: str
) -> None:
    client = postgres_app.test_client()
    account = _account(postgres_app, Role.RESEARCHER, "r@abuse.example")
    before = row_counts(postgres_server_url)
    killer.arm(1)  # POST /tokens: its one transaction
    response = client.post(
        "/api/v1/tokens", json={"email": account.email, "password": account.password}
    )
    assert len(killer.killed) == 1
    assert response.status_code == 503
    assert_error_shape(response.get_json(), "service_unavailable")
    assert int(response.headers["Retry-After"]) >= 1
    assert row_counts(postgres_server_url) == before
    retried = client.post(
        "/api/v1/tokens", json={"email": account.email, "password": account.password}
    )
    assert retried.status_code == 201  # pool_pre_ping replaced the dead connection


@pytest.mark.postgres
def test_idle_connections_terminated_between_requests_go_unnoticed(
    postgres_app: Any, postgres_server_url: str
) -> None:
    """pool_pre_ping: a server restart between requests costs the client nothing."""
    client = postgres_app.test_client()
    auditor = _headers(client, _account(postgres_app, Role.AUDITOR, "a@abuse.example"))
    database_name = sa.engine.make_url(postgres_server_url).database
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            killed = connection.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity, "
                    "LATERAL pg_terminate_backend(pid, 10000) AS done "
                    "WHERE datname = :name AND pid <> pg_backend_pid() AND done"
                ),
                {"name": database_name},
            ).scalar_one()
    finally:
        admin.dispose()
    assert killed >= 1
    assert client.get("/api/v1/audit/entries", headers=auditor).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/api/v1/tokens", {"json": {"email": "a@b.example", "password": "x"}}),
        ("GET", "/api/v1/me", {"headers": {"Authorization": "Bearer whatever"}}),
    ],
)
def test_unreachable_database_is_503(
    tmp_path: Path, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    """Nothing listens on port 1: every connection attempt is refused."""
    app = _make_app(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/market")
    response = app.test_client().open(path, method=method, **kwargs)
    assert response.status_code == 503
    assert_error_shape(response.get_json(), "service_unavailable")
    assert int(response.headers["Retry-After"]) >= 1
