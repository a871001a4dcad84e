"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

#: Environment for a `market worker` or `market serve` the test starts: no cost calibration at
#: start (a dozen timed DP-SGD runs, 10-40 s on two busy cores). Tests of the worker's
#: supervision, crashes and queues do not need it; tests/costing calibrates on purpose.
NO_CALIBRATION = {"MARKET_COSTING_ESTIMATE_CALIBRATE": "false"}

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


def multipart_body(fields: dict[str, str], file: tuple[str, str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body built in memory, fields first (as a browser sends them)."""
    boundary = "----market-test-boundary-7d9f"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    name, filename, content = file
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
