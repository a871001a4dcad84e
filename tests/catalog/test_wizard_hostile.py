"""A new owner's and an attacker's inputs to the wizard and the metadata API: each is a
form error worded for people, on its field, or a 4xx JSON error; never a 500, never a file
left behind for a refused inspection."""

from __future__ import annotations

import io
import random
import re
from html import unescape

import numpy as np
import pytest

from market.accounts.models import Role
from tests.catalog.conftest import cancer_rows, metadata, to_csv
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
from tests.helpers import login

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _summary(response) -> str:
    page = unescape(response.get_data(as_text=True))
    return page[page.index('data-testid="error-summary"') :].split("</div>")[0]


def _field_error(response, field: str) -> str:
    page = unescape(response.get_data(as_text=True))
    assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', page), f"{field} not marked"
    found = re.search(rf'<p class="field-error error" id="{field}-error"[^>]*>([^<]*)</p>', page)
    assert found, f"no error shown on {field}"
    return found[1]


def _owner(client, make_user) -> None:
    owner = make_user(Role.OWNER)
    login(client, owner.email, TEST_PASSWORD)


def _form(client, body: bytes = b"", name: str = "adult.csv"):
    page = _inspect(client, body or adult_like(200), name)
    assert page.status_code == 200, _summary(page)
    return wizard_fields(unescape(page.get_data(as_text=True)))


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"a,a,y\n1,2,x\n3,4,z\n", "names the column “a” twice"),
        (b"a,b,y\n", "has a header but no rows"),
    ],
)
def test_a_file_no_listing_could_describe_is_refused_at_once_and_not_kept(
    app, client, make_user, body: bytes, words: str
) -> None:
    _owner(client, make_user)
    refused = _inspect(client, body)
    assert refused.status_code == 422  # was a 500 for a repeated header name
    assert words in _summary(refused)
    assert words in _field_error(refused, "file")
    assert staged_files(app) == [] and _count(app) == 0


def test_a_number_marked_missing_in_a_numeric_column_is_counted_and_filled(
    app, client, make_user
) -> None:
    rng = random.Random(3)
    lines = ["age,hours,income"]
    for i in range(200):
        age = -1 if i % 10 == 0 else rng.randint(17, 90)  # -1: "unknown", as some files do
        lines.append(f"{age},{rng.randint(1, 99)},{rng.choice(['<=50K', '>50K'])}")
    _owner(client, make_user)
    fields = _form(client, ("\n".join(lines) + "\n").encode())
    fields["other_marks"] = "-1"
    page = list_step(client, fields, use="refresh")
    fields = wizard_fields(unescape(page.get_data(as_text=True)))
    # The age column now offers what to do with its 20 missing cells, filled by default.
    assert fields["c0-missing"] == "fill"
    fields["c0-min"], fields["c0-fill"] = "10", "40"
    listed = list_step(client, fields)
    assert listed.status_code == 303, _summary(listed)
    assert _count(app) == 1 and staged_files(app) == []


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"c0-min": "nan"}, "c0-min", "Write a number"),
        ({"c0-max": "inf"}, "c0-max", "Write a number"),
        ({"epsilon_total": "nan"}, "epsilon_total", "Write a number"),
        ({"other_marks": "x" * 60}, "other_marks", "At most 40 characters"),
        ({"other_marks": ",".join(f"m{i}" for i in range(30))}, "other_marks", "At most 20"),
        ({"tags": "Hello World!"}, "tags", "lowercase letters"),
        ({"per_run": "1e40"}, "per_run", "At most 12 digits"),
        ({"c0-min": "90", "c0-max": "10"}, "c0-max", "greater than the lower bound"),
        ({"c1-missing": "fill", "c1-fill": "Nope"}, "c1-fill", "one of the categories kept"),
        ({"max_epsilon_per_run": "50"}, "max_epsilon_per_run", "Cannot exceed the total"),
        ({"c1-keep": None}, "c1-categories", "keep at least one category"),
    ],
)
def test_wrong_entries_are_shown_on_their_field_in_plain_words(
    app, client, make_user, change: dict[str, str | None], field: str, words: str
) -> None:
    _owner(client, make_user)
    fields = _form(client)
    for name, value in change.items():
        if value is None:
            fields.pop(name)
        else:
            fields[name] = value
    refused = list_step(client, fields)
    assert refused.status_code == 422
    summary = _summary(refused)
    assert f'href="#{field}"' in summary and words in summary
    assert "Input should" not in summary and "String should" not in summary
    assert words in _field_error(refused, field)
    assert _count(app) == 0 and len(staged_files(app)) == 2  # the upload waits


def test_a_column_without_a_name_is_explained(app, client, make_user) -> None:
    _owner(client, make_user)
    fields = _form(client, to_csv(cancer_rows(60)).replace(b"mean texture", b"", 1))
    refused = list_step(client, fields)
    assert "Column 2 has no name" in _field_error(refused, "c1-publish")
    del fields["c1-publish"]  # left out, it lists
    assert list_step(client, fields).status_code == 303


def test_an_error_on_all_columns_points_at_something_on_the_page(app, client, make_user) -> None:
    _owner(client, make_user)
    fields = _form(client)
    for i in range(5):
        fields.pop(f"c{i}-publish", None)
    fields["c4-publish"] = "on"  # the label only
    refused = list_step(client, fields)
    assert 'href="#columns"' in _summary(refused)
    assert 'id="columns"' in refused.get_data(as_text=True)


def test_an_archive_whose_arrays_do_not_fit_is_explained(app, client, make_user) -> None:
    sink = io.BytesIO()
    np.savez(sink, a=np.zeros((300, 8, 8), np.float32), b=np.zeros((300, 2), np.int64))
    _owner(client, make_user)
    fields = _form(client, sink.getvalue(), "digits.npz")
    fields["features_key"] = "zzz"
    refused = list_step(client, fields)
    assert refused.status_code == 422
    assert "choose the array that holds the images" in _field_error(refused, "features_key")
    assert "choose the array that holds the labels" in _field_error(refused, "labels_key")
    assert "name each class" in _field_error(refused, "class_names")
    assert "List should" not in _summary(refused)
    assert _count(app) == 0 and listed_files(app) == []


def test_the_api_refuses_trim_choices_that_could_never_match(client, owner, upload) -> None:
    _, headers = owner
    lax = client.post("/api/v1/datasets", json=metadata(trim_spaces="yes"), headers=headers)
    assert lax.status_code == 422 and "trim_spaces" in lax.get_data(as_text=True)
    padded = metadata(trim_spaces=True)
    padded["columns"][0]["name"] = " mean radius"
    refused = client.post("/api/v1/datasets", json=padded, headers=headers)
    assert refused.status_code == 422
    assert "header names are trimmed too" in refused.get_json()["error"]["message"]
    mark = metadata(trim_spaces=True, missing_values=[" ?"])
    refused = client.post("/api/v1/datasets", json=mark, headers=headers)
    assert refused.status_code == 422
    assert "trimmed before they are compared" in refused.get_json()["error"]["message"]
    draft = client.post("/api/v1/datasets", json=metadata(trim_spaces=True), headers=headers)
    body = to_csv(cancer_rows(60)).replace(b"mean radius,", b" mean texture,", 1)
    put = upload(headers, draft.get_json()["id"], body)
    assert put.status_code == 422
    error = put.get_json()["error"]
    assert error["details"]["twice"] == ["mean texture"]
    assert "names a column twice" in error["message"]


def test_a_column_of_names_is_suggested_left_out_and_its_names_stay_private(
    app, client, make_user
) -> None:
    rng = random.Random(11)
    lines = ["name,age,ward,outcome"]
    for i in range(120):
        ward = "isolation" if i == 5 else rng.choice(["north", "south"])  # one rare category
        outcome = rng.choice(["alive", "dead"])
        lines.append(f"Person{i:03d}x,{rng.randint(18, 90)},{ward},{outcome}")
    _owner(client, make_user)
    page = _inspect(client, ("\n".join(lines) + "\n").encode(), "patients.csv")
    html = unescape(page.get_data(as_text=True))
    fields = wizard_fields(html)
    assert "c0-publish" not in fields  # the names: suggested left out
    assert "c2-publish" in fields  # a column with one rare category stays, with a note
    assert "most values of this column belong to one row each" in html
    assert "One of these categories occurs in fewer than 5 rows" in html  # "isolation"
    listed = list_step(client, fields)
    assert listed.status_code == 303, _summary(listed)
    with app.extensions["market"].database.read() as session:
        from market.catalog.models import Dataset

        row = session.get(Dataset, listed.headers["Location"].rsplit("/", 1)[1])
        assert row is not None
        assert "Person" not in str(row.data_schema)


def test_values_outside_the_bounds_point_at_the_bounds(app, client, make_user) -> None:
    _owner(client, make_user)
    fields = _form(client)
    fields["c0-min"] = "30"  # ages 17..29 fall below
    refused = list_step(client, fields)
    assert "out of range" in _field_error(refused, "c0-min")
    fields["c0-min"] = "10"
    fields.poplist("c1-keep")
    fields.add("c1-keep", "Private")  # the other workclasses' rows are refused
    refused = list_step(client, fields)
    assert _field_error(refused, "c1-categories")
    assert _count(app) == 0 and listed_files(app) == []


def test_bounds_suggested_near_the_largest_float_stay_numbers(database_url: str) -> None:
    from market.catalog.profile import nice_ceil, nice_floor

    assert nice_ceil(1.5e308) == 1.5e308 and nice_floor(-1.7e308) == -1.7e308
    assert nice_ceil(91.2) == 100 and nice_floor(-3.2) == -4


def test_typed_parquet_columns_are_suggested_as_the_listing_reads_them(
    app, client, make_user
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 80
    table = pa.table(
        {
            "smoker": pa.array([i % 3 == 0 for i in range(rows)]),  # was "True": refused
            "score": pa.array([float("nan") if i % 9 == 0 else i / 2 for i in range(rows)]),
            "outcome": pa.array([float(i % 2) for i in range(rows)]),  # 0.0/1.0: "0", "1"
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    _owner(client, make_user)
    fields = _form(client, sink.getvalue(), "typed.parquet")
    assert sorted(fields.getlist("c0-keep")) == ["false", "true"]
    assert fields["c1-type"] == "numeric" and fields["c1-missing"] == "fill"  # NaN: missing
    assert fields["label"] == "outcome"
    listed = list_step(client, fields)
    assert listed.status_code == 303, _summary(listed)


def test_a_category_holding_a_line_break_survives_the_browser(app, client, make_user) -> None:
    rng = random.Random(2)
    lines = ["note,age,outcome"]
    for i in range(120):
        note = '"two\nlines"' if i % 3 == 0 else "one line"
        lines.append(f"{note},{rng.randint(18, 90)},{rng.choice(['alive', 'dead'])}")
    _owner(client, make_user)
    fields = _form(client, ("\n".join(lines) + "\n").encode(), "notes.csv")
    assert "two\nlines" in fields.getlist("c0-keep")
    # As a browser sends a form: every line break in a value becomes CRLF.
    fields.setlist("c0-keep", [v.replace("\n", "\r\n") for v in fields.getlist("c0-keep")])
    listed = list_step(client, fields)
    assert listed.status_code == 303, _summary(listed)


def test_a_column_of_many_distinct_values_is_profiled_in_bounded_memory(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    from market.catalog import profile, wizard

    monkeypatch.setattr(profile, "MAX_DISTINCT_KEPT", 50)
    lines = ["id,amount,outcome"]
    for i in range(300):
        name = "common" if i % 10 == 0 else f"user{i:04d}"
        lines.append(f"{name},{i * 1.5 - 7},{'ab'[i % 2]}")
    found = profile.profile_file("csv", ("\n".join(lines) + "\n").encode())
    ids, amount = found.columns[0], found.columns[1]
    assert ids.distinct == 271 and len(ids.counts) == 50 and ids.counts["common"] == 30
    assert (amount.kind, amount.minimum, amount.maximum) == ("numeric", -7.0, 441.5)
    form = wizard.initial_form(found, title="t", currency="EUR")
    assert form.columns[0].hidden_categories == 271 - 50 and not form.columns[0].publish


def _zip_without_arrays() -> bytes:
    import zipfile

    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as archive:
        archive.writestr("readme.txt", "no arrays here")
    return sink.getvalue()


@pytest.mark.parametrize(
    ("body", "name", "words"),
    [
        ("age,work,y\n1,café,x\n2,B,z\n".encode("latin-1"), "a.csv", "not UTF-8 text"),
        ("age,y\n1,x\n".encode("utf-16"), "a.csv", "not UTF-8 text"),
        (b"a,b,y\n1,2\n3,4,z\n", "a.csv", "a row has 2 fields where the header has 3"),
        (b"a,b,y\n1,2,x\n", "a.parquet", "not a Parquet file"),  # was read as CSV
        (_zip_without_arrays(), "a.npz", "holds no arrays"),  # was a form with no choice
    ],
)
def test_an_unreadable_file_says_why(
    app, client, make_user, body: bytes, name: str, words: str
) -> None:
    _owner(client, make_user)
    refused = _inspect(client, body, name)
    assert refused.status_code == 422 and words in _field_error(refused, "file")
    assert staged_files(app) == []


def test_without_trimming_a_padded_category_is_a_choice_of_its_own(app, client, make_user) -> None:
    lines = ["work,age,outcome"]
    for i in range(120):
        work = " Private" if i % 4 == 0 else "Private" if i % 4 == 1 else "State"
        lines.append(f"{work},{20 + i % 50},{'ab'[i % 2]}")
    _owner(client, make_user)
    fields = _form(client, ("\n".join(lines) + "\n").encode(), "work.csv")
    del fields["trim_spaces"]  # kept as written: " Private" and "Private" differ
    page = list_step(client, fields, use="refresh")
    fields = wizard_fields(unescape(page.get_data(as_text=True)))
    assert set(fields.getlist("c0-keep")) == {" Private", "Private", "State"}
    fields.setlist("c0-keep", ["Private", "State"])  # " Private" left out on purpose
    refused = list_step(client, fields)
    assert "unknown category" in _field_error(refused, "c0-categories")
    kept = wizard_fields(unescape(refused.get_data(as_text=True))).getlist("c0-keep")
    assert set(kept) == {"Private", "State"}  # was ticked again with "Private"
