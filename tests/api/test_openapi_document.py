"""The OpenAPI document's promises that hold for every operation, checked over all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from market.api.schemas import INT64_MAX
from tests.abuse.test_request_limits import _make_app

ALWAYS = {"401", "403", "404", "422", "503"}
WITH_A_BODY = {"400", "413", "415"}


@pytest.fixture
def document(tmp_path: Path, sqlite_url: str) -> dict[str, Any]:
    response = _make_app(tmp_path, sqlite_url).test_client().get("/api/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if path.startswith("/api/v1/")
    ]


def test_every_operation_documents_the_real_error_body(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        expected = ALWAYS | (WITH_A_BODY if "requestBody" in operation else set())
        assert expected <= set(responses), (method, path, sorted(responses))
        for status in expected:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
        assert "Retry-After" in responses["503"]["headers"]


def test_every_integer_parameter_is_bounded_to_64_bits(document: dict[str, Any]) -> None:
    """A number past the database's range is refused at the edge, never sent to a driver."""
    for method, path, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            schema = parameter["schema"]
            options = schema.get("anyOf", [schema])
            for option in options:
                if option.get("type") == "integer":
                    assert option.get("maximum", INT64_MAX + 1) <= INT64_MAX, (
                        method,
                        path,
                        parameter["name"],
                    )
