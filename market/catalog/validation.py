"""Check an uploaded file against its declared schema, in memory, as it streams.

Every message names columns and counts, never a value: the only people who see these
errors are the dataset's owner, but error text also reaches logs. CSV is checked batch by
batch as it arrives (memory ~ one batch); Parquet and NPZ keep their index at the end of the
file, so they are held in memory (bounded by ``catalog.max_in_memory_bytes``) and never on disk.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from market.catalog.models import DatasetFormat
from market.catalog.streams import ChunkReader
from market.errors import PayloadTooLarge, ValidationFailed
from privacy.errors import SchemaError, SchemaViolation
from privacy.preprocessing import validate_rows

CSV_BLOCK_BYTES = 1 << 20
_FIELD_COUNT = re.compile(r"Expected (\d+) columns, got (\d+)")


def validate_upload(
    fmt: DatasetFormat,
    chunks: Iterator[bytes],
    description: Mapping[str, Any],
    *,
    declared_columns: list[str],
    max_in_memory_bytes: int,
) -> int:
    """Consume ``chunks`` and return the row count, or raise ValidationFailed/PayloadTooLarge."""
    if fmt is DatasetFormat.CSV:
        return _validate_csv(chunks, description, declared_columns)
    data = _collect(chunks, max_in_memory_bytes=max_in_memory_bytes)
    if fmt is DatasetFormat.PARQUET:
        return _validate_parquet(data, description, declared_columns)
    return _validate_npz(data, description)


def _collect(chunks: Iterator[bytes], *, max_in_memory_bytes: int) -> bytes:
    buffer = bytearray()
    for chunk in chunks:
        buffer.extend(chunk)
        if len(buffer) > max_in_memory_bytes:
            raise PayloadTooLarge(
                f"Parquet and NPZ files are validated in memory, up to {max_in_memory_bytes:,} "
                "bytes; split the file or send CSV, which streams",
                details={"max_bytes": max_in_memory_bytes},
            )
    if not buffer:
        raise ValidationFailed("the file is empty")
    return bytes(buffer)


def _check_rows(description: Mapping[str, Any], data: Any) -> int:
    try:
        return validate_rows(description, data)
    except SchemaViolation as exc:
        raise ValidationFailed(
            "the file does not match the declared schema: " + _summarise(exc.details),
            details=exc.details,
        ) from exc
    except SchemaError as exc:
        raise ValidationFailed(str(exc), details=exc.details) from exc


def _require_two_classes(classes: set[str]) -> None:
    """A label with one class present trains nothing; say so before anything is sold."""
    if len(classes) < 2:
        raise ValidationFailed(
            "the label column holds a single class; a classifier needs at least two"
        )


def _label_values(table: pa.Table, label: str | None) -> set[str]:
    if label is None or label not in table.column_names:
        return set()
    return {str(v) for v in pc.unique(table[label]).to_pylist() if v is not None}


def _summarise(details: Mapping[str, Any]) -> str:
    columns = details.get("columns", {})
    parts = [
        f"{column}: "
        + ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in kinds.items())
        for column, kinds in list(columns.items())[:5]
    ]
    return "; ".join(parts) or "see details"


def _merge(total: dict[str, dict[str, int]], more: Mapping[str, Mapping[str, int]]) -> None:
    for column, kinds in more.items():
        bucket = total.setdefault(column, {})
        for kind, count in kinds.items():
            bucket[kind] = bucket.get(kind, 0) + int(count)


def _check_header(found: list[str], declared: list[str]) -> None:
    missing = [c for c in declared if c not in found]
    extra = [c for c in found if c not in declared]
    if missing or extra or len(set(found)) != len(found):
        raise ValidationFailed(
            "the file's columns do not match the declared columns",
            details={"missing": missing, "undeclared": extra},
        )


def _validate_csv(
    chunks: Iterator[bytes], description: Mapping[str, Any], declared: list[str]
) -> int:
    reader_source = io.BufferedReader(ChunkReader(chunks), buffer_size=1 << 16)
    try:
        reader = pa_csv.open_csv(
            reader_source,
            read_options=pa_csv.ReadOptions(use_threads=False, block_size=CSV_BLOCK_BYTES),
            convert_options=pa_csv.ConvertOptions(
                # Read every value as text: the schema check parses numbers itself, and a
                # type-inference error from the parser would quote the offending value.
                column_types={name: pa.string() for name in declared},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
        _check_header(reader.schema.names, declared)
        rows = 0
        problems: dict[str, dict[str, int]] = {}
        classes: set[str] = set()
        label = description["label"]["name"]
        for batch in reader:
            table = pa.Table.from_batches([batch])
            if len(classes) < 2:
                classes |= _label_values(table, label)
            try:
                rows += validate_rows(description, table)
            except SchemaViolation as exc:
                _merge(problems, exc.details.get("columns", {}))
                rows += table.num_rows
    except pa.ArrowInvalid as exc:
        raise ValidationFailed(_csv_error(str(exc))) from None
    except UnicodeDecodeError:
        raise ValidationFailed("the CSV is not valid UTF-8 text") from None
    if problems:
        details = {"columns": problems, "rows": rows}
        raise ValidationFailed(
            "the file does not match the declared schema: " + _summarise(details), details=details
        )
    if rows == 0:
        raise ValidationFailed("the file has a header but no rows")
    _require_two_classes(classes)
    return rows


def _csv_error(message: str) -> str:
    """A parser error without the row text pyarrow would quote."""
    if "Empty CSV file" in message:
        return "the file is empty"
    if match := _FIELD_COUNT.search(message):
        expected, got = match.groups()
        return f"the CSV is malformed: a row has {got} fields where the header has {expected}"
    if "UTF8" in message or "utf8" in message.lower():
        return "the CSV is not valid UTF-8 text"
    return "the file is not well-formed CSV (UTF-8, comma-separated, a header line first)"


def _validate_parquet(data: bytes, description: Mapping[str, Any], declared: list[str]) -> int:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError):
        raise ValidationFailed("the file is not a readable Parquet file") from None
    _check_header(table.column_names, declared)
    rows = _check_rows(description, table)
    if rows == 0:
        raise ValidationFailed("the file has no rows")
    _require_two_classes(_label_values(table, description["label"]["name"]))
    return rows


def _validate_npz(data: bytes, description: Mapping[str, Any]) -> int:
    try:
        # allow_pickle=False: an .npz may carry pickled objects; loading them runs code.
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError):
        raise ValidationFailed(
            "the file is not a readable .npz of plain arrays (object arrays are refused)"
        ) from None
    rows = _check_rows(description, arrays)
    if rows == 0:
        raise ValidationFailed("the file has no rows")
    labels = arrays[description["labels_key"]]
    _require_two_classes({str(v) for v in np.unique(labels)})
    return rows
