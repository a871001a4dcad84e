"""The OpenAPI document is generated from the models that validate requests."""

from __future__ import annotations

from market.accounts.api import TokenRequest


def test_openapi_document_lists_the_api_and_bearer_auth(client) -> None:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"].startswith("3.")
    assert {"/api/v1/tokens", "/api/v1/me", "/api/v1/users"} <= set(doc["paths"])
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    # Signing in, signing up and asking for a reset or verification mail are public; every
    # other operation needs the bearer token.
    public = {
        ("/api/v1/tokens", "post"),
        ("/api/v1/accounts", "post"),
        ("/api/v1/password-resets", "post"),
        ("/api/v1/email-verifications", "post"),
    }
    for path, method in public:
        assert doc["paths"][path][method].get("security", []) == [], (method, path)
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if (path, method) not in public:
                assert operation.get("security") == [{"bearer": []}], (method, path)


def test_request_schema_is_the_validating_model(client) -> None:
    doc = client.get("/api/openapi.json").get_json()
    schema = doc["components"]["schemas"]["TokenRequest"]
    assert set(schema["required"]) == set(
        name for name, field in TokenRequest.model_fields.items() if field.is_required()
    )
    assert schema["properties"]["email"]["maxLength"] == 254


def test_interactive_docs_are_served_from_local_files(client) -> None:
    page = client.get("/api/swagger")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "swagger-ui-bundle.js" in html and "unpkg.com" not in html and "cdn" not in html.lower()
    script = client.get("/api/swagger/js/swagger-ui-bundle.js")
    assert script.status_code == 200
    script.close()
