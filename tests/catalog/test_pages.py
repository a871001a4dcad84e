"""Catalog pages: search, dataset page, the owner's upload form and "my datasets"."""

from __future__ import annotations

import json

import pytest

from market.accounts.models import Role
from tests.catalog.conftest import cancer_rows, metadata, to_csv
from tests.catalog.test_listing_api import storage_files
from tests.conftest import TEST_PASSWORD
from tests.helpers import csrf_token_from, login, multipart_body

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _post_form(client, meta: dict | str, body: bytes) -> object:
    token = csrf_token_from(client, "/datasets/new")
    text = meta if isinstance(meta, str) else json.dumps(meta)
    data, content_type = multipart_body(
        {"csrf_token": token, "metadata": text}, ("file", "data.csv", body)
    )
    return client.post("/datasets/new", data=data, content_type=content_type)


def test_owner_lists_through_the_form_and_finds_it_in_the_catalog(client, make_user) -> None:
    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    assert "Metadata (JSON)" in client.get("/datasets/new").get_data(as_text=True)
    response = _post_form(client, metadata(), to_csv(cancer_rows()))
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "569 rows" in page or "569" in page
    assert "mean radius" in page and "(label)" in page
    catalog = client.get("/datasets?q=breast").get_data(as_text=True)
    assert "Breast cancer diagnoses" in catalog
    mine = client.get("/my/datasets").get_data(as_text=True)
    assert "Breast cancer diagnoses" in mine and "listed" in mine


def test_form_errors_are_shown_and_nothing_is_left(app, client, make_user) -> None:
    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    bad_json = _post_form(client, "{not json", to_csv(cancer_rows(20)))
    assert bad_json.status_code == 422
    assert "Invalid JSON" in bad_json.get_data(as_text=True)
    rows = [dict(r) for r in cancer_rows(50)]
    rows[7]["mean radius"] = 99.0
    bad_rows = _post_form(client, metadata(), to_csv(rows))
    assert bad_rows.status_code == 422
    assert "mean radius: 1 out of range" in bad_rows.get_data(as_text=True)
    # The refused upload's draft is gone too: the form is one step, so nothing stays.
    assert "You have not listed a dataset yet" in client.get("/my/datasets").get_data(as_text=True)
    assert storage_files(app) == []


def test_form_without_csrf_token_is_refused_before_reading_the_file(app, client, make_user) -> None:
    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    data, content_type = multipart_body(
        {"metadata": json.dumps(metadata())}, ("file", "d.csv", to_csv(cancer_rows(20)))
    )
    response = client.post(
        "/datasets/new", data=data, content_type=content_type, headers={"Accept": "text/html"}
    )
    assert response.status_code == 400
    assert storage_files(app) == []


def test_researchers_cannot_open_the_upload_form(client, make_user) -> None:
    researcher = make_user(Role.RESEARCHER)
    login(client, researcher.email, TEST_PASSWORD)
    assert client.get("/datasets/new").status_code == 403
    assert client.get("/my/datasets").status_code == 403


def test_delist_from_my_datasets(app, client, make_user) -> None:
    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    listed = _post_form(client, metadata(), to_csv(cancer_rows(60)))
    dataset_id = listed.headers["Location"].rsplit("/", 1)[1]
    assert f'href="/datasets/{dataset_id}#delist"' in client.get("/my/datasets").get_data(
        as_text=True
    )
    token = csrf_token_from(client, f"/datasets/{dataset_id}")
    stored = storage_files(app)
    # Without the title typed, nothing is destroyed.
    for typed in ("", "Breast cancer"):
        refused = client.post(
            f"/datasets/{dataset_id}/delete", data={"csrf_token": token, "confirm_title": typed}
        )
        assert refused.headers["Location"] == f"/datasets/{dataset_id}#delist"
        assert storage_files(app) == stored
    page = client.get(f"/datasets/{dataset_id}").get_data(as_text=True)
    assert "Nothing was delisted" in page
    title = metadata()["title"]
    client.post(
        f"/datasets/{dataset_id}/delete",
        data={"csrf_token": token, "confirm_title": f" {title} "},
    )
    assert storage_files(app) == []
    assert "delisted" in client.get("/my/datasets").get_data(as_text=True)


def test_catalog_needs_sign_in(client) -> None:
    assert client.get("/datasets").status_code == 302
