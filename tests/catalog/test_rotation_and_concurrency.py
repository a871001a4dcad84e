"""Key rotation re-wraps every listing without touching ciphertext; racing uploads list once."""

from __future__ import annotations

import threading

import pytest

from market.catalog.models import Dataset
from market.catalog.rotation import rewrap_all
from privacy.errors import KeyVersionRetired
from privacy.vault import Keyring, Vault, WrappedKey, rotate
from tests.catalog.conftest import cancer_rows, to_csv
from tests.catalog.test_listing_api import storage_files


def test_rotation_rewraps_every_dataset_without_touching_ciphertext(
    app, owner, create_draft, upload
) -> None:
    market = app.extensions["market"]
    _, headers = owner
    ids = []
    for _ in range(3):
        draft = create_draft(headers)
        assert upload(headers, draft["id"], to_csv(cancer_rows(40))).status_code == 200
        ids.append(draft["id"])
    before = {p.name: p.read_bytes() for p in storage_files(app)}
    assert rotate(market.settings.key_dir) == 2
    assert rewrap_all(market) == (3, 0)
    assert rewrap_all(market) == (0, 3)  # idempotent: safe to run again after an interruption
    assert {p.name: p.read_bytes() for p in storage_files(app)} == before
    worker = Vault(Keyring.load(market.settings.key_dir, private=True, min_version=2))
    with market.database.read() as session:
        rows = [session.get(Dataset, i) for i in ids]
    for row in rows:
        assert row.key_version == 2
        plain = worker.decrypt_bytes(
            market.store.path(row.storage_name),
            dataset_id=row.id,
            wrapped=WrappedKey.from_bytes(row.wrapped_key),
        )
        assert plain.startswith(b"mean radius,")


def test_old_wrapped_keys_are_refused_after_min_version_rises(
    app, owner, create_draft, upload
) -> None:
    market = app.extensions["market"]
    _, headers = owner
    draft = create_draft(headers)
    upload(headers, draft["id"], to_csv(cancer_rows(40)))
    with market.database.read() as session:
        old = WrappedKey.from_bytes(session.get(Dataset, draft["id"]).wrapped_key)
    rotate(market.settings.key_dir)
    worker = Keyring.load(market.settings.key_dir, private=True, min_version=2)
    with pytest.raises(KeyVersionRetired):
        worker.unwrap(old, dataset_id=draft["id"])


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_racing_uploads_to_one_draft_list_it_once(app, owner, create_draft) -> None:
    _, headers = owner
    draft = create_draft(headers)
    statuses: list[int] = []

    def put() -> None:
        client = app.test_client()
        response = client.put(
            f"/api/v1/datasets/{draft['id']}/file",
            data=to_csv(cancer_rows(300)),
            headers={**headers, "Content-Type": "text/csv"},
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=put) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses).count(200) == 1, statuses
    assert set(statuses) <= {200, 409}
    assert len(storage_files(app)) == 1
