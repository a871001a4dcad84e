"""A file as UCI Adult ships it (", " separators, "?" for unknown) listed as it is, with the
owner's declared reading (trim_spaces, missing_values, fill, log scale), then trained on by
a real worker: the upload validator and the worker read the file by the same rule."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pyarrow as pa

from privacy.model_io import load_model
from privacy.preprocessing import encode_features
from tests.trading.conftest import quote_body

WORKCLASSES = ["Private", "Self-emp", "Gov", "Unknown"]


def adult_like_csv(rows: int = 400, seed: int = 7) -> bytes:
    """Header and cells after ", ", as adult.data has them; some cells "?"."""
    rng = random.Random(seed)
    lines = ["age, workclass, capital-gain, income"]
    for _ in range(rows):
        age = rng.randint(17, 90)
        work = rng.choice(["Private", "Private", "Self-emp", "Gov", "?"])
        gain = rng.choice([0, 0, 0, rng.randint(1, 99_999)])
        rich = age > 45 or gain > 5_000
        shown_age = "?" if rng.random() < 0.05 else str(age)
        lines.append(f"{shown_age}, {work}, {gain}, {'>50K' if rich else '<=50K'}")
    return ("\n".join(lines) + "\n").encode()


def listing(**reading: Any) -> dict[str, Any]:
    return {
        "title": "census as shipped",
        "licence": "CC-BY-4.0",
        "format": "csv",
        "label": "income",
        "columns": [
            {"name": "age", "type": "numeric", "min": 17, "max": 90, **reading.pop("age", {})},
            {
                "name": "workclass",
                "type": "categorical",
                "categories": WORKCLASSES,
                **reading.pop("workclass", {}),
            },
            {"name": "capital-gain", "type": "numeric", "min": 0, "max": 99_999, "scale": "log"},
            {"name": "income", "type": "categorical", "categories": ["<=50K", ">50K"]},
        ],
        "privacy": {"epsilon_total": 5.0, "delta": 1e-5, "max_epsilon_per_run": 2.0},
        "price": {"per_run": "1.00", "per_epsilon": "0.50", "currency": "EUR"},
        **reading,
    }


def test_without_a_declared_reading_the_file_is_refused_by_counts(owner, create_draft, upload):
    _, headers = owner
    draft = create_draft(headers, listing())
    refused = upload(headers, draft["id"], adult_like_csv())
    assert refused.status_code == 422
    body = refused.get_json()
    # The header's " workclass" is not the declared "workclass": the names are named.
    assert "columns" in body["error"]["message"] or "header" in body["error"]["message"]
    assert "Private" not in refused.get_data(as_text=True)


def test_marks_without_fill_leave_missing_cells_refused(owner, create_draft, upload):
    _, headers = owner
    draft = create_draft(headers, listing(trim_spaces=True, missing_values=["?"]))
    refused = upload(headers, draft["id"], adult_like_csv())
    assert refused.status_code == 422
    columns = refused.get_json()["error"]["details"]["columns"]
    assert set(columns) == {"age", "workclass"}
    assert set(columns["age"]) == {"missing"} and set(columns["workclass"]) == {"missing"}


def test_declared_reading_lists_trains_and_travels_with_the_model(
    client, owner, create_draft, upload, researcher, consumer, wait_for_run
):
    _, headers = owner
    meta = listing(
        trim_spaces=True,
        missing_values=["?"],
        age={"fill": 38},
        workclass={"fill": "Unknown"},
    )
    draft = create_draft(headers, meta)
    listed = upload(headers, draft["id"], adult_like_csv())
    assert listed.status_code == 200, listed.get_json()
    public = client.get(f"/api/v1/datasets/{draft['id']}", headers=researcher[1]).get_json()
    assert public["trim_spaces"] is True and public["missing_values"] == ["?"]
    by_name = {c["name"]: c for c in public["columns"]}
    assert by_name["age"]["fill"] == 38 and by_name["workclass"]["fill"] == "Unknown"
    assert by_name["capital-gain"]["scale"] == "log"

    quote = client.post(
        "/api/v1/quotes", json=quote_body(draft["id"], epochs=3), headers=researcher[1]
    )
    assert quote.status_code == 201, quote.get_json()
    bought = client.post(
        "/api/v1/runs", json={"quote_id": quote.get_json()["id"]}, headers=researcher[1]
    )
    run = wait_for_run(researcher[1], bought.get_json()["id"])
    assert run["status"] == "succeeded", run

    model = load_model(client.get(f"/api/v1/runs/{run['id']}/model", headers=researcher[1]).data)
    assert model.preprocessing["trim_spaces"] is True
    assert model.preprocessing["missing_values"] == ["?"]
    own = pa.table({"age": [" ?", " 60"], "workclass": [" ?", "Gov "], "capital-gain": ["0", "7"]})
    x = encode_features(model.preprocessing, own)
    assert x.shape == (2, 1 + len(WORKCLASSES) + 1)
    assert np.isclose(x[0, 0], (38 - 17) / (90 - 17))  # the owner's fill, scaled
    assert x[0, 1:5].tolist() == [0.0, 0.0, 0.0, 1.0]  # "?" -> "Unknown"


def test_binned_amounts_are_listed_quoted_and_refused_when_malformed(
    client, owner, create_draft, upload, researcher
):
    """Bins are public metadata like the bounds: shown in the catalog, widening the model's
    input by one column per interval; malformed edges are a 422 naming the column."""
    _, headers = owner
    meta = listing(trim_spaces=True, missing_values=["?"], age={"fill": 38},
                   workclass={"fill": "Unknown"})  # fmt: skip
    gain = meta["columns"][2]
    gain.pop("scale")
    gain["bins"] = [1, 5_000, 10_000]
    draft = create_draft(headers, meta)
    assert upload(headers, draft["id"], adult_like_csv()).status_code == 200
    public = client.get(f"/api/v1/datasets/{draft['id']}", headers=researcher[1]).get_json()
    assert {c["name"]: c for c in public["columns"]}["capital-gain"]["bins"] == [1, 5000, 10000]
    quote = client.post(
        "/api/v1/quotes", json=quote_body(draft["id"], epochs=1), headers=researcher[1]
    )
    assert quote.status_code == 201, quote.get_json()

    for bad in ([5_000, 1], [0, 5_000], [1, 200_000]):
        gain["bins"] = bad
        refused = client.post("/api/v1/datasets", json=meta, headers=headers)
        assert refused.status_code == 422, bad
        assert "capital-gain" in refused.get_json()["error"]["message"]
    gain["bins"], gain["scale"] = [1, 5_000], "log"
    refused = client.post("/api/v1/datasets", json=meta, headers=headers)
    assert refused.status_code == 422 and "not both" in refused.get_json()["error"]["message"]
