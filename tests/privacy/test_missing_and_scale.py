"""Declared cell reading: trimmed spaces, missing-value marks, fill values, log scale, bins.

UCI Adult as distributed separates fields by ", " and marks unknown values "?": an owner
declares ``trim_spaces`` and ``missing_values`` instead of rewriting the file, and says per
column what a missing cell becomes (``fill``) or leaves it refused.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from privacy.errors import SchemaError, SchemaViolation
from privacy.preprocessing import describe, encode, encode_features, validate_rows

COLUMNS = [
    {"name": "age", "type": "numeric", "min": 17, "max": 90},
    {"name": "workclass", "type": "categorical", "categories": ["Private", "Gov", "Unknown"]},
    {"name": "gain", "type": "numeric", "min": 0, "max": 99999, "scale": "log"},
    {"name": "income", "type": "categorical", "categories": ["<=50K", ">50K"]},
]


def meta(**top):
    return {"format": "csv", "label": "income", "columns": COLUMNS, **top}


def with_column(name, **changes):
    cols = [dict(c, **changes) if c["name"] == name else c for c in COLUMNS]
    return {"format": "csv", "label": "income", "columns": cols}


def adult_like(**overrides):
    cols = {
        "age": [" 39", " 50", " ?", " 28"],
        "workclass": [" Private", " ?", " Gov", " Private"],
        "gain": [" 2174", " 0", " 0", " 99999"],
        "income": [" <=50K", " >50K", " <=50K", " >50K"],
    }
    cols.update(overrides)
    return pa.table(cols)


def test_untrimmed_cells_are_counted_as_unknown_without_the_declaration():
    with pytest.raises(SchemaViolation) as err:
        validate_rows(describe(meta()), adult_like())
    problems = err.value.details["columns"]
    assert problems["workclass"] == {"unknown_category": 4}
    assert problems["income"] == {"unknown_category": 4}
    assert problems["age"] == {"not_numeric": 1}  # " ?" is no number; " 39" parses


def test_trim_and_marks_leave_only_missing_cells_to_decide():
    d = describe(meta(trim_spaces=True, missing_values=["?"]))
    with pytest.raises(SchemaViolation) as err:
        validate_rows(d, adult_like())
    assert err.value.details["columns"] == {"age": {"missing": 1}, "workclass": {"missing": 1}}


def test_fill_values_replace_missing_cells_when_encoding():
    m = meta(trim_spaces=True, missing_values=["?"])
    m["columns"] = [
        dict(COLUMNS[0], fill=17),
        dict(COLUMNS[1], fill="Unknown"),
        COLUMNS[2],
        COLUMNS[3],
    ]
    d = describe(m)
    assert validate_rows(d, adult_like()) == 4
    enc = encode(d, adult_like())
    assert enc.features[2, 0] == 0.0  # age filled with its lower bound
    assert enc.features[1, 1:4].tolist() == [0.0, 0.0, 1.0]  # workclass "?" -> "Unknown"
    assert enc.labels.tolist() == [0, 1, 0, 1]


def test_log_scale_maps_bounds_to_the_ends_and_zero_to_zero():
    m = meta(trim_spaces=True, missing_values=["?"])
    m["columns"] = [dict(COLUMNS[0], fill=30), dict(COLUMNS[1], fill="Unknown"), *COLUMNS[2:]]
    d = describe(m)
    gain = encode(d, adult_like()).features[:, -1]
    assert gain[1] == 0.0 and gain[3] == pytest.approx(1.0)
    assert gain[0] == pytest.approx(math.log1p(2174) / math.log1p(99999), rel=1e-6)


def test_a_buyers_own_rows_are_read_by_the_same_declaration():
    m = meta(trim_spaces=True, missing_values=["?", "NA"])
    m["columns"] = [dict(COLUMNS[0], fill=30), dict(COLUMNS[1], fill="Unknown"), *COLUMNS[2:]]
    d = describe(m)
    own = {
        "age": np.array(["NA", "40 "], dtype=object),
        "workclass": np.array(["Gov ", None], dtype=object),
        "gain": np.array([0, 10]),
    }
    x = encode_features(d, own)
    assert x.shape == (2, 5)
    assert x[1, 1:4].tolist() == [0.0, 0.0, 1.0]  # None is missing -> "Unknown"


def test_the_label_is_never_filled():
    m = meta(trim_spaces=True, missing_values=["?"])
    m["columns"] = [dict(COLUMNS[0], fill=30), dict(COLUMNS[1], fill="Unknown"), *COLUMNS[2:]]
    rows = adult_like(income=[" ?", " >50K", " <=50K", " >50K"])
    with pytest.raises(SchemaViolation) as err:
        validate_rows(describe(m), rows)
    assert err.value.details["columns"] == {"income": {"missing": 1}}
    with pytest.raises(SchemaError, match="label column takes no fill"):
        describe(with_column("income", fill="<=50K"))


def test_descriptions_without_the_options_stay_as_they_were():
    d = describe(meta())
    assert "trim_spaces" not in d and "missing_values" not in d
    assert "fill" not in d["features"][0] and d["features"][2]["scale"] == "log"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (with_column("age", fill=200), "within its bounds"),
        (with_column("age", fill=True), "within its bounds"),
        (with_column("age", scale="sqrt"), "'linear' or 'log'"),
        (with_column("age", bins=[]), "bins must be"),
        (with_column("age", bins=[30, 30]), "bins must be"),
        (with_column("age", bins=[50, 30]), "bins must be"),
        (with_column("age", bins=[17]), "bins must be"),  # on the bound: an empty interval
        (with_column("age", bins=[90]), "bins must be"),
        (with_column("age", bins=[float("nan")]), "bins must be"),
        (with_column("age", bins=[True]), "bins must be"),
        (with_column("age", bins="30"), "bins must be"),
        (with_column("age", bins=list(range(18, 120))), "bins must be"),  # over the cap
        (with_column("gain", bins=[1, 5000]), "bins or a log scale"),
        (with_column("workclass", fill="Self"), "one of its categories"),
        (meta(missing_values="?"), "missing_values"),
        (meta(missing_values=[""]), "missing_values"),
        (meta(missing_values=["Gov"]), "both as a category and as a missing-value mark"),
        (meta(trim_spaces="yes"), "trim_spaces"),
        (
            {
                **meta(trim_spaces=True),
                "columns": [
                    *COLUMNS[:1],
                    dict(COLUMNS[1], categories=[" Gov", "Private"]),
                    *COLUMNS[2:],
                ],
            },  # noqa: E501
            "surrounding spaces",
        ),
    ],
)
def test_bad_declarations_are_refused_with_their_field(metadata, message):
    with pytest.raises(SchemaError, match=message):
        describe(metadata)


def test_bins_one_hot_each_value_into_its_interval_after_clipping():
    m = with_column("gain", scale="linear", bins=[1, 5000, 10000])
    d = describe(m)
    assert d["encoded_columns"][-4:] == [
        "gain<1",
        "gain[1,5000)",
        "gain[5000,10000)",
        "gain>=10000",
    ]
    rows = {
        "age": np.array([30, 30, 30, 30, 30, 30]),
        "workclass": np.array(["Gov"] * 6, dtype=object),
        "gain": np.array([-5, 0, 1, 4999.5, 5000, 250_000]),  # below min, above max: clipped
    }
    x = encode_features(d, rows)
    assert x.shape == (6, 1 + 3 + 4)
    assert x[:, -4:].argmax(axis=1).tolist() == [0, 0, 1, 1, 2, 3]
    assert (x[:, -4:].sum(axis=1) == 1).all()


def test_bins_travel_in_the_description_a_buyer_reads_with():
    d = describe(with_column("age", bins=[30, 60]))
    assert d["features"][0]["bins"] == [30.0, 60.0]
    assert "bins" not in describe(meta())["features"][0]
