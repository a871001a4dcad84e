"""API tokens: issue, use, list, revoke, expire; wrong passwords; rehash on login."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from market.accounts.models import ApiToken, Role, User
from market.accounts.passwords import PasswordService
from market.config import SecuritySettings
from market.db import utcnow
from tests.conftest import TEST_PASSWORD
from tests.unit.test_errors import assert_error_shape


def test_token_reaches_an_authenticated_endpoint(client, make_user, token_for) -> None:
    owner = make_user(Role.OWNER)
    response = client.get("/api/v1/me", headers=token_for(owner))
    assert response.status_code == 200
    assert response.get_json()["email"] == owner.email
    assert response.get_json()["role"] == "owner"
    assert "password_hash" not in response.get_json()


def test_issued_token_has_expiry_and_only_its_hash_is_stored(app, client, make_user) -> None:
    user = make_user()
    response = client.post("/api/v1/tokens", json={"email": user.email, "password": TEST_PASSWORD})
    body = response.get_json()
    assert response.status_code == 201
    assert set(body) >= {"token", "expires_at", "id"}
    with app.extensions["market"].database.read() as session:
        stored = session.exec(select(ApiToken)).one()
    assert body["token"] not in (stored.token_hash, stored.prefix)
    assert body["token"].startswith(stored.prefix)
    ttl = stored.expires_at - stored.created_at
    assert timedelta(hours=23, minutes=59) < ttl <= timedelta(hours=24)


def test_email_is_case_insensitive(client, make_user) -> None:
    user = make_user(email="Mixed.Case@People.example")
    response = client.post(
        "/api/v1/tokens", json={"email": "MIXED.case@people.EXAMPLE", "password": TEST_PASSWORD}
    )
    assert response.status_code == 201
    assert user.email == "mixed.case@people.example"


def test_wrong_password_and_unknown_email_look_the_same(client, make_user) -> None:
    user = make_user()
    wrong = client.post("/api/v1/tokens", json={"email": user.email, "password": "nope-nope-nope"})
    unknown = client.post(
        "/api/v1/tokens", json={"email": "ghost@people.example", "password": "nope-nope-nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert_error_shape(wrong.get_json(), "invalid_credentials")
    assert wrong.get_json() == unknown.get_json()
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")


def test_sixth_rapid_wrong_password_gets_429(client, make_user) -> None:
    user = make_user()
    statuses = [
        client.post(
            "/api/v1/tokens", json={"email": user.email, "password": "wrong-wrong"}
        ).status_code
        for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    assert_error_shape(
        client.post("/api/v1/tokens", json={"email": user.email, "password": "x"}).get_json(),
        "rate_limited",
    )


def test_successful_logins_do_not_count_against_the_limit(client, make_user) -> None:
    user = make_user()
    for _ in range(8):
        response = client.post(
            "/api/v1/tokens", json={"email": user.email, "password": TEST_PASSWORD}
        )
        assert response.status_code == 201


def test_missing_malformed_and_unknown_tokens_are_401(client) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer mkt_nope"}):
        response = client.get("/api/v1/me", headers=headers)
        assert response.status_code == 401
        assert_error_shape(response.get_json(), "authentication_required")


def test_revoked_token_stops_working(client, make_user, token_for) -> None:
    user = make_user()
    headers = token_for(user)
    token_id = client.get("/api/v1/tokens", headers=headers).get_json()["items"][0]["id"]
    revoked = client.delete(f"/api/v1/tokens/{token_id}", headers=headers)
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"] is not None
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_expired_token_stops_working(app, client, make_user, token_for) -> None:
    headers = token_for(make_user())
    with app.extensions["market"].database.write() as session:
        token = session.exec(select(ApiToken)).one()
        token.expires_at = utcnow() - timedelta(seconds=1)
        session.add(token)
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_disabled_account_cannot_use_its_token_or_sign_in(
    app, client, make_user, token_for
) -> None:
    user = make_user()
    headers = token_for(user)
    with app.extensions["market"].database.write() as session:
        row = session.get(User, user.id)
        row.is_active = False
        session.add(row)
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    response = client.post("/api/v1/tokens", json={"email": user.email, "password": TEST_PASSWORD})
    assert response.status_code == 401


def test_password_is_rehashed_when_parameters_rise(app, client, make_user) -> None:
    user = make_user()
    database = app.extensions["market"].database
    with database.read() as session:
        old_hash = session.get(User, user.id).password_hash
    assert "m=19456,t=2,p=1" in old_hash
    stronger = PasswordService(
        SecuritySettings(argon2_memory_kib=32768, argon2_time_cost=3, argon2_parallelism=1)
    )
    object.__setattr__(app.extensions["market"], "passwords", stronger)
    response = client.post("/api/v1/tokens", json={"email": user.email, "password": TEST_PASSWORD})
    assert response.status_code == 201
    with database.read() as session:
        new_hash = session.get(User, user.id).password_hash
    assert "m=32768,t=3,p=1" in new_hash and new_hash.startswith("$argon2id$")
    assert stronger.verify(new_hash, TEST_PASSWORD)


def test_settings_refuse_argon2_below_the_owasp_floor() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        SecuritySettings(argon2_memory_kib=8192)
    with pytest.raises(ValidationError):
        SecuritySettings(argon2_time_cost=1)


@pytest.mark.redis
def test_login_limit_is_shared_across_processes_through_redis(tmp_path, sqlite_url) -> None:
    """Two app instances (as two gunicorn workers would be) share one Redis counter."""
    import redis

    from market import create_app
    from tests.conftest import REDIS_URL, app_overrides, service_unavailable

    url = REDIS_URL  # this xdist worker's own database
    try:
        redis.Redis.from_url(url).flushdb()
    except redis.exceptions.ConnectionError as exc:
        service_unavailable("Redis", str(exc))
    overrides = app_overrides(tmp_path, sqlite_url, ratelimit={"storage_uri": url})
    first = create_app(overrides)
    from market.accounts import services as accounts

    market = first.extensions["market"]
    with market.database.write() as session:
        accounts.create_user(
            session,
            email="shared@people.example",
            role="owner",
            password=TEST_PASSWORD,
            passwords=market.passwords,
        )
    wrong = {"email": "shared@people.example", "password": "wrong-wrong"}
    statuses = [
        first.test_client().post("/api/v1/tokens", json=wrong).status_code for _ in range(3)
    ]
    # A second app re-initialises the module-level limiter: with in-memory storage it would
    # count from zero; through Redis it sees the first app's three failures.
    second = create_app(overrides)
    statuses += [
        second.test_client().post("/api/v1/tokens", json=wrong).status_code for _ in range(3)
    ]
    assert statuses == [401] * 5 + [429]
    redis.Redis.from_url(url).flushdb()
    market.database.dispose()
    second.extensions["market"].database.dispose()
