"""The listing wizard: the owner's file is profiled for that owner only (nothing stored), the
problems are shown with their values (a leading space, "?"), and the suggested description
lists the file as it is."""

from __future__ import annotations

import json
import random
import re
from html import unescape

import pytest
from sqlmodel import func, select

from market.accounts.models import Role
from market.catalog.models import Dataset
from market.catalog.profile import nice_ceil, nice_floor
from tests.catalog.test_listing_api import storage_files
from tests.conftest import TEST_PASSWORD
from tests.helpers import csrf_token_from, login, multipart_body

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def adult_like(rows: int = 300) -> bytes:
    """UCI Adult as shipped: ", " between fields (so every value but the first starts with a
    space) and "?" for unknown categories."""
    rng = random.Random(7)
    lines = ["age,workclass,education,hours_per_week,income"]
    for _ in range(rows):
        work = rng.choice(["Private", "Self-emp", "State-gov", "?"])
        education = rng.choice(["Bachelors", "HS-grad", "Masters"])
        income = rng.choice(["<=50K", ">50K"])
        lines.append(f"{rng.randint(17, 90)}, {work}, {education}, {rng.randint(1, 99)}, {income}")
    return ("\n".join(lines) + "\n").encode()


def _inspect(client, body: bytes, name: str = "adult.csv"):
    token = csrf_token_from(client, "/datasets/new")
    data, content_type = multipart_body({"csrf_token": token}, ("file", name, body))
    return client.post("/datasets/new/inspect", data=data, content_type=content_type)


def _count(app) -> int:
    with app.extensions["market"].database.read() as session:
        return int(session.exec(select(func.count()).select_from(Dataset)).one())


@SQLITE
def test_the_owner_sees_what_the_file_holds_and_lists_it_as_suggested(
    app, client, make_user
) -> None:
    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    body = adult_like()
    response = _inspect(client, body)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "no-store" in response.headers["Cache-Control"]
    html = unescape(response.get_data(as_text=True))
    profile = html[html.index('data-testid="profile"') :]
    assert "300 rows, 5 columns" in profile
    assert "“ Private”" in profile  # the leading space is visible
    assert "start or end with a space" in profile
    assert re.search(r"\d+ cells hold “\?”", profile)
    assert "(suggested public bounds 10 … 90)" in profile  # age 17..90 rounded outwards
    # Nothing was stored: no dataset row, no ciphertext.
    assert _count(app) == 0 and storage_files(app) == []

    suggested = json.loads(
        re.search(r'<textarea id="metadata"[^>]*>(.*?)</textarea>', html, re.S)[1]
    )
    assert suggested["label"] == "income"
    workclass = next(c for c in suggested["columns"] if c["name"] == "workclass")
    assert set(workclass["categories"]) == {" Private", " Self-emp", " State-gov", " ?"}
    age = next(c for c in suggested["columns"] if c["name"] == "age")
    assert age == {"name": "age", "type": "numeric", "min": 10, "max": 90}

    # Step 2: the suggested description lists the file as it is, encrypted.
    token = csrf_token_from(client, "/datasets/new")
    data, content_type = multipart_body(
        {"csrf_token": token, "metadata": json.dumps(suggested)}, ("file", "adult.csv", body)
    )
    listed = client.post("/datasets/new", data=data, content_type=content_type)
    assert listed.status_code == 302, unescape(listed.get_data(as_text=True))[-2000:]
    assert _count(app) == 1 and len(storage_files(app)) == 1
    assert body not in storage_files(app)[0].read_bytes()  # ciphertext only


@SQLITE
def test_only_owners_inspect_and_bad_files_are_explained(app, client, make_user) -> None:
    researcher = make_user(Role.RESEARCHER)
    login(client, researcher.email, TEST_PASSWORD)
    token = csrf_token_from(client, "/account")
    data, content_type = multipart_body({"csrf_token": token}, ("file", "a.csv", adult_like(5)))
    refused = client.post("/datasets/new/inspect", data=data, content_type=content_type)
    assert refused.status_code == 403

    owner = make_user(Role.OWNER)
    web = app.test_client()
    login(web, owner.email, TEST_PASSWORD)
    broken = _inspect(web, b"PAR1 not really parquet", name="x.parquet")
    assert broken.status_code == 422
    assert 'id="errors"' in broken.get_data(as_text=True)
    assert _count(app) == 0


def test_bounds_are_rounded_outwards_to_the_leading_digit() -> None:
    assert (nice_floor(17.3), nice_ceil(91.2)) == (10, 100)
    assert (nice_floor(0.042), nice_ceil(0.042)) == (0.04, 0.05)
    assert (nice_floor(-3.2), nice_ceil(90)) == (-4, 90)


def _edit_form(client, dataset_id: str, **changes: str) -> dict[str, str]:
    page = f"/datasets/{dataset_id}/edit"
    html = unescape(client.get(page).get_data(as_text=True))
    values = {
        name: re.search(rf'id="{name}" name="{name}" value="([^"]*)"', html)[1]  # type: ignore[index]
        for name in ("title", "licence", "tags", "per_run", "per_epsilon", "epsilon_total")
    }
    values["description"] = re.search(r'name="description"[^>]*>(.*?)</textarea>', html, re.S)[1]  # type: ignore[index]
    values.update(changes)
    values["csrf_token"] = csrf_token_from(client, page)
    return values


@SQLITE
def test_the_owner_edits_a_listing_and_a_budget_raise_is_audited(app, client, make_user) -> None:
    from market.audit.models import AuditEntry
    from tests.catalog.conftest import cancer_rows, metadata, to_csv

    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    token = csrf_token_from(client, "/datasets/new")
    data, content_type = multipart_body(
        {"csrf_token": token, "metadata": json.dumps(metadata())},
        ("file", "d.csv", to_csv(cancer_rows(80))),
    )
    dataset_id = (
        client.post("/datasets/new", data=data, content_type=content_type)
        .headers["Location"]
        .rsplit("/", 1)[1]
    )
    assert 'data-testid="edit-link"' in client.get(f"/datasets/{dataset_id}").get_data(as_text=True)

    saved = client.post(
        f"/datasets/{dataset_id}/edit",
        data=_edit_form(
            client, dataset_id, title="Tumour cells", tags="health, oncology", per_run="7.50"
        ),
    )
    assert saved.status_code == 303
    page = unescape(client.get(f"/datasets/{dataset_id}").get_data(as_text=True))
    assert "Tumour cells" in page and "oncology" in page and "7.50" in page

    lowered = client.post(
        f"/datasets/{dataset_id}/edit", data=_edit_form(client, dataset_id, epsilon_total="1")
    )
    assert lowered.status_code == 422
    assert "can only be raised" in unescape(lowered.get_data(as_text=True))
    raised = client.post(
        f"/datasets/{dataset_id}/edit", data=_edit_form(client, dataset_id, epsilon_total="20")
    )
    assert raised.status_code == 303
    with app.extensions["market"].database.read() as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None and dataset.epsilon_total == 20
        kinds = [
            (e.kind, e.data)
            for e in session.exec(select(AuditEntry).where(AuditEntry.subject == dataset_id))
        ]
    assert ("dataset.budget_raised", {"epsilon_total_old": 10.0, "epsilon_total": 20.0}) in kinds
    assert sum(1 for k, _ in kinds if k == "dataset.edited") == 2

    other = make_user(Role.OWNER)
    web = app.test_client()
    login(web, other.email, TEST_PASSWORD)
    assert web.get(f"/datasets/{dataset_id}/edit").status_code in (403, 404)


@SQLITE
def test_an_npz_is_profiled_from_its_headers_and_its_arrays_name_the_keys(
    app, client, make_user
) -> None:
    from tests.catalog.conftest import digits_npz

    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    response = _inspect(client, digits_npz(120), name="digits.npz")
    assert response.status_code == 200
    html = unescape(response.get_data(as_text=True))
    arrays = html[html.index('data-testid="profile-arrays"') :].split("</table>")[0]
    assert "<code>x</code>" in arrays and "120 × 8 × 8" in arrays and "float32" in arrays
    assert "<code>y</code>" in arrays
    found = re.search(r'<textarea id="metadata"[^>]*>(.*?)</textarea>', html, re.S)
    assert found
    image = json.loads(found[1])["image"]
    assert (image["features_key"], image["labels_key"], image["shape"]) == ("x", "y", [8, 8])
    assert _count(app) == 0 and storage_files(app) == []
