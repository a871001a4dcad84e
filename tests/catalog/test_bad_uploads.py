"""Bad input gets a clear 4xx and leaves nothing behind: no file, no listing, no quoted value."""

from __future__ import annotations

import pytest

from market.catalog.models import Dataset, DatasetStatus
from tests.catalog.conftest import FEATURES, cancer_rows, metadata, to_csv
from tests.catalog.test_listing_api import storage_files
from tests.unit.test_errors import assert_error_shape


def _still_a_clean_draft(app, dataset_id: str) -> None:
    assert storage_files(app) == []
    with app.extensions["market"].database.read() as session:
        row = session.get(Dataset, dataset_id)
    assert row.status is DatasetStatus.DRAFT
    assert row.wrapped_key is None and row.rows is None and row.storage_name is None


def _rows_with(**changes) -> list[dict]:
    rows = cancer_rows(40)
    for index, (column, value) in enumerate(changes.items()):
        rows[3 + index][column] = value
    return rows


SECRET_VALUE = "987654.321"


@pytest.mark.parametrize(
    "body, status, code, says",
    [
        (b"", 422, "validation_error", "empty"),
        (to_csv([]), 422, "validation_error", "no rows"),
        (
            to_csv(cancer_rows(30)) + f"1,2,3,benign,{SECRET_VALUE}\n".encode(),
            422,
            "validation_error",
            "a row has 5 fields where the header has 4",
        ),
        (
            to_csv(cancer_rows(30), columns=[*FEATURES[:2], "diagnosis"]),
            422,
            "validation_error",
            "do not match the declared columns",
        ),
        (
            to_csv(_rows_with(**{"mean radius": float(SECRET_VALUE)})),
            422,
            "validation_error",
            "mean radius: 1 out of range",
        ),
        (
            to_csv(_rows_with(diagnosis=f"unsure-{SECRET_VALUE}")),
            422,
            "validation_error",
            "diagnosis: 1 unknown category",
        ),
        (
            to_csv(_rows_with(**{"mean texture": f"n/a{SECRET_VALUE}"})),
            422,
            "validation_error",
            "mean texture: 1 not numeric",
        ),
        (
            to_csv([r for r in cancer_rows(80) if r["diagnosis"] == "benign"]),
            422,
            "validation_error",
            "single class",
        ),
        ("é,ü\n".encode("latin-1") * 3, 422, "validation_error", "not"),
    ],
    ids=[
        "empty",
        "header-only",
        "malformed",
        "columns-mismatch",
        "out-of-bounds",
        "unknown-category",
        "not-numeric",
        "one-class",
        "not-utf8",
    ],
)
def test_bad_csv_is_refused_clearly(
    app, owner, create_draft, upload, body: bytes, status: int, code: str, says: str
) -> None:
    _, headers = owner
    draft = create_draft(headers)
    response = upload(headers, draft["id"], body)
    assert response.status_code == status, response.get_json()
    error = response.get_json()
    assert_error_shape(error, code)
    assert says in error["error"]["message"]
    assert SECRET_VALUE not in response.get_data(as_text=True)
    _still_a_clean_draft(app, draft["id"])


def test_counts_are_per_column_and_add_up_across_batches(app, owner, create_draft, upload) -> None:
    _, headers = owner
    rows = [dict(r) for r in cancer_rows() * 40]  # 22,760 rows: several 1 MiB parser blocks
    for row in rows[::1000]:
        row["mean smoothness"] = 5.0
    draft = create_draft(
        headers,
        metadata(privacy={"epsilon_total": 10.0, "delta": 1e-6, "max_epsilon_per_run": 2.0}),
    )
    response = upload(headers, draft["id"], to_csv(rows))
    assert response.status_code == 422
    details = response.get_json()["error"]["details"]
    assert details["columns"] == {"mean smoothness": {"out_of_range": len(rows[::1000])}}
    _still_a_clean_draft(app, draft["id"])


def test_oversized_upload_gets_413_and_leaves_nothing(tmp_path, database_url, make_user) -> None:
    from market import create_app
    from privacy.vault import init_keydir
    from tests.conftest import app_overrides

    init_keydir(tmp_path / "keys")
    app = create_app(app_overrides(tmp_path, database_url, catalog={"max_upload_bytes": 4096}))
    client = app.test_client()
    from market.accounts import services as accounts
    from tests.conftest import TEST_PASSWORD

    market = app.extensions["market"]
    with market.database.write() as session:
        accounts.create_user(
            session,
            email="big@people.example",
            role="owner",
            password=TEST_PASSWORD,
            passwords=market.passwords,
        )
    token = client.post(
        "/api/v1/tokens", json={"email": "big@people.example", "password": TEST_PASSWORD}
    ).get_json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    draft = client.post("/api/v1/datasets", json=metadata(), headers=headers).get_json()
    response = client.put(
        f"/api/v1/datasets/{draft['id']}/file",
        data=to_csv(cancer_rows()),
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert response.status_code == 413
    assert_error_shape(response.get_json(), "payload_too_large")
    _still_a_clean_draft(app, draft["id"])
    market.database.dispose()


def test_wrong_content_type_is_415_before_reading(app, owner, create_draft, upload) -> None:
    _, headers = owner
    draft = create_draft(headers)
    for content_type in ("application/x-npz", "application/json", "image/png"):
        response = upload(headers, draft["id"], to_csv(cancer_rows(20)), content_type)
        assert response.status_code == 415
        assert_error_shape(response.get_json(), "unsupported_media_type")
        assert "text/csv" in response.get_json()["error"]["message"]
    _still_a_clean_draft(app, draft["id"])


def test_delta_must_be_below_one_over_rows(app, owner, create_draft, upload) -> None:
    _, headers = owner
    # delta 0.005 is valid metadata, but this file has 569 rows and 1/569 < 0.005.
    draft = create_draft(
        headers,
        metadata(privacy={"epsilon_total": 5.0, "delta": 0.005, "max_epsilon_per_run": 1.0}),
    )
    response = upload(headers, draft["id"], to_csv(cancer_rows()))  # 569 rows: 1/569 < 0.005
    assert response.status_code == 422
    assert "below 1/rows" in response.get_json()["error"]["message"]
    _still_a_clean_draft(app, draft["id"])


@pytest.mark.parametrize(
    "change, field",
    [
        (
            {"privacy": {"epsilon_total": "lots", "delta": 1e-6, "max_epsilon_per_run": 1}},
            "privacy.epsilon_total",
        ),
        ({"privacy": {"epsilon_total": 1, "delta": 1e-6, "max_epsilon_per_run": 2}}, "privacy"),
        ({"price": {"per_run": 5.5, "per_epsilon": "x", "currency": "EUR"}}, "price.per_epsilon"),
        ({"price": {"per_run": "-1", "per_epsilon": "1", "currency": "EUR"}}, "price.per_run"),
        ({"columns": [{"name": "a", "type": "numeric", "min": 3, "max": 1}]}, "columns.0.numeric"),
        ({"columns": [{"name": "a", "type": "text"}]}, "columns.0"),
        ({"format": "xlsx"}, "format"),
        ({"tags": ["Not A Slug!"]}, "tags.0"),
        ({"label": None}, "body"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_metadata_of_the_wrong_shape_names_the_field(client, owner, change, field) -> None:
    _, headers = owner
    response = client.post("/api/v1/datasets", json=metadata(**change), headers=headers)
    assert response.status_code == 422, response.get_json()
    fields = [f["field"] for f in response.get_json()["error"]["details"]["fields"]]
    assert any(f.startswith(field) for f in fields), fields


def test_semantic_schema_errors_come_from_the_privacy_library(client, owner) -> None:
    _, headers = owner
    meta = metadata(label="mean radius")  # a numeric label cannot be a class
    response = client.post("/api/v1/datasets", json=meta, headers=headers)
    assert response.status_code == 422
    assert "categorical" in response.get_json()["error"]["message"]


def test_price_in_another_currency_is_refused(client, owner) -> None:
    _, headers = owner
    meta = metadata(price={"per_run": "5", "per_epsilon": "1", "currency": "USD"})
    response = client.post("/api/v1/datasets", json=meta, headers=headers)
    assert response.status_code == 422
    assert "EUR" in response.get_json()["error"]["message"]


def test_price_finer_than_a_cent_is_refused(client, owner) -> None:
    _, headers = owner
    meta = metadata(price={"per_run": "5.001", "per_epsilon": "1", "currency": "EUR"})
    response = client.post("/api/v1/datasets", json=meta, headers=headers)
    assert response.status_code == 422
