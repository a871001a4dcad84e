"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

_CSRF = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)


def csrf_token_from(client: FlaskClient, path: str) -> str:
    """The CSRF token a real browser would find in the form at ``path``."""
    html = client.get(path).get_data(as_text=True)
    match = _CSRF.search(html) or re.search(r'id="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return next(group for group in match.groups() if group)


def login(client: FlaskClient, email: str, password: str) -> int:
    token = csrf_token_from(client, "/login")
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token}
    )
    return response.status_code
