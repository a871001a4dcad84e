"""Preprocessing from public metadata only, and schema checks that never quote a value.

The owner's listing declares bounds for every numeric column, the category list of every
categorical one, and for images the array shape, pixel range and class names
(``docs/api.md``, "Dataset metadata"). Scaling and encoding use those declared
values and nothing else: no mean, std, min, max or vocabulary is ever computed from the
private rows, because such statistics would leak outside the DP accounting.

``describe(metadata)`` turns the metadata into a JSON *description* that travels with
the trained model, so a buyer can encode their own data exactly as training did
(``encode_features``). ``validate_rows`` is the listing validator: it counts offending
values per column and kind, and never shows one.

Data comes as a ``pyarrow.Table`` or a mapping of column name (or npz key) to a NumPy
array; pandas is not needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeGuard, cast

import numpy as np
import pyarrow as pa

from privacy.errors import SchemaError, SchemaViolation
from privacy.records import (
    CategoricalFeature,
    ImageDescription,
    LabelSpec,
    NumericFeature,
    TabularDescription,
)

DESCRIPTION_VERSION = 1
#: Features are scaled into this interval unless the metadata asks for [-1, 1].
DEFAULT_RANGE = (0.0, 1.0)

# -- what a valid schema is ------------------------------------------------------------
# ``describe`` is the one rule for a dataset's metadata. The API's request models
# (``market.catalog.schemas``) take their limits from these names and ask the predicates
# below, so the OpenAPI document, the listing and the trainer agree on every bound.

#: Declared columns of a tabular dataset, the label included.
MAX_COLUMNS = 10_000
#: Categories of one categorical column (or class names of an image dataset).
MAX_CATEGORIES = 10_000
#: A classifier's label needs at least this many classes.
MIN_CLASSES = 2
#: An image is [H, W] or [C, H, W] (channels first).
IMAGE_RANKS = (2, 3)
#: The longest side (or channel count) an image may declare.
MAX_IMAGE_SIDE = 4096
#: Channels of a [C, H, W] image (a larger first side means the shape is not channels first).
MAX_CHANNELS = 16


def bounds_ordered(lo: float, hi: float) -> bool:
    """A numeric column's bounds (or a pixel range) are an interval: max above min."""
    return hi > lo


def repeats_a_category(categories: Sequence[Any]) -> bool:
    """Some category is declared twice (compared as ``_norm`` text: 1, 1.0 and "1" are one)."""
    cats = [_norm(c) for c in categories]
    return len(set(cats)) != len(cats)


def image_shape_ok(shape: Any) -> TypeGuard[list[int] | tuple[int, ...]]:
    """[H, W] or [C, H, W] of positive ints up to MAX_IMAGE_SIDE (C checked by describe)."""
    return (
        isinstance(shape, list | tuple)
        and len(shape) in IMAGE_RANKS
        and all(isinstance(s, int) and 0 < s <= MAX_IMAGE_SIDE for s in shape)
    )


Data: TypeAlias = pa.Table | Mapping[str, Any]
#: What ``describe`` returns (``privacy.records``' TypedDicts: the stored JSON, typed).
Description: TypeAlias = TabularDescription | ImageDescription


@dataclass(frozen=True)
class Encoded:
    """Model-ready arrays: float32 features and int64 class indices."""

    features: np.ndarray
    labels: np.ndarray


def _schema_error(message: str, **details: Any) -> SchemaError:
    return SchemaError(message, details=details)


def _norm(value: Any) -> str:
    """Canonical text of a category, so 1, 1.0, "1" and numpy ints compare equal."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if math.isfinite(value) and float(value).is_integer():
            return str(int(value))
        return repr(float(value))
    return str(value)


def _categories(raw: Any, where: str) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise _schema_error(f"{where} needs a non-empty 'categories' list", field=where)
    if len(raw) > MAX_CATEGORIES:
        raise _schema_error(f"{where} declares more than {MAX_CATEGORIES} categories", field=where)
    if repeats_a_category(raw):
        raise _schema_error(f"{where} declares a category twice", field=where)
    return [_norm(c) for c in raw]


def _target_range(metadata: Mapping[str, Any]) -> list[float]:
    raw = metadata.get("feature_range", list(DEFAULT_RANGE))
    if list(raw) not in ([0, 1], [-1, 1]):
        raise _schema_error("feature_range must be [0, 1] or [-1, 1]", field="feature_range")
    return [float(raw[0]), float(raw[1])]


def _bounds(spec: Mapping[str, Any], where: str) -> tuple[float, float]:
    lo, hi = spec.get("min"), spec.get("max")
    ok = all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for v in (lo, hi)
    )
    if not ok:
        raise _schema_error(f"{where} needs numeric 'min' and 'max' bounds", field=where)
    assert isinstance(lo, int | float) and isinstance(hi, int | float)
    if not bounds_ordered(lo, hi):
        raise _schema_error(f"{where} needs 'max' greater than 'min'", field=where)
    return float(lo), float(hi)


def describe(metadata: Mapping[str, Any]) -> Description:
    """Build the preprocessing description from a listing's public metadata.

    Tabular metadata has ``columns`` and ``label``; image metadata (``format: npz``) has
    ``shape``, ``pixel_range`` and ``class_names`` (top level or under ``image``).

    Raises:
        SchemaError: the metadata cannot describe a classification dataset.
    """
    if not isinstance(metadata, Mapping):
        raise _schema_error("metadata must be an object", field="metadata")
    image = metadata.get("image") if isinstance(metadata.get("image"), Mapping) else None
    if image is not None or metadata.get("format") == "npz":
        return _describe_image({**metadata, **(image or {})})
    return _describe_tabular(metadata)


def _describe_tabular(metadata: Mapping[str, Any]) -> TabularDescription:
    columns = metadata.get("columns")
    label = metadata.get("label")
    if not isinstance(columns, list) or not columns:
        raise _schema_error("tabular metadata needs a non-empty 'columns' list", field="columns")
    if len(columns) > MAX_COLUMNS:
        raise _schema_error(f"more than {MAX_COLUMNS} columns", field="columns")
    if not isinstance(label, str):
        raise _schema_error("metadata needs the 'label' column name", field="label")
    features: list[NumericFeature | CategoricalFeature] = []
    label_spec: LabelSpec | None = None
    seen: set[str] = set()
    for i, col in enumerate(columns):
        where = f"columns[{i}]"
        if not isinstance(col, Mapping) or not isinstance(col.get("name"), str):
            raise _schema_error(f"{where} needs a 'name'", field=where)
        name = col["name"]
        if name in seen:
            raise _schema_error(f"column '{name}' is declared twice", field=where)
        seen.add(name)
        kind = col.get("type")
        if name == label:
            if kind != "categorical":
                raise _schema_error(
                    "the label column must be categorical (classification)", field=where
                )
            cats = _categories(col.get("categories"), where)
            if len(cats) < MIN_CLASSES:
                raise _schema_error("the label needs at least two categories", field=where)
            label_spec = {"name": name, "categories": cats}
        elif kind == "numeric":
            lo, hi = _bounds(col, where)
            features.append({"name": name, "type": "numeric", "min": lo, "max": hi})
        elif kind == "categorical":
            cats = _categories(col.get("categories"), where)
            features.append({"name": name, "type": "categorical", "categories": cats})
        else:
            raise _schema_error(f"{where} type must be 'numeric' or 'categorical'", field=where)
    if label_spec is None:
        raise _schema_error(f"label column '{label}' is not among the columns", field="label")
    if not features:
        raise _schema_error("no feature column besides the label", field="columns")
    encoded: list[str] = []
    for f in features:
        if f["type"] == "numeric":
            encoded.append(f["name"])
        else:
            encoded += [f"{f['name']}={c}" for c in f["categories"]]
    return {
        "kind": "tabular",
        "version": DESCRIPTION_VERSION,
        "range": _target_range(metadata),
        "features": features,
        "label": label_spec,
        "encoded_columns": encoded,
    }


def _describe_image(metadata: Mapping[str, Any]) -> ImageDescription:
    shape = metadata.get("shape")
    if not image_shape_ok(shape):
        raise _schema_error("image 'shape' must be [H, W] or [C, H, W]", field="shape")
    chw = [1, *shape] if len(shape) == 2 else list(shape)
    if chw[0] > MAX_CHANNELS:
        raise _schema_error("image 'shape' is channels first: [C, H, W], C <= 16", field="shape")
    pixel = metadata.get("pixel_range")
    if not isinstance(pixel, Mapping):
        raise _schema_error("image metadata needs 'pixel_range': {min, max}", field="pixel_range")
    lo, hi = _bounds(pixel, "pixel_range")
    names = metadata.get("class_names")
    cats = _categories(names, "class_names")
    if len(cats) < MIN_CLASSES:
        raise _schema_error("an image dataset needs at least two classes", field="class_names")
    return {
        "kind": "image",
        "version": DESCRIPTION_VERSION,
        "range": _target_range(metadata),
        "shape": chw,
        "declared_shape": list(shape),
        "pixel_range": {"min": lo, "max": hi},
        "label": {"name": "class", "categories": cats},
        "features_key": str(metadata.get("features_key", "x")),
        "labels_key": str(metadata.get("labels_key", "y")),
    }


def input_shape(description: Mapping[str, Any]) -> tuple[int, ...]:
    """One encoded example's shape: ``(width,)`` or ``(C, H, W)``."""
    if description["kind"] == "image":
        return tuple(int(s) for s in description["shape"])
    return (len(description["encoded_columns"]),)


def num_classes(description: Mapping[str, Any]) -> int:
    return len(description["label"]["categories"])


def integer_coded(description: Mapping[str, Any]) -> TabularDescription | None:
    """The description that encodes rows as category codes, for embedding models.

    Only where every feature column is categorical: each column becomes its category's
    index plus the column's offset, so the columns share one embedding table of
    ``vocabulary`` rows. Everything here is public (declared categories); None when some
    feature is numeric or the data are images, whose values are never indices.
    """
    if description["kind"] != "tabular":
        return None
    features = description["features"]
    if any(f["type"] != "categorical" for f in features):
        return None
    # ``description`` may be JSON read back (a model file's metadata): typed by its kind.
    return cast(
        TabularDescription,
        {
            **description,
            "encoding": "codes",
            "encoded_columns": [f["name"] for f in features],
            "vocabulary": sum(len(f["categories"]) for f in features),
        },
    )


def for_model(description: Mapping[str, Any], *, embedding: bool) -> Description:
    """The description a model reads: integer codes for an embedding model where the
    schema allows them, else the scaled one (and ``build_model`` then refuses the spec)."""
    coded = integer_coded(description) if embedding else None
    return coded if coded is not None else cast(Description, dict(description))


def vocabulary(description: Mapping[str, Any]) -> int | None:
    """Distinct input codes of an integer-coded description (None for scaled input)."""
    return description.get("vocabulary") if description.get("encoding") == "codes" else None


# -- reading columns ---------------------------------------------------------------


def _get(data: Data, name: str) -> np.ndarray | None:
    if isinstance(data, pa.Table):
        if name not in data.column_names:
            return None
        column = data.column(name)
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            return column.to_numpy(zero_copy_only=False).astype(np.float64)
        if pa.types.is_boolean(column.type):
            return np.array(column.to_pylist(), dtype=object)
        return np.array(column.to_pylist(), dtype=object)
    if name not in data:
        return None
    return np.asarray(data[name])


def _rows(data: Data) -> int:
    if isinstance(data, pa.Table):
        return data.num_rows
    lengths = {len(np.asarray(v)) for v in data.values()}
    if len(lengths) > 1:
        raise SchemaViolation(
            "columns have different lengths", details={"columns": {}, "rows": None}
        )
    return lengths.pop() if lengths else 0


def _numeric(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Floats, a missing mask and a not-numeric mask (values never leave this module)."""
    if values.dtype.kind in "fiub":
        floats = values.astype(np.float64)
        missing = np.isnan(floats)
        return floats, missing, np.zeros(len(values), dtype=bool)
    floats = np.full(len(values), np.nan)
    missing = np.zeros(len(values), dtype=bool)
    bad = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and not v.strip()):
            missing[i] = True
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            bad[i] = True
            continue
        if math.isnan(f):
            missing[i] = True
        else:
            floats[i] = f
    return floats, missing, bad


def _category_codes(
    values: np.ndarray, categories: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes in declared order (-1 when absent), a missing mask and an unknown mask."""
    index = {c: i for i, c in enumerate(categories)}
    codes = np.full(len(values), -1, dtype=np.int64)
    missing = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values.tolist()):
        if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
            missing[i] = True
            continue
        codes[i] = index.get(_norm(v), -1)
    unknown = (codes < 0) & ~missing
    return codes, missing, unknown


def _count(problems: dict[str, dict[str, int]], column: str, kind: str, mask: np.ndarray) -> None:
    n = int(mask.sum())
    if n:
        problems.setdefault(column, {})[kind] = n


def _violation(problems: dict[str, dict[str, int]], rows: int) -> SchemaViolation:
    parts = [
        f"{col}: " + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in kinds.items())
        for col, kinds in problems.items()
    ]
    return SchemaViolation(
        "rows do not match the declared schema (" + "; ".join(parts) + ")",
        details={"columns": problems, "rows": rows},
    )


# -- validation and encoding -------------------------------------------------------


def validate_rows(description: Mapping[str, Any], data: Data, *, require_label: bool = True) -> int:
    """Check every row against the declared schema; return the row count.

    Raises:
        SchemaViolation: ``details["columns"]`` maps each bad column to counts by kind
            (``absent``, ``missing``, ``not_numeric``, ``out_of_range``,
            ``unknown_category``, ``wrong_shape``). Values are never included.
    """
    problems, rows = _check(description, data, require_label=require_label, clip=False)
    if problems:
        raise _violation(problems, rows)
    return rows


def encode(description: Mapping[str, Any], data: Data) -> Encoded:
    """Features and labels for training; numeric values outside bounds are clipped.

    Raises:
        SchemaViolation: missing values, unknown categories or bad shapes.
    """
    features, labels = _encode(description, data, require_label=True)
    assert labels is not None
    return Encoded(features, labels)


def encode_features(description: Mapping[str, Any], data: Data) -> np.ndarray:
    """Features only (a buyer's own data, no label), encoded exactly as in training."""
    features, _ = _encode(description, data, require_label=False)
    return features


def _encode(
    description: Mapping[str, Any], data: Data, *, require_label: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    problems, rows = _check(description, data, require_label=require_label, clip=True)
    if problems:
        raise _violation(problems, rows)
    lo, hi = description["range"]
    if description["kind"] == "image":
        x = np.asarray(data[description["features_key"]], dtype=np.float64)
        x = x.reshape((rows, *description["shape"]))
        p_lo, p_hi = description["pixel_range"]["min"], description["pixel_range"]["max"]
        x = (np.clip(x, p_lo, p_hi) - p_lo) / (p_hi - p_lo) * (hi - lo) + lo
        labels = None
        if require_label:
            labels = np.asarray(data[description["labels_key"]]).astype(np.int64)
        return x.astype(np.float32), labels
    blocks: list[np.ndarray] = []
    codes_only = description.get("encoding") == "codes"
    offset = 0
    for f in description["features"]:
        values = _get(data, f["name"])
        assert values is not None
        if codes_only:
            codes, _, _ = _category_codes(values, f["categories"])
            blocks.append((codes + offset).astype(np.float64)[:, None])
            offset += len(f["categories"])
        elif f["type"] == "numeric":
            floats, _, _ = _numeric(values)
            scaled = (np.clip(floats, f["min"], f["max"]) - f["min"]) / (f["max"] - f["min"])
            blocks.append((scaled * (hi - lo) + lo)[:, None])
        else:
            codes, _, _ = _category_codes(values, f["categories"])
            onehot = np.full((rows, len(f["categories"])), lo)
            onehot[np.arange(rows), codes] = hi
            blocks.append(onehot)
    features = np.concatenate(blocks, axis=1).astype(np.float32)
    labels = None
    if require_label:
        raw = _get(data, description["label"]["name"])
        assert raw is not None
        labels, _, _ = _category_codes(raw, description["label"]["categories"])
    return features, labels


def _check(
    description: Mapping[str, Any], data: Data, *, require_label: bool, clip: bool
) -> tuple[dict[str, dict[str, int]], int]:
    if description.get("version") != DESCRIPTION_VERSION:
        raise _schema_error("unknown preprocessing description version", field="version")
    if description["kind"] == "image":
        return _check_image(description, data, require_label=require_label, clip=clip)
    problems: dict[str, dict[str, int]] = {}
    rows = _rows(data)
    for f in description["features"]:
        values = _get(data, f["name"])
        if values is None:
            problems[f["name"]] = {"absent": 1}
            continue
        if f["type"] == "numeric":
            floats, missing, bad = _numeric(values)
            _count(problems, f["name"], "missing", missing)
            _count(problems, f["name"], "not_numeric", bad)
            if not clip:
                with np.errstate(invalid="ignore"):
                    out = (floats < f["min"]) | (floats > f["max"])
                _count(problems, f["name"], "out_of_range", out)
        else:
            _, missing, unknown = _category_codes(values, f["categories"])
            _count(problems, f["name"], "missing", missing)
            _count(problems, f["name"], "unknown_category", unknown)
    if require_label:
        name = description["label"]["name"]
        values = _get(data, name)
        if values is None:
            problems[name] = {"absent": 1}
        else:
            _, missing, unknown = _category_codes(values, description["label"]["categories"])
            _count(problems, name, "missing", missing)
            _count(problems, name, "unknown_category", unknown)
    return problems, rows


def _check_image(
    description: Mapping[str, Any], data: Data, *, require_label: bool, clip: bool
) -> tuple[dict[str, dict[str, int]], int]:
    problems: dict[str, dict[str, int]] = {}
    fkey, lkey = description["features_key"], description["labels_key"]
    if isinstance(data, pa.Table) or fkey not in data:
        return {fkey: {"absent": 1}}, 0
    x = np.asarray(data[fkey])
    rows = int(x.shape[0]) if x.ndim else 0
    size = math.prod(description["shape"])
    if (
        x.ndim < 2
        or math.prod(x.shape[1:]) != size
        or list(x.shape[1:])
        not in (
            description["shape"],
            description["declared_shape"],
        )
    ):
        return {fkey: {"wrong_shape": 1}}, rows
    if x.dtype.kind not in "fiub":
        return {fkey: {"not_numeric": rows}}, rows
    flat = x.reshape(rows, size).astype(np.float64)
    _count(problems, fkey, "missing", np.asarray(np.isnan(flat).any(axis=1)))
    if not clip:
        lo, hi = description["pixel_range"]["min"], description["pixel_range"]["max"]
        with np.errstate(invalid="ignore"):
            out = np.asarray(((flat < lo) | (flat > hi)).any(axis=1))
            _count(problems, fkey, "out_of_range", out)
    if require_label:
        if lkey not in data:
            problems[lkey] = {"absent": 1}
        else:
            y = np.asarray(data[lkey])
            if y.shape != (rows,) or y.dtype.kind not in "iu":
                problems[lkey] = {"wrong_shape": 1}
            else:
                k = len(description["label"]["categories"])
                _count(problems, lkey, "unknown_category", (y < 0) | (y >= k))
    return problems, rows
