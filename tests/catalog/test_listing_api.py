"""Listing a dataset through the API: drafts, encrypted upload, detail, search, delisting."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from market.accounts.models import Role
from market.catalog.models import Dataset, DatasetStatus
from privacy.errors import PrivateKeyUnavailable
from privacy.vault import Keyring, Vault, WrappedKey
from tests.catalog.conftest import (
    NPZ_METADATA,
    cancer_rows,
    digits_npz,
    metadata,
    to_csv,
    to_parquet,
)


def storage_files(app) -> list[Path]:
    root = app.extensions["market"].settings.storage_dir
    return sorted(root.iterdir()) if root.exists() else []


def test_draft_has_terms_but_no_rows(client, owner, create_draft) -> None:
    _, headers = owner
    draft = create_draft(headers)
    assert draft["status"] == "draft"
    assert draft["rows"] is None
    assert draft["budget"] == {
        "epsilon_total": 10.0,
        "delta": 1e-5,
        "epsilon_spent": 0.0,
        "epsilon_remaining": 10.0,
        "max_epsilon_per_run": 2.0,
    }
    assert draft["price"] == {"per_run": "5.00", "per_epsilon": "2.00", "currency": "EUR"}
    assert draft["tags"] == ["health", "tabular"]


def test_csv_upload_lists_the_dataset_and_the_file_is_real_ciphertext(
    app, client, owner, create_draft, upload
) -> None:
    _, headers = owner
    rows = cancer_rows()
    body = to_csv(rows)
    draft = create_draft(headers)
    response = upload(headers, draft["id"], body)
    assert response.status_code == 200, response.get_json()
    listed = response.get_json()
    assert listed["status"] == "listed" and listed["rows"] == len(rows) == 569
    files = storage_files(app)
    assert [f.suffix for f in files] == [".pvlt"]
    assert b"mean radius" not in files[0].read_bytes()
    # Only a worker's private keyring opens it, and it holds exactly the uploaded bytes.
    with app.extensions["market"].database.read() as session:
        row = session.get(Dataset, draft["id"])
    worker = Vault(Keyring.load(app.extensions["market"].settings.key_dir, private=True))
    plain = worker.decrypt_bytes(
        files[0], dataset_id=draft["id"], wrapped=WrappedKey.from_bytes(row.wrapped_key)
    )
    assert plain == body


def test_the_web_process_cannot_unwrap_a_data_key(app, owner, create_draft, upload) -> None:
    _, headers = owner
    draft = create_draft(headers)
    upload(headers, draft["id"], to_csv(cancer_rows(50)))
    web_vault = app.extensions["market"].vault
    assert web_vault.keyring.can_unwrap is False
    with app.extensions["market"].database.read() as session:
        wrapped = WrappedKey.from_bytes(session.get(Dataset, draft["id"]).wrapped_key)
    with pytest.raises(PrivateKeyUnavailable):
        web_vault.keyring.unwrap(wrapped, dataset_id=draft["id"])
    with pytest.raises(PrivateKeyUnavailable):
        web_vault.decrypt_bytes(storage_files(app)[0], dataset_id=draft["id"], wrapped=wrapped)


def test_parquet_upload(client, owner, create_draft, upload) -> None:
    _, headers = owner
    draft = create_draft(headers, metadata(format="parquet"))
    response = upload(
        headers, draft["id"], to_parquet(cancer_rows(200)), "application/vnd.apache.parquet"
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["rows"] == 200


def test_npz_image_upload(client, owner, create_draft, upload) -> None:
    _, headers = owner
    draft = create_draft(headers, metadata(NPZ_METADATA))
    response = upload(headers, draft["id"], digits_npz(300), "application/x-npz")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["rows"] == 300 and body["image"]["shape"] == [8, 8] and body["columns"] is None


def _leaves(value: object) -> Iterator[object]:
    """Every scalar in a JSON document."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def test_detail_and_search_never_return_rows(
    client, owner, create_draft, upload, make_user, token_for
) -> None:
    _, headers = owner
    rows = cancer_rows()
    draft = create_draft(headers)
    upload(headers, draft["id"], to_csv(rows))
    researcher = token_for(make_user(Role.RESEARCHER))
    detail = client.get(f"/api/v1/datasets/{draft['id']}", headers=researcher)
    listing = client.get("/api/v1/datasets", headers=researcher)
    for response in (detail, listing):
        assert response.status_code == 200
        leaves = list(_leaves(response.get_json()))
        for row in rows[:20]:
            value = row["mean radius"]
            # As a number, or as a whole number inside a string (a timestamp such as
            # 11:29:19.818882 contains "19.81" without quoting a row).
            pattern = re.compile(rf"(?<![\d.]){re.escape(repr(value))}(?!\d)")
            assert not any(
                leaf == value if isinstance(leaf, float) else bool(pattern.search(str(leaf)))
                for leaf in leaves
            ), value
    assert detail.get_json()["rows"] == 569
    assert detail.get_json()["budget"]["epsilon_remaining"] == 10.0


def test_search_by_words_and_tag_and_drafts_stay_private(
    client, owner, create_draft, upload, make_user, token_for
) -> None:
    _, headers = owner
    cancer = create_draft(headers)
    upload(headers, cancer["id"], to_csv(cancer_rows(100)))
    digits = create_draft(headers, metadata(NPZ_METADATA))
    upload(headers, digits["id"], digits_npz(100), "application/x-npz")
    draft = create_draft(headers, metadata(title="Unfinished cancer draft"))
    researcher = token_for(make_user(Role.RESEARCHER))

    def ids(**query: str) -> set[str]:
        body = client.get("/api/v1/datasets", query_string=query, headers=researcher).get_json()
        assert body["total"] == len(body["items"])
        return {item["id"] for item in body["items"]}

    assert ids() == {cancer["id"], digits["id"]}
    assert ids(q="CANCER") == {cancer["id"]}
    assert ids(q="handwritten digits") == {digits["id"]}
    assert ids(q="aspirates wisconsin") == {cancer["id"]}  # words in the description
    assert ids(tag="images") == {digits["id"]}
    assert ids(q="health") == {cancer["id"]}  # a tag matches a word
    assert ids(q="100%_") == set()  # LIKE wildcards are literal
    assert client.get(f"/api/v1/datasets/{draft['id']}", headers=researcher).status_code == 404
    mine = client.get("/api/v1/datasets?mine=true", headers=headers).get_json()
    assert {item["status"] for item in mine["items"]} == {"listed", "draft"}


def test_pagination(app, client, owner, create_draft) -> None:
    _, headers = owner
    # Drafts are listed under mine=true; page size comes from settings (20).
    for i in range(23):
        create_draft(headers, metadata(title=f"Draft {i}"))
    first = client.get("/api/v1/datasets?mine=true", headers=headers).get_json()
    second = client.get("/api/v1/datasets?mine=true&page=2", headers=headers).get_json()
    assert first["total"] == second["total"] == 23
    assert len(first["items"]) == 20 and len(second["items"]) == 3
    assert not {i["id"] for i in first["items"]} & {i["id"] for i in second["items"]}


def test_delete_crypto_shreds_and_keeps_the_row(
    app, client, owner, create_draft, upload, make_user, token_for
) -> None:
    _, headers = owner
    draft = create_draft(headers)
    upload(headers, draft["id"], to_csv(cancer_rows(100)))
    assert len(storage_files(app)) == 1
    response = client.delete(f"/api/v1/datasets/{draft['id']}", headers=headers)
    assert response.status_code == 200 and response.get_json()["status"] == "delisted"
    assert storage_files(app) == []
    with app.extensions["market"].database.read() as session:
        row = session.get(Dataset, draft["id"])
    assert row.status is DatasetStatus.DELISTED and row.wrapped_key is None and row.delisted_at
    researcher = token_for(make_user(Role.RESEARCHER))
    auditor = token_for(make_user(Role.AUDITOR))
    assert client.get(f"/api/v1/datasets/{draft['id']}", headers=researcher).status_code == 404
    assert client.get(f"/api/v1/datasets/{draft['id']}", headers=auditor).status_code == 200
    assert draft["id"] not in {
        i["id"] for i in client.get("/api/v1/datasets", headers=researcher).get_json()["items"]
    }


def test_only_the_owner_uploads_or_deletes(
    client, owner, create_draft, upload, make_user, token_for
) -> None:
    _, headers = owner
    draft = create_draft(headers)
    other_owner = token_for(make_user(Role.OWNER))
    researcher = token_for(make_user(Role.RESEARCHER))
    # Another owner cannot even see a draft.
    assert upload(other_owner, draft["id"], to_csv(cancer_rows(20))).status_code == 404
    assert upload(researcher, draft["id"], to_csv(cancer_rows(20))).status_code == 403
    upload(headers, draft["id"], to_csv(cancer_rows(50)))
    assert client.delete(f"/api/v1/datasets/{draft['id']}", headers=other_owner).status_code == 403
    assert client.delete(f"/api/v1/datasets/{draft['id']}", headers=researcher).status_code == 403
    assert client.post("/api/v1/datasets", json=metadata(), headers=researcher).status_code == 403


def test_a_listed_file_cannot_be_replaced(client, owner, create_draft, upload) -> None:
    _, headers = owner
    draft = create_draft(headers)
    assert upload(headers, draft["id"], to_csv(cancer_rows(50))).status_code == 200
    again = upload(headers, draft["id"], to_csv(cancer_rows(60)))
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "conflict"


def test_a_rule_on_the_whole_listing_is_named_in_the_message(client, owner) -> None:
    """A model-level rule (npz declares 'image') is not a malformed body: say the rule."""
    _, headers = owner
    body = {**metadata(), "format": "npz"}
    response = client.post("/api/v1/datasets", json=body, headers=headers)
    assert response.status_code == 422
    message = response.get_json()["error"]["message"]
    assert "npz dataset declares 'image'" in message and "JSON object" not in message


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_the_total_is_the_same_on_every_page_and_past_the_end(
    client, owner, create_draft, upload
) -> None:
    _, headers = owner
    for i in range(3):
        draft = create_draft(headers, metadata(title=f"paged {i}"))
        assert upload(headers, draft["id"], to_csv(cancer_rows(30))).status_code == 200
    first = client.get("/api/v1/datasets?q=paged", headers=headers).get_json()
    past = client.get("/api/v1/datasets?q=paged&page=50", headers=headers).get_json()
    assert first["total"] == 3 and len(first["items"]) == 3
    assert past["total"] == 3 and past["items"] == []
