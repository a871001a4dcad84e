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


def cell_text(value: Any) -> str | None:
    """A typed cell (Parquet, NumPy) as the listing reads it: None when missing (null,
    NaN), else the text categories are compared as (1.0 -> "1", True -> "true"). The
    listing wizard suggests categories with it, so they match what is checked."""
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return None
    return value if isinstance(value, str) else _norm(value)


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


#: At most this many missing-value marks ("?", "NA", ...) per listing, each this long.
MAX_MISSING_MARKS = 20
MAX_MARK_LENGTH = 40
#: How a numeric column is scaled into the feature range.
SCALES = ("linear", "log")
#: At most this many bin edges on one numeric column.
MAX_BIN_EDGES = 100


def bins_ok(edges: Any, lo: float, hi: float) -> bool:
    """Bin edges a numeric column may declare: finite numbers strictly inside its bounds,
    strictly increasing, at most ``MAX_BIN_EDGES``."""
    if not isinstance(edges, list) or not 0 < len(edges) <= MAX_BIN_EDGES:
        return False
    numbers = all(
        isinstance(e, int | float) and not isinstance(e, bool) and math.isfinite(e) for e in edges
    )
    return numbers and all(a < b for a, b in zip([lo, *edges], [*edges, hi], strict=True))


def bin_names(name: str, edges: Sequence[float]) -> list[str]:
    """The encoded columns of a binned numeric column, one per interval."""
    inner = [f"{name}[{a:g},{b:g})" for a, b in zip(edges, edges[1:], strict=False)]
    return [f"{name}<{edges[0]:g}", *inner, f"{name}>={edges[-1]:g}"]


def _missing_marks(metadata: Mapping[str, Any]) -> list[str]:
    raw = metadata.get("missing_values", [])
    ok = isinstance(raw, list) and len(raw) <= MAX_MISSING_MARKS
    if not ok or not all(isinstance(m, str) and 0 < len(m) <= MAX_MARK_LENGTH for m in raw):
        raise _schema_error(
            f"missing_values must be a list of at most {MAX_MISSING_MARKS} non-empty texts",
            field="missing_values",
        )
    return list(dict.fromkeys(raw))


def _trim_flag(metadata: Mapping[str, Any]) -> bool:
    raw = metadata.get("trim_spaces", False)
    if not isinstance(raw, bool):
        raise _schema_error("trim_spaces must be true or false", field="trim_spaces")
    return raw


def _numeric_feature(col: Mapping[str, Any], where: str) -> NumericFeature:
    lo, hi = _bounds(col, where)
    feature: NumericFeature = {"name": col["name"], "type": "numeric", "min": lo, "max": hi}
    scale = col.get("scale", "linear")
    if scale not in SCALES:
        raise _schema_error(f"{where} scale must be 'linear' or 'log'", field=where)
    if scale == "log":
        feature["scale"] = "log"
    if col.get("bins") is not None:
        if not bins_ok(col["bins"], lo, hi):
            raise _schema_error(
                f"{where} bins must be 1 to {MAX_BIN_EDGES} increasing edges strictly "
                "between min and max",
                field=where,
            )
        if scale == "log":
            raise _schema_error(f"{where} takes bins or a log scale, not both", field=where)
        feature["bins"] = [float(e) for e in col["bins"]]
    if col.get("fill") is not None:
        fill = col["fill"]
        usable = isinstance(fill, int | float) and not isinstance(fill, bool)
        if not usable or not math.isfinite(fill) or not lo <= fill <= hi:
            raise _schema_error(f"{where} fill must be a number within its bounds", field=where)
        feature["fill"] = float(fill)
    return feature


def _categorical_feature(
    col: Mapping[str, Any], where: str, *, trim: bool, marks: Sequence[str]
) -> CategoricalFeature:
    cats = _categories(col.get("categories"), where)
    if trim and any(c != c.strip() for c in cats):
        raise _schema_error(
            f"{where} declares a category with surrounding spaces, which trim_spaces removes "
            "from every cell",
            field=where,
        )
    if clash := sorted(set(cats) & set(marks)):
        raise _schema_error(
            f"{where} declares {clash[0]!r} both as a category and as a missing-value mark",
            field=where,
        )
    feature: CategoricalFeature = {"name": col["name"], "type": "categorical", "categories": cats}
    if col.get("fill") is not None:
        fill = _norm(col["fill"])
        if fill not in cats:
            raise _schema_error(f"{where} fill must be one of its categories", field=where)
        feature["fill"] = fill
    return feature


def _describe_tabular(metadata: Mapping[str, Any]) -> TabularDescription:
    columns = metadata.get("columns")
    label = metadata.get("label")
    if not isinstance(columns, list) or not columns:
        raise _schema_error("tabular metadata needs a non-empty 'columns' list", field="columns")
    if len(columns) > MAX_COLUMNS:
        raise _schema_error(f"more than {MAX_COLUMNS} columns", field="columns")
    if not isinstance(label, str):
        raise _schema_error("metadata needs the 'label' column name", field="label")
    trim, marks = _trim_flag(metadata), _missing_marks(metadata)
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
            if col.get("fill") is not None:
                raise _schema_error("the label column takes no fill value", field=where)
            cats = _categorical_feature(col, where, trim=trim, marks=marks)["categories"]
            if len(cats) < MIN_CLASSES:
                raise _schema_error("the label needs at least two categories", field=where)
            label_spec = {"name": name, "categories": cats}
        elif kind == "numeric":
            features.append(_numeric_feature(col, where))
        elif kind == "categorical":
            features.append(_categorical_feature(col, where, trim=trim, marks=marks))
        else:
            raise _schema_error(f"{where} type must be 'numeric' or 'categorical'", field=where)
    if label_spec is None:
        raise _schema_error(f"label column '{label}' is not among the columns", field="label")
    if not features:
        raise _schema_error("no feature column besides the label", field="columns")
    encoded: list[str] = []
    for f in features:
        if f["type"] == "numeric" and "bins" in f:
            encoded += bin_names(f["name"], f["bins"])
        elif f["type"] == "numeric":
            encoded.append(f["name"])
        else:
            encoded += [f"{f['name']}={c}" for c in f["categories"]]
    description: TabularDescription = {
        "kind": "tabular",
        "version": DESCRIPTION_VERSION,
        "range": _target_range(metadata),
        "features": features,
        "label": label_spec,
        "encoded_columns": encoded,
    }
    # Only where declared: a listing without them keeps the description it always had.
    if trim:
        description["trim_spaces"] = True
    if marks:
        description["missing_values"] = marks
    return description


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
# A column is read once, by its distinct values: the rules (trimming, missing marks, number
# parsing, category lookup) run in Python over the distinct values only, and NumPy maps
# them back onto the rows. An Adult-sized table (32,561 rows) took 0.2 s by row loops.

#: A column as stored: Arrow (tables) or NumPy (npz archives, a buyer's mapping).
Column: TypeAlias = pa.ChunkedArray | np.ndarray


def _get(data: Data, name: str) -> Column | None:
    if isinstance(data, pa.Table):
        if name not in data.column_names:
            return None
        column = data.column(name)
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            return column.to_numpy().astype(np.float64)
        return column
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


def _distinct(values: Column) -> tuple[list[Any], np.ndarray]:
    """The column's distinct values and, per row, the index of its value among them."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "US":
        uniques, inverse = np.unique(values, return_inverse=True)
        return uniques.tolist(), inverse.reshape(-1)
    try:
        array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else pa.array(values)
        encoded = array.dictionary_encode()
    except (pa.ArrowException, TypeError, ValueError):  # mixed Python objects: by hand
        index: dict[tuple[type, Any], int] = {}
        keys: list[Any] = []
        items = values.to_pylist() if isinstance(values, pa.ChunkedArray) else values.tolist()
        positions = np.empty(len(items), dtype=np.int64)
        for i, v in enumerate(items):
            key = (type(v), v if v == v else "nan")  # NaN != NaN: one key for all of them
            if key not in index:
                index[key] = len(keys)
                keys.append(v)
            positions[i] = index[key]
        return keys, positions
    uniques = encoded.dictionary.to_pylist()
    nulls = len(uniques)
    uniques.append(None)
    return uniques, encoded.indices.fill_null(nulls).to_numpy().astype(np.int64)


@dataclass(frozen=True)
class _Reading:
    """How cells are read: declared by the listing (``trim_spaces``, ``missing_values``)."""

    trim: bool
    marks: frozenset[str]

    @classmethod
    def of(cls, description: Mapping[str, Any]) -> _Reading:
        return cls(
            bool(description.get("trim_spaces", False)),
            frozenset(description.get("missing_values", ())),
        )

    def text(self, value: Any) -> str | None:
        """The cell's text, or None when it is missing."""
        if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
            return None
        text = (value.strip() if self.trim else value) if isinstance(value, str) else _norm(value)
        return None if text == "" or text in self.marks else text


def _numeric(values: Column, reading: _Reading) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Floats, a missing mask and a not-numeric mask (values never leave this module)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        floats = values.astype(np.float64)
        return floats, np.isnan(floats), np.zeros(len(values), dtype=bool)
    uniques, inverse = _distinct(values)
    parsed = np.full(len(uniques), np.nan)
    missing = np.zeros(len(uniques), dtype=bool)
    bad = np.zeros(len(uniques), dtype=bool)
    for i, v in enumerate(uniques):
        text = reading.text(v)
        if text is None or not text.strip():
            missing[i] = True
            continue
        try:
            f = float(v) if not isinstance(v, str) else float(text)
        except (TypeError, ValueError):
            bad[i] = True
            continue
        if math.isnan(f):
            missing[i] = True
        else:
            parsed[i] = f
    return parsed[inverse], missing[inverse], bad[inverse]


def _category_codes(
    values: Column, categories: Sequence[str], reading: _Reading
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes in declared order (-1 when absent), a missing mask and an unknown mask."""
    index = {c: i for i, c in enumerate(categories)}
    uniques, inverse = _distinct(values)
    codes = np.full(len(uniques), -1, dtype=np.int64)
    missing = np.zeros(len(uniques), dtype=bool)
    for i, v in enumerate(uniques):
        text = reading.text(v)
        if text is None:
            missing[i] = True
        else:
            codes[i] = index.get(text, -1)
    codes, missing = codes[inverse], missing[inverse]
    return codes, missing, (codes < 0) & ~missing


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
    _version(description)
    if description["kind"] == "image":
        problems, rows = _check_image(description, data, require_label=require_label, clip=False)
    else:
        problems, rows, _, _ = _read_tabular(
            description, data, require_label=require_label, clip=False
        )
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


def _version(description: Mapping[str, Any]) -> None:
    if description.get("version") != DESCRIPTION_VERSION:
        raise _schema_error("unknown preprocessing description version", field="version")


def _encode(
    description: Mapping[str, Any], data: Data, *, require_label: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    _version(description)
    if description["kind"] == "image":
        return _encode_image(description, data, require_label=require_label)
    problems, rows, columns, labels = _read_tabular(
        description, data, require_label=require_label, clip=True
    )
    if problems:
        raise _violation(problems, rows)
    lo, hi = description["range"]
    codes_only = description.get("encoding") == "codes"
    features = np.empty((rows, len(description["encoded_columns"])), dtype=np.float32)
    at = offset = 0
    for f, column in zip(description["features"], columns, strict=True):
        if codes_only:
            features[:, at] = column + offset
            offset += len(f["categories"])
            at += 1
        elif f["type"] == "numeric" and "bins" in f:
            at = _one_hot(features, at, _bin_codes(column, f), len(f["bins"]) + 1, lo, hi)
        elif f["type"] == "numeric":
            features[:, at] = _scaled(column, f) * (hi - lo) + lo
            at += 1
        else:
            at = _one_hot(features, at, column, len(f["categories"]), lo, hi)
    return features, labels


def _one_hot(
    features: np.ndarray, at: int, codes: np.ndarray, width: int, lo: float, hi: float
) -> int:
    """Write ``codes`` one-hot into ``width`` columns from ``at``; returns the next column."""
    block = features[:, at : at + width]
    block.fill(lo)
    block[np.arange(len(codes)), codes] = hi
    return at + width


def _bin_codes(floats: np.ndarray, feature: Mapping[str, Any]) -> np.ndarray:
    """Each value's interval, clipped to the column's bounds first: ``[min, e1)`` is 0,
    ``[e_k, max]`` is ``k``."""
    clipped = np.clip(floats, feature["min"], feature["max"])
    return np.searchsorted(np.asarray(feature["bins"]), clipped, side="right")


def _scaled(floats: np.ndarray, feature: Mapping[str, Any]) -> np.ndarray:
    """A numeric column clipped to its bounds and mapped onto [0, 1] (linear or log)."""
    lo, hi = feature["min"], feature["max"]
    clipped = np.clip(floats, lo, hi)
    if feature.get("scale") == "log":
        return np.log1p(clipped - lo) / math.log1p(hi - lo)
    return (clipped - lo) / (hi - lo)


def _read_tabular(
    description: Mapping[str, Any], data: Data, *, require_label: bool, clip: bool
) -> tuple[dict[str, dict[str, int]], int, list[np.ndarray], np.ndarray | None]:
    """Problem counts, rows, each feature's floats (numeric) or codes, and the labels."""
    reading = _Reading.of(description)
    problems: dict[str, dict[str, int]] = {}
    rows = _rows(data)
    columns: list[np.ndarray] = []
    for f in description["features"]:
        name = f["name"]
        values = _get(data, name)
        if values is None:
            problems[name] = {"absent": 1}
            columns.append(np.zeros(rows, dtype=np.int64))
            continue
        if f["type"] == "numeric":
            floats, missing, bad = _numeric(values, reading)
            if "fill" in f:
                floats[missing], missing = f["fill"], np.zeros_like(missing)
            _count(problems, name, "missing", missing)
            _count(problems, name, "not_numeric", bad)
            if not clip:
                with np.errstate(invalid="ignore"):
                    out = (floats < f["min"]) | (floats > f["max"])
                _count(problems, name, "out_of_range", out)
            columns.append(floats)
        else:
            codes, missing, unknown = _category_codes(values, f["categories"], reading)
            if "fill" in f:
                codes[missing] = f["categories"].index(f["fill"])
                missing = np.zeros_like(missing)
            _count(problems, name, "missing", missing)
            _count(problems, name, "unknown_category", unknown)
            columns.append(codes)
    labels = None
    if require_label:
        name = description["label"]["name"]
        values = _get(data, name)
        if values is None:
            problems[name] = {"absent": 1}
        else:
            labels, missing, unknown = _category_codes(
                values, description["label"]["categories"], reading
            )
            _count(problems, name, "missing", missing)
            _count(problems, name, "unknown_category", unknown)
    return problems, rows, columns, labels


def _encode_image(
    description: Mapping[str, Any], data: Data, *, require_label: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    problems, rows = _check_image(description, data, require_label=require_label, clip=True)
    if problems:
        raise _violation(problems, rows)
    lo, hi = description["range"]
    p_lo, p_hi = description["pixel_range"]["min"], description["pixel_range"]["max"]
    # float32 throughout: MNIST's 47 million pixels were 376 MB more as float64.
    x = np.asarray(data[description["features_key"]]).astype(np.float32)
    x = x.reshape((rows, *description["shape"]))
    np.clip(x, p_lo, p_hi, out=x)
    x -= np.float32(p_lo)
    x *= np.float32((hi - lo) / (p_hi - p_lo))
    x += np.float32(lo)
    labels = None
    if require_label:
        labels = np.asarray(data[description["labels_key"]]).astype(np.int64)
    return x, labels


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
    flat = x.reshape(rows, size)
    if flat.dtype.kind == "f":
        _count(problems, fkey, "missing", np.asarray(np.isnan(flat).any(axis=1)))
    if not clip and rows:
        lo, hi = description["pixel_range"]["min"], description["pixel_range"]["max"]
        with np.errstate(invalid="ignore"):
            out = (flat.min(axis=1) < lo) | (flat.max(axis=1) > hi)
        _count(problems, fkey, "out_of_range", np.asarray(out))
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
