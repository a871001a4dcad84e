"""The wizard's one upload: the key that opens it lives in the owner's page only.

A wrong or missing key, another owner, or an expired upload each get a clear form error (never
a 500) and list nothing; an abandoned upload is reaped; neither the plaintext nor the raw key
is ever written to the instance folder or to temp files.
"""

from __future__ import annotations

import base64
import os
import time
from html import unescape
from pathlib import Path

import pytest

from market.accounts.models import Role
from market.catalog import drafts
from tests.catalog.test_no_plaintext_on_disk import (
    _assert_absent,
    _marked_csv,
    no_temp_files_written,
)
from tests.catalog.test_wizard import (
    _count,
    _inspect,
    adult_like,
    list_step,
    listed_files,
    staged_files,
    wizard_fields,
)
from tests.conftest import TEST_PASSWORD
from tests.helpers import csrf_token_from, login, multipart_body

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _wizard(app, client, make_user):
    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    page = _inspect(client, adult_like(120))
    assert page.status_code == 200
    return wizard_fields(unescape(page.get_data(as_text=True)))


def _error_summary(response) -> str:
    page = unescape(response.get_data(as_text=True))
    return page[page.index('data-testid="error-summary"') :].split("</div>")[0]


def test_a_wrong_key_is_a_form_error_and_lists_nothing(app, client, make_user) -> None:
    fields = _wizard(app, client, make_user)
    right = fields["draft_key"]
    raw = bytearray(base64.urlsafe_b64decode(right + "=="))
    raw[0] ^= 1
    fields["draft_key"] = drafts.encode_key(bytes(raw))
    refused = list_step(client, fields)
    assert refused.status_code == 422
    assert "does not match" in _error_summary(refused)
    fields["draft_key"] = "not base64 at all!"
    assert list_step(client, fields).status_code == 422
    assert _count(app) == 0 and listed_files(app) == []
    fields["draft_key"] = right  # the upload is still there for the right key
    assert list_step(client, fields).status_code == 303
    assert _count(app) == 1


def test_a_missing_key_or_draft_is_a_form_error(app, client, make_user) -> None:
    fields = _wizard(app, client, make_user)
    del fields["draft_key"]
    refused = list_step(client, fields)
    assert refused.status_code == 422
    assert "lost the key" in _error_summary(refused)
    fields["draft_key"] = ""
    fields["draft"] = "../../etc/passwd"
    refused = list_step(client, fields)
    assert refused.status_code == 422
    assert "no longer here" in _error_summary(refused)
    assert _count(app) == 0 and listed_files(app) == []


def test_another_owner_cannot_use_an_upload_even_with_its_key(app, client, make_user) -> None:
    fields = _wizard(app, client, make_user)
    other = make_user(Role.OWNER)
    web = app.test_client()
    login(web, other.email, TEST_PASSWORD)
    fields["csrf_token"] = csrf_token_from(web, "/datasets/new")
    refused = list_step(web, fields)
    assert refused.status_code == 422
    assert "no longer here" in _error_summary(refused)
    assert _count(app) == 0


def test_an_abandoned_upload_is_reaped(app, client, make_user) -> None:
    fields = _wizard(app, client, make_user)
    market = app.extensions["market"]
    kept = staged_files(app)
    assert len(kept) == 2
    assert drafts.reap_drafts(market) == []  # a fresh upload is left alone
    old = time.time() - drafts.DRAFT_TTL_S - 60
    for path in kept:
        os.utime(path, (old, old))
    assert sorted(drafts.reap_drafts(market)) == sorted(p.name for p in kept)
    assert staged_files(app) == []
    refused = list_step(client, fields)  # the page still holds the key: too late
    assert refused.status_code == 422
    assert "no longer here" in _error_summary(refused)
    assert _count(app) == 0 and listed_files(app) == []


def test_an_expired_record_is_refused_and_removed(app, client, make_user) -> None:
    fields = _wizard(app, client, make_user)
    record = next(p for p in staged_files(app) if p.suffix == ".json")
    text = record.read_text()
    created = text.split('"created": ')[1].rstrip("}")
    record.write_text(text.replace(created, str(time.time() - drafts.DRAFT_TTL_S - 1)))
    refused = list_step(client, fields)
    assert refused.status_code == 422
    assert staged_files(app) == [] and _count(app) == 0


def test_the_orphan_sweep_reaps_abandoned_uploads_too(app, client, make_user) -> None:
    from market.ops.files import sweep_orphans

    _wizard(app, client, make_user)
    old = time.time() - drafts.DRAFT_TTL_S - 60
    for path in staged_files(app):
        os.utime(path, (old, old))
    sweep_orphans(app.extensions["market"], older_than_s=900)
    assert staged_files(app) == []


def test_no_plaintext_and_no_raw_key_on_disk(app, client, make_user, tmp_path: Path) -> None:
    since = time.time() - 1
    body, marker, samples = _marked_csv()
    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    token = csrf_token_from(client, "/datasets/new")
    form, content_type = multipart_body({"csrf_token": token}, ("file", "cancer.csv", body))
    with no_temp_files_written(exclude=tmp_path):
        page = client.post("/datasets/new/inspect", data=form, content_type=content_type)
    assert page.status_code == 200, page.get_data(as_text=True)[-2000:]
    fields = wizard_fields(unescape(page.get_data(as_text=True)))
    key_text = fields["draft_key"]
    raw_key = base64.urlsafe_b64decode(key_text + "==")
    needles = [marker, *samples, raw_key, key_text.encode()]
    assert _assert_absent(tmp_path, since, needles) >= 2  # while the upload waits
    fields["delta"] = "1e-6"
    with no_temp_files_written(exclude=tmp_path):
        listed = list_step(client, fields)
    assert listed.status_code == 303, unescape(listed.get_data(as_text=True))[-3000:]
    assert _assert_absent(tmp_path, since, needles) >= 2  # and once listed
    assert staged_files(app) == [] and len(listed_files(app)) == 1


def test_a_listing_that_fails_to_commit_leaves_the_upload_waiting(app, client, make_user) -> None:
    from market.accounts.models import User
    from market.catalog import services as catalog
    from market.catalog.schemas import DatasetCreate
    from tests.catalog.conftest import metadata

    fields = _wizard(app, client, make_user)
    market = app.extensions["market"]
    other = make_user(Role.OWNER)
    with market.database.write() as session:  # the id is taken meanwhile (another tab)
        catalog.create_draft(
            session,
            owner=session.get(User, other.id),
            data=DatasetCreate.model_validate(metadata()),
            currency="EUR",
            dataset_id=fields["draft"],
        )
    refused = list_step(client, fields)
    assert refused.status_code == 422
    assert "listed already" in _error_summary(refused)
    assert len(staged_files(app)) == 2 and listed_files(app) == []  # moved back, whole
    assert _count(app) == 1
