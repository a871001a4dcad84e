"""What a file holds, shown to its owner only, before they decide what to publish.

The listing wizard's first step reads the owner's file in memory (as a stream, never spooled:
see market/catalog/streams.py), profiles it here, and renders the profile in the response to
that owner. The statistics are never stored; the file itself is kept encrypted, with a key
only the owner's page holds (market/catalog/drafts.py), so it is sent once. The profile only
suggests the listing's public metadata (rounded bounds, the categories, the label, how to
treat spaces and missing cells); the owner chooses in the wizard's form (market/catalog/wizard.py).

Problems are named with example values, quoted so that a leading space is visible: the
listing refuses values outside the declared schema, and ``" Private"`` is not ``"Private"``.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from market.catalog import limits
from market.catalog.validation import csv_error
from market.errors import ValidationFailed
from privacy.preprocessing import cell_text

# Categorical columns list their values up to this many (the rest are counted).
MAX_VALUES = 40
# A column with at most this many distinct values is offered as a label.
MAX_LABEL_CLASSES = 20
# Distinct values kept per column (the commonest): a column with more is numeric, or names
# rows and is suggested left out; the wizard offers 200 of them at most.
MAX_DISTINCT_KEPT = 20_000
_SLICE = 1 << 16
# Cells read as missing by people, though not by the listing: named as problems.
MISSING_MARKS = ("?", "NA", "N/A", "null", "NULL", "-")


@dataclass
class ColumnProfile:
    name: str
    kind: str  # "numeric" or "categorical"
    rows: int
    empty: int = 0
    marks: dict[str, int] = field(default_factory=dict)  # "?" and the like, with counts
    padded: int = 0  # values with leading or trailing spaces
    padded_examples: list[str] = field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None
    values: list[tuple[str, int]] = field(default_factory=list)  # the commonest, with counts
    categories: list[str] = field(default_factory=list)  # every value, as written
    counts: dict[str, int] = field(default_factory=dict)  # every value, as written: count
    # A numeric column's numbers, as written: count (an owner may mark "-1" or "999" as
    # missing; the wizard counts those cells with it). Owner only, never stored.
    numbers: dict[str, int] = field(default_factory=dict)
    distinct: int = 0

    @property
    def problems(self) -> list[str]:
        out = []
        if self.padded:
            shown = ", ".join(f"“{v}”" for v in self.padded_examples)
            out.append(f"{self.padded} values start or end with a space, e.g. {shown}")
        for mark, count in self.marks.items():
            out.append(f"{count} cells hold “{mark}” (a missing value?)")
        if self.empty:
            out.append(f"{self.empty} empty cells")
        return out

    def suggested_bounds(self) -> tuple[float, float] | None:
        if self.minimum is None or self.maximum is None:
            return None
        return nice_floor(self.minimum), nice_ceil(self.maximum)


@dataclass
class FileProfile:
    format: str
    rows: int
    columns: list[ColumnProfile] = field(default_factory=list)
    arrays: list[tuple[str, list[int], str]] = field(default_factory=list)  # NPZ members

    @property
    def label_candidates(self) -> list[str]:
        return [
            c.name
            for c in self.columns
            if c.kind == "categorical" and 2 <= c.distinct <= MAX_LABEL_CLASSES
        ]


def _step(value: float) -> float:
    magnitude = abs(value)
    if magnitude == 0:
        return 1.0
    return float(10 ** math.floor(math.log10(magnitude)))


def nice_floor(value: float) -> float:
    """Rounded down to the value's leading digit: 17.3 -> 10, 0.042 -> 0.04, -3.2 -> -4."""
    step = _step(value)
    rounded = float(Decimal(str(math.floor(value / step) * step)).normalize())
    return rounded if math.isfinite(rounded) else value  # near the largest float


def nice_ceil(value: float) -> float:
    """Rounded up to the value's leading digit: 90 -> 90, 91.2 -> 100, 0.042 -> 0.05."""
    step = _step(value)
    rounded = float(Decimal(str(math.ceil(value / step) * step)).normalize())
    return rounded if math.isfinite(rounded) else value  # near the largest float


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _profile_column(name: str, rows: int, cells: Iterable[tuple[str | None, int]]) -> ColumnProfile:
    """A column from its distinct cells and their counts (the rules run once per value).
    At most MAX_DISTINCT_KEPT values are kept (the commonest: see _distinct_cells); the
    others still count for the range, the marks, the spaces and ``distinct``."""
    column = ColumnProfile(name=name, kind="categorical", rows=rows)
    counts: Counter[str] = Counter()
    marks: Counter[str] = Counter()
    low = high = math.nan
    numeric = True
    for cell, n in cells:
        if cell is None or cell.strip() == "":
            column.empty += n
            continue
        if cell != cell.strip():
            column.padded += n
            if len(column.padded_examples) < 3 and cell not in column.padded_examples:
                column.padded_examples.append(cell)
        column.distinct += 1
        if len(counts) < MAX_DISTINCT_KEPT:
            counts[cell] += n
        if cell.strip() in MISSING_MARKS:
            marks[cell.strip()] += n
            continue
        if numeric:
            value = _number(cell.strip())
            if value is None:
                numeric = False
            else:
                low = value if math.isnan(low) else min(low, value)
                high = value if math.isnan(high) else max(high, value)
    column.marks = dict(marks)
    found = numeric and not math.isnan(low)  # some number was read
    if found:  # a few distinct numbers may still be published as numeric
        column.minimum, column.maximum = low, high
    if found and column.distinct > MAX_LABEL_CLASSES:
        column.kind = "numeric"
        column.numbers = {cell: n for cell, n in counts.items() if cell.strip() not in marks}
    else:
        column.values = counts.most_common(MAX_VALUES)
        column.categories = sorted(counts)
        column.counts = dict(counts)
    return column


def _distinct_cells(column: pa.ChunkedArray) -> Iterator[tuple[str | None, int]]:
    """Each distinct cell (as text, in first-seen order) with its count: Arrow counts, so
    a 32 MB CSV is profiled in a fraction of a second instead of cell by cell (3.6 s).

    Typed cells are read as the listing reads them (True is "true", 1.0 is "1", NaN is
    missing), so the categories suggested are the ones checked. Memory is bounded: the
    cells come slice by slice, and a column with more than MAX_DISTINCT_KEPT distinct
    values gives its commonest first (a million ids held 0.3 GB, then the form 2 s more)."""
    text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    try:
        tallies = pc.value_counts(column)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # nested types: as text first
        column = pa.chunked_array([[cell_text(v) for v in column.to_pylist()]], type=pa.string())
        tallies, text = pc.value_counts(column), True
    if len(tallies) > MAX_DISTINCT_KEPT:
        order = pc.array_sort_indices(tallies.field("counts"), order="descending")
        tallies = tallies.take(order)
    for start in range(0, len(tallies), _SLICE):
        part = tallies.slice(start, _SLICE)
        values = part.field("values").to_pylist()
        if not text:
            values = [cell_text(v) for v in values]
        yield from zip(values, part.field("counts").to_pylist(), strict=True)


def profile_table(table: pa.Table, fmt: str) -> FileProfile:
    """Refuses, in words for the owner, what no listing could describe: a header naming a
    column twice (Arrow would not tell the two apart) or a file without rows."""
    names = table.column_names
    twice = [n for n in dict.fromkeys(names) if names.count(n) > 1]
    if twice:
        raise ValidationFailed(
            f"the file's header names the column “{twice[0]}” twice: give each column its own name",
            details={"field": "file"},
        )
    if table.num_rows == 0:
        raise ValidationFailed("the file has a header but no rows", details={"field": "file"})
    out = FileProfile(format=fmt, rows=table.num_rows)
    for name in table.column_names:
        column = table.column(name)
        out.columns.append(_profile_column(name, table.num_rows, _distinct_cells(column)))
    return out


def profile_file(fmt: str, data: bytes) -> FileProfile:
    """Profile a CSV, Parquet or NPZ file held in memory (the caller bounds its size)."""
    try:
        if fmt == "csv" and data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16's marks
            raise UnicodeDecodeError("utf-8", data[:2], 0, 2, "a UTF-16 byte order mark")
        if fmt == "csv":
            table = pa_csv.read_csv(
                io.BytesIO(data),
                read_options=pa_csv.ReadOptions(use_threads=False),
                convert_options=pa_csv.ConvertOptions(
                    strings_can_be_null=False, null_values=[], column_types=None
                ),
            )
            table = table.cast(pa.schema([(n, pa.string()) for n in table.column_names]))
            return profile_table(table, fmt)
        if fmt == "parquet":
            return profile_table(pq.read_table(io.BytesIO(data)), fmt)
        if fmt == "npz":
            return _profile_npz(data)
    except UnicodeDecodeError:
        raise ValidationFailed(_NOT_UTF8, details={"field": "file"}) from None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        if fmt != "csv":
            raise ValidationFailed(
                f"the file could not be read as {fmt.upper()}", details={"field": "file"}
            ) from None
        # The CSV parser's reason (a row's field count, not UTF-8), never the row's text.
        reason = csv_error(str(exc))
        raise ValidationFailed(
            _NOT_UTF8 if "UTF-8" in reason else reason, details={"field": "file"}
        ) from None
    raise ValidationFailed("choose a CSV, Parquet or NPZ file", details={"field": "file"})


_NOT_UTF8 = (
    "the file is not UTF-8 text: save it as UTF-8 (in a spreadsheet: “CSV UTF-8”) and "
    "choose it again"
)


def _profile_npz(data: bytes) -> FileProfile:
    """An NPZ's arrays (name, shape, dtype), from the headers only (nothing is decoded): the
    image and label keys are chosen from them."""
    out = FileProfile(format="npz", rows=0)
    archive = limits.open_npz(data)
    with archive:
        for entry in archive.namelist():
            if not entry.endswith(".npy"):
                continue
            key = entry[:-4]
            header = limits.read_npy_header(archive, key, entry)
            out.arrays.append((key, list(header.shape), str(header.dtype)))
    if not out.arrays:
        raise ValidationFailed(
            "the .npz archive holds no arrays; save them with numpy.savez(file, x=images, "
            "y=labels)",
            details={"field": "file"},
        )
    out.rows = max((shape[0] for _, shape, _ in out.arrays if shape), default=0)
    return out


def suggested_metadata(profile: FileProfile, *, title: str, label: str | None) -> dict[str, Any]:
    """Public metadata the owner starts from: bounds rounded outwards, categories exactly as
    written in the file (so it lists as it is), the label, conservative budget and prices."""
    meta: dict[str, Any] = {
        "title": title,
        "description": "",
        "licence": "CC-BY-4.0",
        "tags": [],
        "format": profile.format,
        "privacy": {"epsilon_total": 10.0, "delta": 1e-6, "max_epsilon_per_run": 2.0},
        "price": {"per_run": "5.00", "per_epsilon": "2.00", "currency": "EUR"},
    }
    if profile.format == "npz":
        images = [a for a in profile.arrays if len(a[1]) >= 3]
        labels = [a for a in profile.arrays if len(a[1]) == 1]
        integer = bool(images) and images[0][2].startswith("uint")
        meta["image"] = {
            "features_key": images[0][0] if images else "x",
            "labels_key": labels[0][0] if labels else "y",
            "shape": images[0][1][1:] if images else [28, 28],
            "pixel_range": {"min": 0, "max": 255 if integer else 1},
            "class_names": ["name each class, in label order", "..."],
        }
        return meta
    candidates = profile.label_candidates
    chosen = label or (candidates[-1] if candidates else None)
    meta["label"] = chosen
    columns = []
    for c in profile.columns:
        bounds = c.suggested_bounds()
        if c.kind == "numeric" and bounds is not None:
            columns.append({"name": c.name, "type": "numeric", "min": bounds[0], "max": bounds[1]})
        else:
            columns.append({"name": c.name, "type": "categorical", "categories": c.categories})
    meta["columns"] = columns
    return meta
