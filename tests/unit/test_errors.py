"""The error shape of docs/api.md, pinned: every 4xx/5xx body looks exactly like this."""

from __future__ import annotations

import pytest

from market.errors import MarketError


def assert_error_shape(body: dict, code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)


def test_unknown_api_route_gets_json_404(client) -> None:
    response = client.get("/api/v1/does-not-exist")
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert_error_shape(response.get_json(), "not_found")


def test_unknown_page_gets_html_404(client) -> None:
    response = client.get("/no-such-page", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert b'data-code="not_found"' in response.data
    assert b"Traceback" not in response.data


def test_json_client_gets_json_even_off_api(client) -> None:
    response = client.get("/no-such-page", headers={"Accept": "application/json"})
    assert_error_shape(response.get_json(), "not_found")


def test_wrong_method_is_405_with_allow(client) -> None:
    response = client.put("/api/v1/me")
    assert response.status_code == 405
    assert_error_shape(response.get_json(), "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_malformed_json_is_400_invalid_json(client) -> None:
    response = client.post(
        "/api/v1/tokens", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert_error_shape(response.get_json(), "invalid_json")


def test_non_json_body_is_415_saying_what_to_send(client) -> None:
    response = client.post("/api/v1/tokens", data={"email": "a@b.example"})
    assert response.status_code == 415
    body = response.get_json()
    assert_error_shape(body, "unsupported_media_type")
    assert "application/json" in body["error"]["message"]


def test_missing_body_is_422_saying_what_to_send(client) -> None:
    response = client.post("/api/v1/tokens")
    assert response.status_code == 422
    body = response.get_json()
    assert_error_shape(body, "validation_error")
    assert "JSON object" in body["error"]["message"]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"email": "\xff\xfe"}', id="not-utf8"),
        pytest.param(b"\xef\xbb\xbf{}", id="utf8-bom"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-past-recursion-limit"),
        pytest.param(b'{"n": ' + b"9" * 10_000 + b"}", id="over-int-digit-limit"),
        pytest.param(b'{"epsilon": NaN}', id="nan"),
        pytest.param(b'{"a": 1', id="truncated"),
    ],
)
def test_unparsable_json_is_400_invalid_json_never_500(client, raw: bytes) -> None:
    response = client.post("/api/v1/tokens", data=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert_error_shape(response.get_json(), "invalid_json")


@pytest.mark.parametrize("raw", [b"[]", b'"{\\"email\\": 1}"', b"1", b"null", b"true"])
def test_json_that_is_not_an_object_is_422(client, raw: bytes) -> None:
    response = client.post("/api/v1/tokens", data=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    body = response.get_json()
    assert_error_shape(body, "validation_error")
    assert body["error"]["details"]["fields"][0]["field"] == "body"


def test_validation_error_body_is_bounded(client, make_user, token_for) -> None:
    """Thousands of unknown keys: the first MAX_FIELD_ERRORS are listed, with the count."""
    from market.errors import MAX_FIELD_ERRORS

    body = {f"k{i}": i for i in range(5000)} | {"e" * 100_000: 1}
    response = client.post("/api/v1/quotes", json=body)
    assert response.status_code == 401  # authentication comes first
    headers = token_for(make_user("researcher"))
    response = client.post("/api/v1/quotes", json=body, headers=headers)
    assert response.status_code == 422
    details = response.get_json()["error"]["details"]
    assert len(details["fields"]) == MAX_FIELD_ERRORS
    assert details["truncated"] is True and details["error_count"] >= 2
    assert len(response.data) < 10_000


def test_missing_field_names_the_field(client) -> None:
    response = client.post("/api/v1/tokens", json={"email": "a@b.example"})
    assert response.status_code == 422
    fields = response.get_json()["error"]["details"]["fields"]
    assert {"field": "password", "message": "Field required"} in fields


def test_unexpected_exception_is_500_without_traceback(app, client) -> None:
    @app.get("/boom")
    def boom():  # pragma: no cover - raising is the point
        raise RuntimeError("secret internals")

    response = client.get("/boom", headers={"Accept": "application/json"})
    assert response.status_code == 500
    body = response.get_json()
    assert_error_shape(body, "internal_error")
    assert "secret internals" not in response.get_data(as_text=True)


@pytest.mark.parametrize("cls", MarketError.__subclasses__())
def test_every_error_class_has_a_stable_snake_case_code(cls) -> None:
    assert cls.code.replace("_", "").isalpha() and cls.code == cls.code.lower()
    assert 400 <= cls.status <= 599
