"""The listing wizard: the owner's file is profiled for that owner only (nothing stored), the
problems are shown with their values (a leading space, "?"), and the suggested description
lists the file as it is."""

from __future__ import annotations

import json
import random
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlmodel import func, select
from werkzeug.datastructures import MultiDict

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


class _Form(HTMLParser):
    """What a browser would send for the form with ``data-testid=<testid>`` as shown."""

    def __init__(self, testid: str) -> None:
        super().__init__()
        self.testid = testid
        self.inside = False
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None
        self._options: list[tuple[str, bool, bool]] = []
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("data-testid") == self.testid
        if not self.inside:
            return
        name = a.get("name", "")
        if tag == "input" and name and a.get("type") not in ("submit", "file"):
            if a.get("type") in ("checkbox", "radio"):
                if "checked" in a:
                    self.fields.append((name, a.get("value", "on") or "on"))
            else:
                self.fields.append((name, a.get("value", "")))
        elif tag == "select":
            self._select, self._options = name, []
        elif tag == "option" and self._select is not None:
            self._options.append((a.get("value", ""), "selected" in a, "disabled" in a))
        elif tag == "textarea":
            self._textarea, self._text = name, ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select is not None:
            chosen = [v for v, sel, _ in self._options if sel] or [
                v for v, _, off in self._options if not off
            ]
            if chosen:
                self.fields.append((self._select, chosen[0]))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea, unescape(self._text.removeprefix("\n"))))
            self._textarea = None


def wizard_fields(html: str, testid: str = "wizard-form") -> MultiDict:
    """The wizard form's fields as the page suggests them (what "Check and list" sends)."""
    parser = _Form(testid)
    parser.feed(html)
    assert parser.fields, "no wizard form on the page"
    return MultiDict(parser.fields)


def list_step(client, fields: MultiDict, use: str = "form"):
    data = MultiDict(fields)
    data["use"] = use
    return client.post("/datasets/new/list", data=data)


def staged_files(app) -> list[Path]:
    folder = app.extensions["market"].settings.storage_dir / "drafts"
    return sorted(folder.iterdir()) if folder.exists() else []


def listed_files(app) -> list[Path]:
    return [p for p in storage_files(app) if p.is_file()]


@SQLITE
def test_the_owner_sends_the_file_once_and_lists_it_with_the_suggested_choices(
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
    # The file is kept, encrypted, for the listing step: no row yet, no listed file.
    assert _count(app) == 0 and listed_files(app) == []
    kept = staged_files(app)
    assert len(kept) == 2 and all(body not in p.read_bytes() for p in kept)

    fields = wizard_fields(html)
    assert fields["trim_spaces"] == "on"  # padded values were found
    assert fields.getlist("missing_marks") == ["?"]
    assert fields["label"] == "income"
    assert (fields["c0-type"], fields["c0-min"], fields["c0-max"]) == ("numeric", "10", "90")
    work = 1  # workclass: "?" becomes the category "missing", trimmed categories kept
    assert set(fields.getlist(f"c{work}-keep")) == {"Private", "Self-emp", "State-gov"}
    assert fields[f"c{work}-missing"] == "category"
    described = json.loads(wizard_fields(html, "json-form")["metadata"])
    assert described["trim_spaces"] is True and described["missing_values"] == ["?"]
    workclass = next(c for c in described["columns"] if c["name"] == "workclass")
    assert workclass["fill"] == "missing" and "missing" in workclass["categories"]
    # Published in their own order, never by count (the counts are the owner's only).
    assert workclass["categories"][:-1] == sorted(workclass["categories"][:-1])

    fields["title"] = "Adult census"
    fields["tags"] = "census, income"
    listed = list_step(client, fields)
    assert listed.status_code == 303, unescape(listed.get_data(as_text=True))[-3000:]
    dataset_id = listed.headers["Location"].rsplit("/", 1)[1]
    assert staged_files(app) == [] and len(listed_files(app)) == 1
    assert body not in listed_files(app)[0].read_bytes()  # ciphertext only
    with app.extensions["market"].database.read() as session:
        row = session.get(Dataset, dataset_id)
        assert row is not None and row.rows == 300 and row.status.value == "listed"
        assert row.data_schema["trim_spaces"] is True
        assert row.data_schema["missing_values"] == ["?"]
        assert row.wrapped_key and row.storage_name == listed_files(app)[0].name
    page = unescape(client.get(f"/datasets/{dataset_id}").get_data(as_text=True))
    assert "Adult census" in page


@SQLITE
def test_form_errors_are_worded_for_people_and_the_upload_waits(app, client, make_user) -> None:
    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    html = unescape(_inspect(client, adult_like()).get_data(as_text=True))
    fields = wizard_fields(html)
    fields["c0-min"] = "30"  # ages 17..29 fall below the public bound
    fields["epsilon_total"] = "-1"
    refused = list_step(client, fields)
    assert refused.status_code == 422
    page = unescape(refused.get_data(as_text=True))
    summary = page[page.index('data-testid="error-summary"') :].split("</div>")[0]
    assert "Total privacy budget (epsilon)" in summary
    assert 'id="epsilon_total-error"' in page and 'aria-invalid="true"' in page
    assert _count(app) == 0 and len(staged_files(app)) == 2  # nothing listed; the file waits

    fields = wizard_fields(page)  # the form comes back with the owner's choices
    assert fields["c0-min"] == "30" and fields["title"] == "adult"
    fields["epsilon_total"] = "10"
    refused = list_step(client, fields)
    assert refused.status_code == 422
    page = unescape(refused.get_data(as_text=True))
    assert "age" in page[page.index('data-testid="error-summary"') :].split("</div>")[0]
    assert _count(app) == 0 and listed_files(app) == []

    fields = wizard_fields(page)
    fields["c0-min"] = "10"
    listed = list_step(client, fields)
    assert listed.status_code == 303, unescape(listed.get_data(as_text=True))[-3000:]
    assert _count(app) == 1 and staged_files(app) == []


@SQLITE
def test_refusing_missing_cells_and_keeping_spaces_are_choices_too(app, client, make_user) -> None:
    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    html = unescape(_inspect(client, adult_like()).get_data(as_text=True))
    fields = wizard_fields(html)
    fields["c1-missing"] = "refuse"  # workclass has "?" cells: refused, and said so
    refused = list_step(client, fields)
    assert refused.status_code == 422
    summary = unescape(refused.get_data(as_text=True))
    assert "workclass" in summary[summary.index('data-testid="error-summary"') :][:2000]

    # Without trimming, the categories are declared as written (" Private") and " ?" is the
    # missing mark as written; filling workclass with a category lists the file.
    fields = wizard_fields(unescape(refused.get_data(as_text=True)))
    del fields["trim_spaces"]
    fields["use"] = "refresh"
    again = client.post("/datasets/new/list", data=fields)
    assert again.status_code == 200
    fields = wizard_fields(unescape(again.get_data(as_text=True)))
    assert " Private" in fields.getlist("c1-keep")
    fields["c1-missing"] = "fill"
    fields["c1-fill"] = " Private"
    listed = list_step(client, fields)
    assert listed.status_code == 303, unescape(listed.get_data(as_text=True))[-3000:]
    with app.extensions["market"].database.read() as session:
        row = session.exec(select(Dataset)).one()
    assert "trim_spaces" not in row.data_schema
    assert " ?" in row.data_schema["missing_values"]
    workclass = next(c for c in row.data_schema["columns"] if c["name"] == "workclass")
    assert workclass["fill"] == " Private"


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
    assert _count(app) == 0 and listed_files(app) == []
    fields = wizard_fields(html)
    assert (fields["features_key"], fields["labels_key"]) == ("x", "y")
    fields["class_names"] = "zero"
    refused = list_step(client, fields)
    assert refused.status_code == 422
    assert 'id="class_names-error"' in refused.get_data(as_text=True)
    fields["class_names"] = ", ".join(str(i) for i in range(10))
    fields["pixel_max"] = "16"
    listed = list_step(client, fields)
    assert listed.status_code == 303, unescape(listed.get_data(as_text=True))[-3000:]
    assert _count(app) == 1 and len(listed_files(app)) == 1 and staged_files(app) == []


@SQLITE
def test_a_column_left_out_is_not_described_and_not_stored(app, client, make_user) -> None:
    from market.catalog import drafts

    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    html = unescape(_inspect(client, adult_like()).get_data(as_text=True))
    fields = wizard_fields(html)
    del fields["c2-publish"]  # education stays private
    listed = list_step(client, fields)
    assert listed.status_code == 303, unescape(listed.get_data(as_text=True))[-3000:]
    market = app.extensions["market"]
    with market.database.read() as session:
        row = session.exec(select(Dataset)).one()
    assert [c["name"] for c in row.data_schema["columns"]] == [
        "age",
        "workclass",
        "hours_per_week",
        "income",
    ]
    assert staged_files(app) == [] and len(listed_files(app)) == 1
    # The stored file holds four columns: read it as the worker would (private key).
    from privacy.vault import Keyring, Vault, WrappedKey

    keyring = Keyring.load(market.settings.key_dir, private=True)
    plaintext = Vault(keyring).decrypt_bytes(
        listed_files(app)[0],
        dataset_id=row.id,
        wrapped=WrappedKey.from_bytes(row.wrapped_key),
    )
    header = plaintext.split(b"\n", 1)[0]
    assert header == b'"age","workclass","hours_per_week","income"' or header == (
        b"age,workclass,hours_per_week,income"
    )
    assert b"Bachelors" not in plaintext and row.rows == 300
    assert drafts.DRAFTS_FOLDER not in {p.name for p in listed_files(app)}


@SQLITE
def test_a_parquet_file_is_listed_through_the_form_with_a_column_left_out(
    app, client, make_user
) -> None:
    from tests.catalog.conftest import cancer_rows, to_parquet

    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    page = _inspect(client, to_parquet(cancer_rows(120)), name="cancer.parquet")
    assert page.status_code == 200
    fields = wizard_fields(unescape(page.get_data(as_text=True)))
    assert fields["label"] == "diagnosis" and fields["c0-type"] == "numeric"
    fields["delta"] = "1e-5"
    del fields["c2-publish"]  # mean smoothness stays private
    listed = list_step(client, fields)
    assert listed.status_code == 303, unescape(listed.get_data(as_text=True))[-3000:]
    with app.extensions["market"].database.read() as session:
        row = session.exec(select(Dataset)).one()
    assert row.format.value == "parquet" and row.rows == 120
    assert [c["name"] for c in row.data_schema["columns"]] == [
        "mean radius",
        "mean texture",
        "diagnosis",
    ]
    assert staged_files(app) == [] and len(listed_files(app)) == 1


@SQLITE
def test_switching_a_column_type_starts_from_suggestions(app, client, make_user) -> None:
    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    rows = "\n".join(f"{i % 5},{'yes' if i % 2 else 'no'}" for i in range(60))
    page = _inspect(client, f"rating,answer\n{rows}\n".encode(), name="small.csv")
    fields = wizard_fields(unescape(page.get_data(as_text=True)))
    assert fields["c0-type"] == "categorical"  # five distinct numbers: offered as categories
    fields["c0-type"] = "numeric"
    fields["use"] = "refresh"
    again = wizard_fields(unescape(client.post("/datasets/new/list", data=fields).get_data(True)))
    assert (again["c0-type"], again["c0-min"], again["c0-max"]) == ("numeric", "0", "4")
    again["c0-type"] = "categorical"
    again["use"] = "refresh"
    back = wizard_fields(unescape(client.post("/datasets/new/list", data=again).get_data(True)))
    assert sorted(back.getlist("c0-keep")) == ["0", "1", "2", "3", "4"]  # all kept again
    listed = list_step(client, back)
    assert listed.status_code == 303, unescape(listed.get_data(as_text=True))[-3000:]


@SQLITE
def test_the_advanced_json_lists_the_same_upload(app, client, make_user) -> None:
    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)
    html = unescape(_inspect(client, adult_like()).get_data(as_text=True))
    fields = wizard_fields(html, "json-form")
    described = json.loads(fields["metadata"])
    described["columns"][0]["min"] = 50  # a mistake first: shown on the JSON, form intact
    fields["metadata"] = json.dumps(described)
    refused = list_step(client, fields, use="json")
    assert refused.status_code == 422
    page = unescape(refused.get_data(as_text=True))
    assert 'id="metadata-error"' in page and '<details class="advanced" open>' in page
    assert wizard_fields(page)["c0-publish"] == "on"
    described["columns"][0]["min"] = 10
    described["title"] = "Adult, by hand"
    fields["metadata"] = json.dumps(described)
    listed = list_step(client, fields, use="json")
    assert listed.status_code == 303, unescape(listed.get_data(as_text=True))[-3000:]
    with app.extensions["market"].database.read() as session:
        assert session.exec(select(Dataset)).one().title == "Adult, by hand"
