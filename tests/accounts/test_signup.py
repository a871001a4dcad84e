"""Self sign-up: open, approval and closed modes, the verification link from the real outbox,
admin approval, and every refusal leaving nothing behind (no account, no link, no mail)."""

from __future__ import annotations

import os
import stat
from typing import Any

import pytest
from sqlmodel import func, select

from market.accounts import services as accounts
from market.accounts.models import MailToken, Role, User
from market.audit.models import AuditEntry
from tests.accounts.conftest import (
    NEW_PASSWORD,
    link_path,
    outbox_messages,
    sign_up,
    web_login,
)
from tests.catalog.conftest import CSV_METADATA
from tests.conftest import TEST_PASSWORD
from tests.unit.test_errors import assert_error_shape


def _count(app: Any, table: Any) -> int:
    with app.extensions["market"].database.read() as session:
        return int(session.exec(select(func.count()).select_from(table)).one())


def _admin_headers(app: Any, client: Any) -> dict[str, str]:
    market = app.extensions["market"]
    with market.database.write() as session:
        accounts.create_user(
            session,
            email="boss@people.example",
            role=Role.ADMIN,
            password=TEST_PASSWORD,
            passwords=market.passwords,
        )
    response = client.post(
        "/api/v1/tokens", json={"email": "boss@people.example", "password": TEST_PASSWORD}
    )
    return {"Authorization": f"Bearer {response.get_json()['token']}"}


def _token(client: Any, email: str, password: str = NEW_PASSWORD) -> Any:
    return client.post("/api/v1/tokens", json={"email": email, "password": password})


def test_open_sign_up_verify_then_list(make_app) -> None:
    app = make_app(accounts={"signup": "open"})
    client = app.test_client()
    response = sign_up(client, "Ada@People.example", role="owner")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["email"] == "ada@people.example"
    assert (body["role"], body["status"], body["email_verified"]) == ("owner", "active", False)
    assert body["verification_mail_sent"] is True

    # The outbox holds one real RFC 5322 message, readable by its owner only.
    (message,) = outbox_messages(app)
    assert message["To"] == "ada@people.example"
    assert message["Subject"] == "Confirm your e-mail address"
    folder = app.extensions["market"].settings.outbox_dir
    (path,) = folder.glob("*.eml")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    # Signed in but unverified: listing is refused with a clear code, before any parsing.
    token = _token(client, "ada@people.example")
    assert token.status_code == 201
    headers = {"Authorization": f"Bearer {token.get_json()['token']}"}
    refused = client.post("/api/v1/datasets", json=CSV_METADATA, headers=headers)
    assert refused.status_code == 403
    assert_error_shape(refused.get_json(), "email_unverified")

    page = client.get(link_path(message))
    assert page.status_code == 200
    assert "ada@people.example is confirmed" in page.get_data(as_text=True)
    listed = client.post("/api/v1/datasets", json=CSV_METADATA, headers=headers)
    assert listed.status_code == 201, listed.get_json()
    me = client.get("/api/v1/me", headers=headers).get_json()
    assert me["email_verified"] is True

    # The link worked once.
    again = client.get(link_path(message))
    assert again.status_code == 410
    assert "already used" in again.get_data(as_text=True)


def test_approval_sign_up_waits_for_an_admin(make_app) -> None:
    app = make_app()  # the default mode: approval
    client = app.test_client()
    created = sign_up(client, "grace@people.example")
    assert created.status_code == 201
    assert created.get_json()["status"] == "pending"
    user_id = created.get_json()["id"]

    # Pending: no token, no web session, each with a clear message.
    refused = _token(client, "grace@people.example")
    assert refused.status_code == 403
    assert_error_shape(refused.get_json(), "account_pending")
    page = web_login(client, "grace@people.example", NEW_PASSWORD)
    assert page.status_code == 403
    assert "waits for an administrator" in page.get_data(as_text=True)
    assert client.get("/account").status_code == 302  # not signed in

    verified = client.get(link_path(outbox_messages(app)[0]))
    assert verified.status_code == 200
    assert "administrator still has to approve" in verified.get_data(as_text=True)

    admin = _admin_headers(app, client)
    pending = client.get("/api/v1/users?status=pending", headers=admin).get_json()
    assert pending["total"] == 1
    assert [u["email"] for u in pending["items"]] == ["grace@people.example"]
    approved = client.patch(f"/api/v1/users/{user_id}", json={"status": "active"}, headers=admin)
    assert approved.status_code == 200
    assert approved.get_json()["status"] == "active"

    assert _token(client, "grace@people.example").status_code == 201
    assert web_login(client, "grace@people.example", NEW_PASSWORD).status_code == 302
    with app.extensions["market"].database.read() as session:
        entry = session.exec(select(AuditEntry).where(AuditEntry.kind == "user.approved")).one()
        admin_id = session.exec(select(User.id).where(User.email == "boss@people.example")).one()
    assert (entry.subject, entry.actor_id) == (str(user_id), admin_id)


def test_closed_sign_up_is_refused_and_creates_nothing(make_app) -> None:
    app = make_app(accounts={"signup": "closed"})
    client = app.test_client()
    response = sign_up(client, "nobody@people.example")
    assert response.status_code == 403
    assert_error_shape(response.get_json(), "signup_closed")
    page = client.get("/signup")
    assert page.status_code == 403
    assert "Sign-up is closed" in page.get_data(as_text=True)
    assert _count(app, User) == 0
    assert outbox_messages(app) == []


@pytest.mark.parametrize("role", ["admin", "auditor", "superuser"])
def test_sign_up_as_a_privileged_or_unknown_role_is_refused(make_app, role: str) -> None:
    app = make_app(accounts={"signup": "open"})
    response = sign_up(app.test_client(), "climber@people.example", role=role)
    assert response.status_code == 422
    assert_error_shape(response.get_json(), "validation_error")
    assert _count(app, User) == 0
    assert _count(app, MailToken) == 0
    assert outbox_messages(app) == []


def test_duplicate_email_is_409_and_sends_nothing(make_app) -> None:
    app = make_app(accounts={"signup": "open"})
    client = app.test_client()
    assert sign_up(client, "twin@people.example").status_code == 201
    again = sign_up(client, "TWIN@people.example", role="owner")
    assert again.status_code == 409
    assert_error_shape(again.get_json(), "conflict")
    assert _count(app, User) == 1
    assert _count(app, MailToken) == 1
    assert len(outbox_messages(app)) == 1


@pytest.mark.parametrize(
    ("password", "says"),
    [
        ("short-one", "at least 12 characters"),
        ("password1234", "too easy to guess"),
        ("Password123!", "too easy to guess"),
        ("123456789012", "too easy to guess"),
        ("aaaaaaaaaaaaaaaa", "too easy to guess"),
        ("qwertyuiop!!asdf", "too easy to guess"),
        ("weakling.person-2024", "e-mail address's name"),
    ],
)
def test_weak_passwords_are_refused_with_a_reason(make_app, password: str, says: str) -> None:
    app = make_app(accounts={"signup": "open"})
    response = sign_up(app.test_client(), "weakling.person@people.example", password=password)
    assert response.status_code == 422
    body = response.get_json()
    assert_error_shape(body, "validation_error")
    assert says in body["error"]["message"]
    assert _count(app, User) == 0
    assert outbox_messages(app) == []


def test_the_signup_page_creates_an_account_and_shows_refusals(make_app) -> None:
    from tests.accounts.conftest import post_form

    app = make_app(accounts={"signup": "open"})
    client = app.test_client()
    weak = post_form(
        client,
        "/signup",
        {
            "email": "page@people.example",
            "role": "owner",
            "password": "password1234",
            "confirm": "password1234",
        },
    )
    assert weak.status_code == 422
    assert "too easy to guess" in weak.get_data(as_text=True)
    admin = post_form(
        client,
        "/signup",
        {
            "email": "page@people.example",
            "role": "admin",
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )
    assert admin.status_code == 422  # not a choice of the form
    assert _count(app, User) == 0
    made = post_form(
        client,
        "/signup",
        {
            "email": "page@people.example",
            "role": "owner",
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )
    assert made.status_code == 302 and made.headers["Location"].endswith("/login")
    assert _count(app, User) == 1
    assert len(outbox_messages(app)) == 1


def test_unknown_and_mistyped_verification_links_are_404(make_app) -> None:
    app = make_app()
    response = app.test_client().get("/verify-email/not-a-real-link")
    assert response.status_code == 404
    assert "not valid" in response.get_data(as_text=True)


def test_a_flood_of_sign_ups_gets_429(make_app) -> None:
    app = make_app(accounts={"signup": "open", "signup_rate_limit": "3 per hour"})
    client = app.test_client()
    statuses = [sign_up(client, f"flood{i}@people.example").status_code for i in range(4)]
    assert statuses == [201, 201, 201, 429]
    assert_error_shape(sign_up(client, "late@people.example").get_json(), "rate_limited")
    assert _count(app, User) == 3


def test_verification_mail_can_be_asked_again_and_retires_the_old_link(make_app) -> None:
    app = make_app(accounts={"signup": "open"})
    client = app.test_client()
    sign_up(client, "again@people.example")
    old = link_path(outbox_messages(app)[0])
    asked = client.post("/api/v1/email-verifications", json={"email": "again@people.example"})
    unknown = client.post("/api/v1/email-verifications", json={"email": "ghost@people.example"})
    assert asked.status_code == unknown.status_code == 202
    assert asked.get_json() == unknown.get_json()
    from tests.accounts.conftest import wait_for_messages

    messages = wait_for_messages(app, 2)
    assert len(messages) == 2
    assert client.get(old).status_code == 410
    assert client.get(link_path(messages[1])).status_code == 200


def test_the_account_page_mails_a_new_link_to_an_unverified_account(make_app) -> None:
    from tests.accounts.conftest import post_form, wait_for_messages

    app = make_app(accounts={"signup": "open"})
    client = app.test_client()
    sign_up(client, "later@people.example")
    assert web_login(client, "later@people.example", NEW_PASSWORD).status_code == 302
    page = client.get("/account").get_data(as_text=True)
    assert "not confirmed yet" in page and "Mail me a new link" in page
    sent = post_form(client, "/account", {}, action="/account/verify-email")
    assert sent.status_code == 302
    messages = wait_for_messages(app, 2)
    assert len(messages) == 2
    assert client.get(link_path(messages[0])).status_code == 410  # retired by the new one
    assert client.get(link_path(messages[1])).status_code == 200
    assert "confirmed" in client.get("/account").get_data(as_text=True)
    assert "Mail me a new link" not in client.get("/account").get_data(as_text=True)


def test_two_sign_ups_for_one_address_at_once_give_201_and_409(make_app) -> None:
    import threading

    app = make_app(accounts={"signup": "open"})
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def attempt() -> None:
        client = app.test_client()
        barrier.wait(timeout=60)
        statuses.append(sign_up(client, "racer@people.example").status_code)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(statuses) == [201, 409]
    assert _count(app, User) == 1
