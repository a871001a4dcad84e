"""Preprocessing from declared metadata only, and schema violations counted, never shown."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.errors import SchemaError, SchemaViolation
from privacy.preprocessing import (
    describe,
    encode,
    encode_features,
    input_shape,
    num_classes,
    validate_rows,
)

META = {
    "title": "toy census",
    "format": "csv",
    "label": "income",
    "columns": [
        {"name": "age", "type": "numeric", "min": 17, "max": 90},
        {"name": "workclass", "type": "categorical", "categories": ["Private", "Gov", "Self"]},
        {"name": "hours", "type": "numeric", "min": 0, "max": 100},
        {"name": "income", "type": "categorical", "categories": ["<=50K", ">50K"]},
    ],
}


def table(**overrides):
    cols = {
        "age": [17, 90, 53.5, 30],
        "workclass": ["Gov", "Private", "Self", "Gov"],
        "hours": [40, 0, 100, 20],
        "income": [">50K", "<=50K", "<=50K", ">50K"],
    }
    cols.update(overrides)
    return pa.table(cols)


def test_description_is_json_and_ordered():
    d = describe(META)
    assert json.loads(json.dumps(d)) == d
    assert d["encoded_columns"] == [
        "age",
        "workclass=Private",
        "workclass=Gov",
        "workclass=Self",
        "hours",
    ]
    assert input_shape(d) == (5,) and num_classes(d) == 2


def test_encoding_uses_declared_bounds_and_order():
    enc = encode(describe(META), table())
    np.testing.assert_allclose(enc.features[:, 0], [0.0, 1.0, (53.5 - 17) / 73, 13 / 73], rtol=1e-6)
    np.testing.assert_array_equal(
        enc.features[:, 1:4], [[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]]
    )
    np.testing.assert_allclose(enc.features[:, 4], [0.4, 0.0, 1.0, 0.2], rtol=1e-6)
    np.testing.assert_array_equal(enc.labels, [1, 0, 0, 1])
    assert enc.features.dtype == np.float32 and enc.labels.dtype == np.int64


def test_scaling_never_depends_on_the_rows():
    d = describe(META)
    small = encode(d, table(age=[20, 20, 20, 20])).features[:, 0]
    assert np.allclose(small, 3 / 73)  # constant column, still declared-bounds scaled


def test_minus_one_one_range():
    d = describe({**META, "feature_range": [-1, 1]})
    enc = encode(d, table())
    assert enc.features.min() == -1.0 and enc.features.max() == 1.0


def test_out_of_range_is_clipped_when_encoding_but_reported_when_validating():
    d = describe(META)
    rows = table(age=[10, 200, 30, 30])
    np.testing.assert_allclose(encode(d, rows).features[:2, 0], [0.0, 1.0])
    with pytest.raises(SchemaViolation) as info:
        validate_rows(d, rows)
    assert info.value.details["columns"] == {"age": {"out_of_range": 2}}


def test_violations_are_counted_per_column_without_values():
    secret = "Zyzzyva-secret-category"
    rows = table(
        age=[None, 300.0, 1e9, 30],
        workclass=["Gov", secret, None, "Gov"],
        hours=["40", "forty", "", "20"],
        income=[">50K", "maybe", "<=50K", ">50K"],
    )
    with pytest.raises(SchemaViolation) as info:
        validate_rows(describe(META), rows)
    assert info.value.details["columns"] == {
        "age": {"missing": 1, "out_of_range": 2},
        "workclass": {"missing": 1, "unknown_category": 1},
        "hours": {"missing": 1, "not_numeric": 1},
        "income": {"unknown_category": 1},
    }
    text = str(info.value) + json.dumps(info.value.details)
    for leaked in (secret, "forty", "maybe", "300", "1000000000"):
        assert leaked not in text


def test_absent_column_and_label():
    d = describe(META)
    with pytest.raises(SchemaViolation) as info:
        validate_rows(d, table().drop_columns(["hours", "income"]))
    assert set(info.value.details["columns"]) == {"hours", "income"}
    # A buyer's data has no label: features only.
    assert encode_features(d, table().drop_columns(["income"])).shape == (4, 5)


def test_dict_of_arrays_and_numeric_categories():
    meta = {
        "label": "y",
        "columns": [
            {"name": "x", "type": "numeric", "min": 0, "max": 1},
            {"name": "flag", "type": "categorical", "categories": [0, 1]},
            {"name": "y", "type": "categorical", "categories": [0, 1, 2]},
        ],
    }
    data = {"x": np.array([0.5, 0.25]), "flag": np.array([1, 0]), "y": np.array([2.0, 0.0])}
    enc = encode(describe(meta), data)
    np.testing.assert_array_equal(enc.features, [[0.5, 0, 1], [0.25, 1, 0]])
    np.testing.assert_array_equal(enc.labels, [2, 0])


def test_images_scaled_by_declared_pixel_range():
    meta = {
        "format": "npz",
        "shape": [2, 2],
        "pixel_range": {"min": 0, "max": 255},
        "class_names": ["a", "b", "c"],
    }
    d = describe(meta)
    assert input_shape(d) == (1, 2, 2) and num_classes(d) == 3
    x = np.array([[[0, 255], [51, 102]], [[255, 255], [0, 0]]], dtype=np.uint8)
    enc = encode(d, {"x": x, "y": np.array([2, 0])})
    assert enc.features.shape == (2, 1, 2, 2)
    np.testing.assert_allclose(enc.features[0, 0], [[0, 1], [0.2, 0.4]], rtol=1e-6)


def test_image_violations():
    meta = {"format": "npz", "shape": [2, 2], "pixel_range": {"min": 0, "max": 1},
            "class_names": ["a", "b"]}  # fmt: skip
    d = describe(meta)
    x = np.zeros((3, 2, 2))
    x[0, 0, 0] = 5.0
    x[1, 1, 1] = np.nan
    with pytest.raises(SchemaViolation) as info:
        validate_rows(d, {"x": x, "y": np.array([0, 1, 7])})
    assert info.value.details["columns"] == {
        "x": {"missing": 1, "out_of_range": 1},
        "y": {"unknown_category": 1},
    }
    with pytest.raises(SchemaViolation) as info:
        validate_rows(d, {"x": np.zeros((3, 3, 3)), "y": np.zeros(3, dtype=int)})
    assert info.value.details["columns"] == {"x": {"wrong_shape": 1}}


@pytest.mark.parametrize(
    "meta",
    [
        {"label": "y", "columns": []},
        {"label": "y", "columns": [{"name": "x", "type": "numeric", "min": 0, "max": 1}]},
        {"label": "y", "columns": [{"name": "x", "type": "numeric", "min": 1, "max": 1},
                                   {"name": "y", "type": "categorical", "categories": ["a", "b"]}]},
        {"label": "y", "columns": [{"name": "x", "type": "numeric", "min": 0},
                                   {"name": "y", "type": "categorical", "categories": ["a", "b"]}]},
        {"label": "y", "columns": [{"name": "x", "type": "text"},
                                   {"name": "y", "type": "categorical", "categories": ["a", "b"]}]},
        {"label": "y", "columns": [{"name": "x", "type": "categorical", "categories": ["a", "a"]},
                                   {"name": "y", "type": "categorical", "categories": ["a", "b"]}]},
        {"label": "y", "columns": [{"name": "x", "type": "numeric", "min": 0, "max": 1},
                                   {"name": "y", "type": "numeric", "min": 0, "max": 1}]},
        {"label": "y", "columns": [{"name": "y", "type": "categorical", "categories": ["a", "b"]}]},
        {"label": "y", "columns": [{"name": "x", "type": "numeric", "min": 0, "max": 1},
                                   {"name": "y", "type": "categorical", "categories": ["a"]}]},
        {"format": "npz", "shape": [28], "pixel_range": {"min": 0, "max": 1},
         "class_names": ["a", "b"]},
        {"format": "npz", "shape": [28, 28], "class_names": ["a", "b"]},
        {"format": "npz", "shape": [28, 28], "pixel_range": {"min": 0, "max": 1},
         "class_names": []},
        {"label": "y", "feature_range": [0, 2], "columns": [
            {"name": "x", "type": "numeric", "min": 0, "max": 1},
            {"name": "y", "type": "categorical", "categories": ["a", "b"]}]},
    ],
)  # fmt: skip
def test_unusable_metadata(meta):
    with pytest.raises(SchemaError):
        describe(meta)


@settings(max_examples=40, deadline=None)
@given(
    ages=st.lists(
        st.floats(allow_nan=False, allow_infinity=False, width=32, min_value=-1e6, max_value=1e6),
        min_size=1,
        max_size=30,
    ),
    low=st.sampled_from([[0, 1], [-1, 1]]),
)
def test_encoded_features_stay_in_the_declared_range(ages, low):
    d = describe({**META, "feature_range": low})
    n = len(ages)
    rows = {
        "age": np.array(ages),
        "workclass": np.array(["Self"] * n),
        "hours": np.array(ages),
        "income": np.array(["<=50K"] * n),
    }
    features = encode(d, rows).features
    assert features.shape == (n, 5)
    assert features.min() >= low[0] and features.max() <= low[1]
    assert (features[:, 1:4].sum(axis=1) == 1 + 2 * low[0]).all()  # exactly one hot
