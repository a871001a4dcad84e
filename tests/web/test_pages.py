"""The HTML interface: home, sign-in with CSRF and session rotation, account and tokens."""

from __future__ import annotations

from market.accounts.models import Role
from tests.conftest import TEST_PASSWORD
from tests.helpers import csrf_token_from, login


def test_home_says_what_the_marketplace_is(client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "differentially private training runs" in text
    assert "Sign in" in text
    assert "https://" not in text  # no CDN: nothing loads from elsewhere


def test_login_page_and_successful_sign_in(client, make_user) -> None:
    user = make_user(Role.OWNER)
    assert client.get("/login").status_code == 200
    assert login(client, user.email, TEST_PASSWORD) == 302
    home = client.get("/").get_data(as_text=True)
    assert f"signed in as <strong>{user.email}</strong> (owner)" in home


def test_form_post_without_csrf_token_is_rejected(client, make_user) -> None:
    user = make_user()
    response = client.post(
        "/login",
        data={"email": user.email, "password": TEST_PASSWORD},
        headers={"Accept": "text/html"},
    )
    assert response.status_code == 400
    assert b'data-code="csrf_failed"' in response.data
    assert "signed in as" not in client.get("/").get_data(as_text=True)


def test_wrong_password_shows_a_form_error(client, make_user) -> None:
    user = make_user()
    assert login(client, user.email, "not the password") == 401
    token = csrf_token_from(client, "/login")
    page = client.post(
        "/login", data={"email": user.email, "password": "nope", "csrf_token": token}
    ).get_data(as_text=True)
    assert "the e-mail or password is wrong" in page


def test_sixth_rapid_wrong_password_on_the_form_gets_429(client, make_user) -> None:
    user = make_user()
    statuses = [login(client, user.email, "wrong password!") for _ in range(6)]
    assert statuses == [401] * 5 + [429]


def test_session_is_rotated_at_sign_in(client, make_user) -> None:
    user = make_user()
    before = csrf_token_from(client, "/login")
    cookie_before = client.get_cookie("market_session").value
    assert login(client, user.email, TEST_PASSWORD) == 302
    cookie_after = client.get_cookie("market_session").value
    assert cookie_after != cookie_before
    # The anonymous session's CSRF token does not survive into the signed-in session.
    after = csrf_token_from(client, "/account")
    assert after != before


def test_open_redirect_after_login_is_refused(client, make_user) -> None:
    user = make_user()
    token = csrf_token_from(client, "/login")
    response = client.post(
        "/login?next=//evil.example/x",
        data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_account_page_needs_sign_in(client) -> None:
    response = client.get("/account")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_account_page_shows_role_and_creates_and_revokes_tokens(client, make_user) -> None:
    user = make_user(Role.AUDITOR)
    login(client, user.email, TEST_PASSWORD)
    page = client.get("/account").get_data(as_text=True)
    assert 'data-testid="role">auditor<' in page
    token = csrf_token_from(client, "/account")
    client.post("/account/tokens", data={"name": "laptop", "csrf_token": token})
    page = client.get("/account").get_data(as_text=True)
    assert 'data-testid="new-token">mkt_' in page
    secret = page.split('data-testid="new-token">')[1].split("<")[0]
    assert (
        client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    )
    # Shown once only.
    assert secret not in client.get("/account").get_data(as_text=True)
    token_id = client.get(
        "/api/v1/tokens", headers={"Authorization": f"Bearer {secret}"}
    ).get_json()["items"][0]["id"]
    client.post(
        f"/account/tokens/{token_id}/revoke",
        data={"csrf_token": csrf_token_from(client, "/account")},
    )
    assert (
        client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    )


def test_logout_needs_post_with_csrf(client, make_user) -> None:
    user = make_user()
    login(client, user.email, TEST_PASSWORD)
    assert client.get("/logout").status_code == 405
    client.post("/logout", data={"csrf_token": csrf_token_from(client, "/account")})
    assert client.get("/account").status_code == 302


def test_security_headers_and_cookie_flags(client, make_user) -> None:
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    user = make_user()
    token = csrf_token_from(client, "/login")
    response = client.post(
        "/login", data={"email": user.email, "password": TEST_PASSWORD, "csrf_token": token}
    )
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
