"""Forgotten and changed passwords, and sessions that end: the reset link from the real
outbox, old sessions and tokens refused afterwards, links that work once and expire, a flood
of requests refused, and a copied session cookie refused after sign-out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlmodel import select

from market.accounts import services as accounts
from market.accounts.models import ApiToken, MailToken, Role, User
from market.audit.models import AuditEntry
from market.db import utcnow
from tests.accounts.conftest import (
    NEW_PASSWORD,
    link_path,
    outbox_messages,
    post_form,
    wait_for_messages,
    web_login,
)
from tests.conftest import TEST_PASSWORD
from tests.unit.test_errors import assert_error_shape

EMAIL = "forgetful@people.example"


def _account(app: Any, email: str = EMAIL, role: Role = Role.RESEARCHER) -> int:
    market = app.extensions["market"]
    with market.database.write() as session:
        user = accounts.create_user(
            session, email=email, role=role, password=TEST_PASSWORD, passwords=market.passwords
        )
        return user.id or 0


def _bearer(client: FlaskClient, email: str = EMAIL, password: str = TEST_PASSWORD) -> dict:
    response = client.post("/api/v1/tokens", json={"email": email, "password": password})
    assert response.status_code == 201, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['token']}"}


def _signed_in_client(app: Any, email: str = EMAIL, password: str = TEST_PASSWORD):
    client = app.test_client()
    assert web_login(client, email, password).status_code == 302
    assert client.get("/account").status_code == 200
    return client


def _reset_link(app: Any, client: FlaskClient, email: str = EMAIL) -> str:
    before = len(outbox_messages(app))
    response = client.post("/api/v1/password-resets", json={"email": email})
    assert response.status_code == 202
    messages = wait_for_messages(app, before + 1)
    assert len(messages) == before + 1
    assert messages[-1]["To"] == email
    assert messages[-1]["Subject"] == "Reset your password"
    return link_path(messages[-1])


def test_forgot_mail_reset_ends_every_session_and_token(make_app) -> None:
    app = make_app()
    _account(app)
    api = app.test_client()
    tokens = [_bearer(api), _bearer(api)]
    browser = _signed_in_client(app)
    for headers in tokens:
        assert api.get("/api/v1/me", headers=headers).status_code == 200

    link = _reset_link(app, api)
    person = app.test_client()
    form = person.get(link)
    assert form.status_code == 200 and 'name="password"' in form.get_data(as_text=True)
    done = post_form(person, link, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert done.status_code == 302 and done.headers["Location"].endswith("/login")

    for headers in tokens:
        refused = api.get("/api/v1/me", headers=headers)
        assert refused.status_code == 401
        assert_error_shape(refused.get_json(), "authentication_required")
    assert browser.get("/account").status_code == 302  # sent to sign in
    old = api.post("/api/v1/tokens", json={"email": EMAIL, "password": TEST_PASSWORD})
    assert old.status_code == 401
    assert api.get("/api/v1/me", headers=_bearer(api, password=NEW_PASSWORD)).status_code == 200

    # Used once: the same link now says so, and changes nothing.
    again = person.get(link)
    assert again.status_code == 410
    assert "already used" in again.get_data(as_text=True)
    with app.extensions["market"].database.read() as session:
        kinds = session.exec(select(AuditEntry.kind).order_by(AuditEntry.seq)).all()
        stored = session.exec(select(MailToken)).one()
    assert "user.password_reset" in kinds
    assert link.rsplit("/", 1)[1] not in (stored.token_hash,)  # only a hash is stored
    assert len(stored.token_hash) == 64


def test_reset_request_never_says_whether_the_address_exists(make_app) -> None:
    app = make_app()
    _account(app)
    client = app.test_client()
    known = client.post("/api/v1/password-resets", json={"email": EMAIL})
    unknown = client.post("/api/v1/password-resets", json={"email": "ghost@people.example"})
    assert known.status_code == unknown.status_code == 202
    assert known.get_json() == unknown.get_json()
    page_known = post_form(client, "/password/forgot", {"email": EMAIL})
    page_unknown = post_form(client, "/password/forgot", {"email": "ghost@people.example"})
    assert page_known.status_code == page_unknown.status_code == 200
    assert page_known.get_data(as_text=True) == page_unknown.get_data(as_text=True)
    messages = wait_for_messages(app, 2)
    assert [m["To"] for m in messages] == [EMAIL, EMAIL]  # nothing to the unknown address


def test_expired_unknown_and_superseded_reset_links_are_refused(make_app) -> None:
    app = make_app(accounts={"reset_ttl_minutes": 5})
    _account(app)
    client = app.test_client()
    first = _reset_link(app, client)
    second = _reset_link(app, client)
    superseded = client.get(first)
    assert superseded.status_code == 410

    unknown = client.get("/password/reset/no-such-link")
    assert unknown.status_code == 404
    assert "not valid" in unknown.get_data(as_text=True)

    with app.extensions["market"].database.write() as session:
        for link in session.exec(select(MailToken)).all():
            link.expires_at = utcnow() - timedelta(seconds=1)
            session.add(link)
    expired = client.get(second)
    assert expired.status_code == 410
    assert "expired" in expired.get_data(as_text=True)
    # Posting to an expired link changes nothing either.
    posted = post_form(
        client,
        "/password/forgot",
        {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        action=second,
    )
    assert posted.status_code == 410
    assert _bearer(client)  # the old password still works


def test_a_weak_new_password_keeps_the_link_and_the_old_password(make_app) -> None:
    app = make_app()
    _account(app)
    client = app.test_client()
    link = _reset_link(app, client)
    weak = post_form(client, link, {"password": "password1234", "confirm": "password1234"})
    assert weak.status_code == 422
    assert "too easy to guess" in weak.get_data(as_text=True)
    assert _bearer(client)  # unchanged
    done = post_form(client, link, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert done.status_code == 302  # the link was not used up by the refusal


def test_a_flood_of_reset_requests_gets_429_and_no_more_mail(make_app) -> None:
    app = make_app(accounts={"reset_rate_limit": "3 per 15 minutes"})
    _account(app)
    client = app.test_client()
    statuses = [
        client.post("/api/v1/password-resets", json={"email": EMAIL}).status_code for _ in range(3)
    ]
    # The web form shares the budget: switching doors does not help.
    page = post_form(client, "/password/forgot", {"email": EMAIL})
    flood = client.post("/api/v1/password-resets", json={"email": EMAIL})
    assert statuses == [202, 202, 202]
    assert page.status_code == 429
    assert flood.status_code == 429
    assert_error_shape(flood.get_json(), "rate_limited")
    assert len(wait_for_messages(app, 3)) == 3
    with app.extensions["market"].database.read() as session:
        assert len(session.exec(select(MailToken)).all()) == 3


def test_change_password_through_the_api_ends_other_tokens_and_sessions(make_app) -> None:
    app = make_app()
    _account(app)
    client = app.test_client()
    mine, other = _bearer(client), _bearer(client)
    browser = _signed_in_client(app)

    wrong = client.put(
        "/api/v1/me/password",
        json={"current_password": "not the password", "new_password": NEW_PASSWORD},
        headers=mine,
    )
    assert wrong.status_code == 401
    assert_error_shape(wrong.get_json(), "invalid_credentials")
    weak = client.put(
        "/api/v1/me/password",
        json={"current_password": TEST_PASSWORD, "new_password": "qwertyuiop1234"},
        headers=mine,
    )
    assert weak.status_code == 422
    assert "too easy to guess" in weak.get_json()["error"]["message"]
    assert client.get("/api/v1/me", headers=other).status_code == 200  # nothing changed yet

    changed = client.put(
        "/api/v1/me/password",
        json={"current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD},
        headers=mine,
    )
    assert changed.status_code == 204
    assert client.get("/api/v1/me", headers=mine).status_code == 200  # the caller's own
    assert client.get("/api/v1/me", headers=other).status_code == 401
    assert browser.get("/account").status_code == 302
    assert (
        client.post("/api/v1/tokens", json={"email": EMAIL, "password": TEST_PASSWORD}).status_code
        == 401
    )
    assert _bearer(client, password=NEW_PASSWORD)


def test_anonymous_password_change_is_401_before_the_body_is_read(make_app) -> None:
    app = make_app()
    response = app.test_client().put("/api/v1/me/password", data=b"{not json")
    assert response.status_code == 401


def test_change_password_on_the_account_page_keeps_this_browser_only(make_app) -> None:
    app = make_app()
    _account(app)
    here, elsewhere = _signed_in_client(app), _signed_in_client(app)
    token = _bearer(here)
    wrong = post_form(
        here,
        "/account",
        {"current_password": "nope", "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        action="/account/password",
    )
    assert wrong.status_code == 422
    assert "current password is wrong" in wrong.get_data(as_text=True)
    done = post_form(
        here,
        "/account",
        {"current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        action="/account/password",
    )
    assert done.status_code == 302
    assert here.get("/account").status_code == 200
    assert elsewhere.get("/account").status_code == 302
    assert here.get("/api/v1/me", headers=token).status_code == 401
    with app.extensions["market"].database.read() as session:
        live = session.exec(select(ApiToken).where(ApiToken.revoked_at == None)).all()  # noqa: E711
    assert live == []


def test_a_copied_session_cookie_is_refused_after_sign_out(make_app) -> None:
    app = make_app()
    _account(app)
    browser = _signed_in_client(app)
    cookie = browser.get_cookie("market_session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("market_session", cookie.value)
    assert thief.get("/account").status_code == 200  # the copy works while signed in

    token = post_form(browser, "/account", {}, action="/logout")
    assert token.status_code == 302
    assert browser.get("/account").status_code == 302
    after = thief.get("/account")
    assert after.status_code == 302 and "/login" in after.headers["Location"]


def test_a_suspended_account_gets_no_reset_that_works(make_app) -> None:
    app = make_app()
    user_id = _account(app)
    client = app.test_client()
    link = _reset_link(app, client)
    with app.extensions["market"].database.write() as session:
        user = session.get(User, user_id)
        accounts.set_active(session, user=user, active=False, actor_id=None)
    # A link sent before the suspension does nothing now; a new request mails nothing.
    assert client.get(link).status_code == 404
    assert client.post("/api/v1/password-resets", json={"email": EMAIL}).status_code == 202
    with app.extensions["market"].database.read() as session:
        assert len(session.exec(select(MailToken)).all()) == 1  # no new link was made


def test_hostile_addresses_get_a_clear_answer_not_a_500(make_app) -> None:
    app = make_app()
    _account(app)
    client = app.test_client()
    for email in ("nul\u0000@people.example", "not an address", "x" * 300 + "@people.example"):
        response = client.post("/api/v1/password-resets", json={"email": email})
        assert response.status_code == 422, email
        assert_error_shape(response.get_json(), "validation_error")
    page = post_form(client, "/password/forgot", {"email": "nul\u0000@people.example"})
    assert page.status_code == 200  # the page's usual answer, and no mail
    login = web_login(client, "nul\u0000@people.example", TEST_PASSWORD)
    assert login.status_code == 401
    with app.extensions["market"].database.read() as session:
        assert session.exec(select(MailToken)).all() == []
