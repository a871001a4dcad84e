"""The admin area: search and filter accounts, see sign-ins and tokens (never secrets),
approve, change roles, suspend (sessions and tokens stop at once) and reactivate; each
change an audit entry naming the admin; refusals change nothing."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlmodel import select

from market.accounts import services as accounts
from market.accounts.models import Role, User
from market.audit.models import AuditEntry
from tests.accounts.conftest import NEW_PASSWORD, post_form, sign_up, web_login
from tests.conftest import TEST_PASSWORD
from tests.unit.test_errors import assert_error_shape

ADMIN = "chief@people.example"


def _make(app: Any, email: str, role: Role) -> int:
    market = app.extensions["market"]
    with market.database.write() as session:
        user = accounts.create_user(
            session, email=email, role=role, password=TEST_PASSWORD, passwords=market.passwords
        )
        return user.id or 0


def _bearer(client: FlaskClient, email: str, password: str = TEST_PASSWORD) -> dict[str, str]:
    response = client.post("/api/v1/tokens", json={"email": email, "password": password})
    assert response.status_code == 201, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['token']}"}


def _audit(app: Any, kind: str) -> list[AuditEntry]:
    with app.extensions["market"].database.read() as session:
        return list(session.exec(select(AuditEntry).where(AuditEntry.kind == kind)).all())


def test_search_filters_and_shows_tokens_without_secrets(make_app) -> None:
    app = make_app(accounts={"signup": "approval"})
    client = app.test_client()
    admin_id = _make(app, ADMIN, Role.ADMIN)
    owner_id = _make(app, "olga.owner@people.example", Role.OWNER)
    _make(app, "rita.researcher@people.example", Role.RESEARCHER)
    sign_up(client, "pete.pending@people.example")
    admin = _bearer(client, ADMIN)
    owner_token = client.post(
        "/api/v1/tokens",
        json={"email": "olga.owner@people.example", "password": TEST_PASSWORD, "name": "laptop"},
    ).get_json()["token"]
    web_login(app.test_client(), "olga.owner@people.example", TEST_PASSWORD)

    everyone = client.get("/api/v1/users", headers=admin).get_json()
    assert everyone["total"] == 4
    assert everyone["items"][0]["email"] == "pete.pending@people.example"  # waiting first

    owners = client.get("/api/v1/users?role=owner", headers=admin).get_json()
    assert [u["id"] for u in owners["items"]] == [owner_id]
    (olga,) = owners["items"]
    assert olga["last_login_at"] is not None
    (token,) = olga["tokens"]
    assert token["name"] == "laptop" and owner_token.startswith(token["prefix"])
    assert owner_token not in str(everyone) and owner_token not in str(owners)
    assert "token_hash" not in token and "password_hash" not in olga

    found = client.get("/api/v1/users?q=RESEARCHER", headers=admin).get_json()
    assert [u["email"] for u in found["items"]] == ["rita.researcher@people.example"]
    pending = client.get("/api/v1/users?status=pending", headers=admin).get_json()
    assert [u["email"] for u in pending["items"]] == ["pete.pending@people.example"]
    active_admins = client.get("/api/v1/users?status=active&role=admin", headers=admin)
    assert [u["id"] for u in active_admins.get_json()["items"]] == [admin_id]
    # A LIKE wildcard in the search is a plain character.
    assert client.get("/api/v1/users?q=%25", headers=admin).get_json()["total"] == 0

    bad = client.get("/api/v1/users?status=sleeping", headers=admin)
    assert bad.status_code == 422


def test_role_change_and_suspension_take_effect_at_once(make_app) -> None:
    app = make_app()
    client = app.test_client()
    admin_id = _make(app, ADMIN, Role.ADMIN)
    user_id = _make(app, "mallory@people.example", Role.RESEARCHER)
    admin = _bearer(client, ADMIN)
    theirs = _bearer(client, "mallory@people.example")
    browser = app.test_client()
    assert web_login(browser, "mallory@people.example", TEST_PASSWORD).status_code == 302
    assert browser.get("/account").status_code == 200

    promoted = client.patch(f"/api/v1/users/{user_id}", json={"role": "owner"}, headers=admin)
    assert promoted.status_code == 200 and promoted.get_json()["role"] == "owner"
    assert client.get("/api/v1/me", headers=theirs).get_json()["role"] == "owner"
    (entry,) = _audit(app, "user.role_changed")
    assert (entry.actor_id, entry.subject) == (admin_id, str(user_id))

    suspended = client.patch(
        f"/api/v1/users/{user_id}", json={"status": "suspended"}, headers=admin
    )
    assert suspended.status_code == 200
    body = suspended.get_json()
    assert body["status"] == "suspended"
    assert all(t["revoked_at"] is not None for t in body["tokens"])
    refused = client.get("/api/v1/me", headers=theirs)
    assert refused.status_code == 401
    assert_error_shape(refused.get_json(), "authentication_required")
    assert browser.get("/account").status_code == 302
    assert (
        client.post(
            "/api/v1/tokens", json={"email": "mallory@people.example", "password": TEST_PASSWORD}
        ).status_code
        == 401
    )
    (entry,) = _audit(app, "user.suspended")
    assert entry.actor_id == admin_id

    back = client.patch(f"/api/v1/users/{user_id}", json={"status": "active"}, headers=admin)
    assert back.get_json()["status"] == "active"
    assert client.get("/api/v1/me", headers=theirs).status_code == 401  # stays revoked
    assert _bearer(client, "mallory@people.example")
    assert len(_audit(app, "user.activated")) == 1


def test_refusals_change_nothing(make_app) -> None:
    app = make_app()
    client = app.test_client()
    admin_id = _make(app, ADMIN, Role.ADMIN)
    user_id = _make(app, "plain@people.example", Role.RESEARCHER)
    admin = _bearer(client, ADMIN)
    plain = _bearer(client, "plain@people.example")

    forbidden = client.patch(f"/api/v1/users/{user_id}", json={"role": "admin"}, headers=plain)
    assert forbidden.status_code == 403
    assert client.get("/api/v1/users", headers=plain).status_code == 403
    assert client.patch(f"/api/v1/users/{user_id}", json={"role": "admin"}).status_code == 401
    self_demote = client.patch(f"/api/v1/users/{admin_id}", json={"role": "owner"}, headers=admin)
    assert self_demote.status_code == 409
    self_suspend = client.patch(
        f"/api/v1/users/{admin_id}", json={"status": "suspended"}, headers=admin
    )
    assert self_suspend.status_code == 409
    pending = client.patch(f"/api/v1/users/{user_id}", json={"status": "pending"}, headers=admin)
    assert pending.status_code == 422
    unknown_role = client.patch(f"/api/v1/users/{user_id}", json={"role": "god"}, headers=admin)
    assert unknown_role.status_code == 422
    missing = client.patch("/api/v1/users/999999", json={"role": "owner"}, headers=admin)
    assert missing.status_code == 404
    with app.extensions["market"].database.read() as session:
        roles = {u.email: (u.role, u.status.value) for u in session.exec(select(User)).all()}
    assert roles == {
        ADMIN: (Role.ADMIN, "active"),
        "plain@people.example": (Role.RESEARCHER, "active"),
    }
    assert _audit(app, "user.role_changed") == [] and _audit(app, "user.suspended") == []


def test_the_admin_page_approves_and_suspends(make_app) -> None:
    app = make_app()
    _make(app, ADMIN, Role.ADMIN)
    _make(app, "nosy@people.example", Role.AUDITOR)
    client = app.test_client()
    created = sign_up(client, "newbie@people.example", role="owner")
    newbie = created.get_json()["id"]

    nosy = app.test_client()
    web_login(nosy, "nosy@people.example", TEST_PASSWORD)
    assert nosy.get("/admin/users").status_code == 403
    assert "Admin</a>" not in nosy.get("/").get_data(as_text=True)

    browser = app.test_client()
    assert web_login(browser, ADMIN, TEST_PASSWORD).status_code == 302
    assert 'data-testid="admin-link"' in browser.get("/").get_data(as_text=True)
    page = browser.get("/admin/users?status=pending")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "newbie@people.example" in html
    assert "nosy@people.example" not in html
    assert page.headers["Cache-Control"] == "no-store"

    approved = post_form(
        browser, "/admin/users", {}, action=f"/admin/users/{newbie}/status/active?status=pending"
    )
    assert approved.status_code == 302
    assert approved.headers["Location"].endswith("/admin/users?status=pending")
    assert "newbie@people.example is active" in browser.get("/admin/users").get_data(as_text=True)
    assert web_login(app.test_client(), "newbie@people.example", NEW_PASSWORD).status_code == 302

    post_form(browser, "/admin/users", {"role": "researcher"}, action=f"/admin/users/{newbie}/role")
    post_form(browser, "/admin/users", {}, action=f"/admin/users/{newbie}/status/suspended")
    with app.extensions["market"].database.read() as session:
        user = session.get(User, newbie)
        assert (user.role, user.status.value) == (Role.RESEARCHER, "suspended")
    kinds = [e.kind for e in _audit(app, "user.approved")] + [
        e.kind for e in _audit(app, "user.suspended")
    ]
    assert kinds == ["user.approved", "user.suspended"]
    # Without the form's CSRF token nothing happens.
    assert browser.post(f"/admin/users/{newbie}/status/active").status_code == 400


def test_search_with_a_nul_character_is_no_error(make_app) -> None:
    app = make_app()
    _make(app, ADMIN, Role.ADMIN)
    client = app.test_client()
    response = client.get("/api/v1/users?q=%00chief", headers=_bearer(client, ADMIN))
    assert response.status_code == 200
    assert [u["email"] for u in response.get_json()["items"]] == [ADMIN]
