"""Check an uploaded file against its declared schema, in memory, as it streams.

Every message names columns and counts, never a value: the only people who see these
errors are the dataset's owner, but error text also reaches logs.

Memory and CPU are bounded by what the file *declares*, not by its compressed size, and
the cheap rules come first (``market.catalog.limits``):

- CSV is checked batch by batch as it arrives (memory ~ one 1 MiB block). Its header line
  is read first and must fit in one block; the row count is checked against delta and the
  cell cap as it grows, so an oversized file is refused as soon as it says so.
- Parquet and NPZ keep their index at the end of the file, so their compressed bytes are
  held in memory (bounded by ``catalog.max_in_memory_bytes``) and never on disk. Then the
  Parquet footer or each NPZ member's ``.npy`` header gives rows, columns and decoded size;
  delta below 1/rows, ``catalog.max_cells`` and ``catalog.max_decoded_bytes`` are checked
  before one value is decoded, and the values are then decoded and checked in batches
  (about ``BATCH_CELLS`` at a time), never as one float64 copy of the whole file.

Any error a decoder raises on a hostile file becomes a 4xx that names the problem.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from market.catalog import tables
from market.catalog.limits import (
    NpyHeader,
    UploadLimits,
    check_cells,
    check_decoded,
    check_delta,
    member_name,
    npz_decoded_size,
    open_npz,
    read_npy_header,
    read_parquet_footer,
    sniff,
    wrong_format,
)
from market.catalog.models import DatasetFormat
from market.catalog.streams import ChunkReader
from market.errors import MarketError, PayloadTooLarge, ValidationFailed
from privacy.errors import SchemaError, SchemaViolation
from privacy.preprocessing import validate_rows

log = logging.getLogger(__name__)

CSV_BLOCK_BYTES = 1 << 20
#: Values decoded and checked at once (as float64: 16 MiB, plus a few boolean masks).
BATCH_CELLS = 1 << 21
_FIELD_COUNT = re.compile(r"Expected (\d+) columns, got (\d+)")
_MAX_LISTED_NAMES = 20


def validate_upload(
    fmt: DatasetFormat,
    chunks: Iterator[bytes],
    description: Mapping[str, Any],
    *,
    declared_columns: list[str],
    limits: UploadLimits,
) -> int:
    """Consume ``chunks`` and return the row count, or raise a 4xx ``MarketError``."""
    if fmt is DatasetFormat.CSV:
        return _validate_csv(chunks, description, declared_columns, limits)
    data = _collect(chunks, max_in_memory_bytes=limits.max_in_memory_bytes)
    try:
        if fmt is DatasetFormat.PARQUET:
            return _validate_parquet(data, description, declared_columns, limits)
        return _validate_npz(data, description, limits)
    except MarketError:
        raise
    except MemoryError:
        raise PayloadTooLarge(
            "the file is too large to validate on this server; send a smaller file"
        ) from None
    except Exception as exc:  # a decoder's error on a hostile file is the file's fault
        log.warning("undecodable %s upload: %s", fmt.value, type(exc).__name__)
        raise ValidationFailed(
            f"the file could not be decoded as {fmt.value} ({type(exc).__name__})"
        ) from None


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


def _require_two_classes(classes: set[str]) -> None:
    """A label with one class present trains nothing; say so before anything is sold."""
    if len(classes) < 2:
        raise ValidationFailed(
            "the label column holds a single class; a classifier needs at least two"
        )


def _label_values(table: pa.Table, label: str | None, *, trim: bool = False) -> set[str]:
    if label is None or label not in table.column_names:
        return set()
    values = {str(v) for v in pc.unique(table[label]).to_pylist() if v is not None}
    return {v.strip() for v in values} if trim else values


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
    if len(found) > len(declared):
        raise ValidationFailed(
            f"the file's header has too many columns: {len(found):,}, where this dataset "
            f"declares {len(declared):,}",
            details={"columns": len(found), "declared": len(declared)},
        )
    missing = [c for c in declared if c not in found]
    extra = [c for c in found if c not in declared]
    twice = [c for c in dict.fromkeys(found) if found.count(c) > 1]
    if missing or extra or twice:
        message = "the file's columns do not match the declared columns"
        if twice and not extra:
            message = (
                "the file's header names a column twice (with trim_spaces, after its names "
                "are trimmed)"
            )
        raise ValidationFailed(
            message,
            details={
                "missing": missing[:_MAX_LISTED_NAMES],
                "undeclared": extra[:_MAX_LISTED_NAMES],
                "twice": twice[:_MAX_LISTED_NAMES],
            },
        )


class _Batches:
    """Row counts, problem counts and label classes summed over batches; refuses early."""

    def __init__(
        self, description: Mapping[str, Any], limits: UploadLimits, *, width: int, streaming: bool
    ) -> None:
        self.description = description
        self.limits = limits
        self.width = width
        self.streaming = streaming
        self.rows = 0
        self.problems: dict[str, dict[str, int]] = {}
        self.classes: set[str] = set()

    def check(self, data: Any, rows: int) -> None:
        try:
            validate_rows(self.description, data)
        except SchemaViolation as exc:
            _merge(self.problems, exc.details.get("columns", {}))
        except SchemaError as exc:
            raise ValidationFailed(str(exc), details=exc.details) from exc
        self.rows += rows
        if self.streaming:  # the count so far already breaks a rule: stop reading
            check_delta(self.limits.delta, self.rows, at_least=True)
            check_cells(self.rows, self.width, self.limits, at_least=True)

    def finish(self) -> int:
        if self.problems:
            details = {"columns": self.problems, "rows": self.rows}
            raise ValidationFailed(
                "the file does not match the declared schema: " + _summarise(details),
                details=details,
            )
        if self.rows == 0:
            raise ValidationFailed("the file has a header but no rows")
        _require_two_classes(self.classes)
        return self.rows


# -- CSV ---------------------------------------------------------------------------


def _csv_header(
    chunks: Iterator[bytes], declared: list[str]
) -> tuple[bytes, list[str], Iterator[bytes]]:
    """Read the header line (at most one parser block) and check its column count.

    pyarrow infers the columns from its first block; a longer header would otherwise be
    reported as an empty file. Returns the bytes read so far, the header's names and the
    rest of the stream.
    """
    head = bytearray()
    for chunk in chunks:
        head.extend(chunk)
        if b"\n" in head or len(head) > CSV_BLOCK_BYTES:
            break
    if not head.strip():
        raise ValidationFailed("the file is empty")
    end = head.find(b"\n")
    if end < 0 and len(head) > CSV_BLOCK_BYTES:
        at_least = head.count(b",") + 1
        raise ValidationFailed(
            f"the CSV header has too many columns: its first line is longer than "
            f"{CSV_BLOCK_BYTES:,} bytes (at least {at_least:,} columns; this dataset declares "
            f"{len(declared):,})",
            details={"columns_at_least": at_least, "declared": len(declared)},
        )
    line = bytes(head if end < 0 else head[:end])
    try:
        names = tables.header_names(line)
    except UnicodeDecodeError:
        raise ValidationFailed("the CSV is not valid UTF-8 text") from None
    except csv.Error:
        raise ValidationFailed("the CSV header line is malformed") from None
    if len(names) > len(declared):
        raise ValidationFailed(
            f"the CSV header has too many columns: {len(names):,}, where this dataset "
            f"declares {len(declared):,}",
            details={"columns": len(names), "declared": len(declared)},
        )
    return bytes(head), names, chunks


def _validate_csv(
    chunks: Iterator[bytes],
    description: Mapping[str, Any],
    declared: list[str],
    limits: UploadLimits,
) -> int:
    head, header, rest = _csv_header(chunks, declared)

    def whole() -> Iterator[bytes]:
        yield head
        yield from rest

    reader_source = io.BufferedReader(ChunkReader(whole()), buffer_size=1 << 16)
    batches = _Batches(description, limits, width=len(declared), streaming=True)
    label = description["label"]["name"]
    try:
        reader = pa_csv.open_csv(
            reader_source,
            read_options=tables.read_options(
                header,
                trim=tables.trims(description),
                use_threads=False,
                block_size=CSV_BLOCK_BYTES,
            ),
            convert_options=tables.convert_options(declared),
        )
        _check_header(reader.schema.names, declared)
        for batch in reader:
            table = pa.Table.from_batches([batch])
            if len(batches.classes) < 2:
                batches.classes |= _label_values(table, label, trim=tables.trims(description))
            batches.check(table, table.num_rows)
    except pa.ArrowInvalid as exc:
        raise ValidationFailed(csv_error(str(exc))) from None
    except UnicodeDecodeError:
        raise ValidationFailed("the CSV is not valid UTF-8 text") from None
    return batches.finish()


def csv_error(message: str) -> str:
    """A parser error without the row text pyarrow would quote."""
    if "Empty CSV file" in message:
        return "the file is empty"
    if "straddles" in message:
        return f"the CSV has a row longer than {CSV_BLOCK_BYTES:,} bytes"
    if match := _FIELD_COUNT.search(message):
        expected, got = match.groups()
        fields = "field" if got == "1" else "fields"
        return f"the CSV is malformed: a row has {got} {fields} where the header has {expected}"
    if "UTF8" in message or "utf8" in message.lower():
        return "the CSV is not valid UTF-8 text"
    return "the file is not well-formed CSV (UTF-8, comma-separated, a header line first)"


# -- Parquet -----------------------------------------------------------------------


def _validate_parquet(
    data: bytes, description: Mapping[str, Any], declared: list[str], limits: UploadLimits
) -> int:
    footer = read_parquet_footer(data)
    _check_header(footer.names, declared)
    if footer.rows == 0:
        raise ValidationFailed("the file has no rows")
    check_delta(limits.delta, footer.rows)
    check_cells(footer.rows, max(footer.leaf_columns, len(declared)), limits)
    check_decoded(footer.decoded_bytes, limits, "Parquet file")
    batches = _Batches(description, limits, width=len(declared), streaming=False)
    label = description["label"]["name"]
    batch_rows = max(1, min(65_536, BATCH_CELLS // max(1, len(declared))))
    try:
        for batch in footer.file.iter_batches(
            batch_size=batch_rows, columns=declared, use_threads=False
        ):
            table = pa.Table.from_batches([batch])
            if len(batches.classes) < 2:
                batches.classes |= _label_values(table, label, trim=tables.trims(description))
            batches.check(table, table.num_rows)
            if batches.rows > footer.rows:
                break
    except (pa.ArrowException, OSError, ValueError):
        raise ValidationFailed(
            "the Parquet file's data pages are damaged or cannot be decoded"
        ) from None
    if batches.rows != footer.rows:
        raise ValidationFailed(
            f"the Parquet footer declares {footer.rows:,} rows but the data holds "
            f"{'more' if batches.rows > footer.rows else batches.rows}",
            details={"declared_rows": footer.rows},
        )
    return batches.finish()


# -- NPZ ---------------------------------------------------------------------------


def _validate_npz(data: bytes, description: Mapping[str, Any], limits: UploadLimits) -> int:
    fkey, lkey = description["features_key"], description["labels_key"]
    with open_npz(data) as archive:
        entries = {key: member_name(archive, key) for key in (fkey, lkey)}
        missing = [key for key, entry in entries.items() if entry is None]
        if missing:
            raise ValidationFailed(
                "the .npz archive has no array named "
                + " or ".join(repr(k) for k in missing)
                + f" (images go under {fkey!r}, labels under {lkey!r})",
                details={"missing": missing},
            )
        x_entry, y_entry = entries[fkey], entries[lkey]
        assert x_entry is not None and y_entry is not None
        x = read_npy_header(archive, fkey, x_entry)
        y = read_npy_header(archive, lkey, y_entry)
        size = math.prod(description["shape"])
        image = list(x.shape[1:])
        if len(x.shape) < 2 or image not in (description["shape"], description["declared_shape"]):
            raise ValidationFailed(
                f"array {fkey!r} holds images of shape {image}; this dataset declares "
                f"{description['declared_shape']}",
                details={"columns": {fkey: {"wrong_shape": 1}}},
            )
        rows = x.shape[0]
        if y.shape != (rows,) or y.dtype.kind not in "iu":
            raise ValidationFailed(
                f"array {lkey!r} must be a vector of {rows:,} integer class indices, one per "
                f"image (it has shape {list(y.shape)} and dtype {y.dtype.str})",
                details={"columns": {lkey: {"wrong_shape": 1}}},
            )
        if rows == 0:
            raise ValidationFailed("the file has no rows")
        # The cheap rules, from the headers alone, before any value is decompressed.
        check_delta(limits.delta, rows)
        check_cells(rows, size, limits)
        check_decoded(npz_decoded_size(archive), limits, ".npz archive")
        labels = np.frombuffer(_member_data(archive, y_entry, y), dtype=y.dtype)
        batches = _Batches(description, limits, width=size, streaming=False)
        for start, images in _image_batches(archive, x_entry, x, size):
            batch = {fkey: images, lkey: labels[start : start + len(images)]}
            batches.check(batch, len(images))
        batches.classes = {str(v) for v in np.unique(labels)}
        return batches.finish()


def _damaged(key: str) -> ValidationFailed:
    return ValidationFailed(
        f"array {key!r} is damaged: its compressed data does not decode to what its "
        "header declares",
        details={"array": key},
    )


def _member_data(archive: zipfile.ZipFile, entry: str, header: NpyHeader) -> bytes:
    """A whole member's data (used for labels, and images stored in Fortran order)."""
    try:
        with archive.open(entry) as member:
            member.read(header.data_offset)
            raw = member.read(header.nbytes + 1)
    except MarketError:
        raise
    except Exception:
        raise _damaged(header.name) from None
    if len(raw) != header.nbytes:
        raise _damaged(header.name)
    return raw


def _image_batches(
    archive: zipfile.ZipFile, entry: str, header: NpyHeader, size: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Images in batches of about BATCH_CELLS values, in their own dtype."""
    rows = header.shape[0]
    per_batch = max(1, BATCH_CELLS // max(1, size))
    if header.fortran_order:
        whole = np.frombuffer(_member_data(archive, entry, header), dtype=header.dtype)
        images = whole.reshape(header.shape, order="F")
        for start in range(0, rows, per_batch):
            yield start, np.ascontiguousarray(images[start : start + per_batch])
        return
    row_bytes = size * header.dtype.itemsize
    try:
        with archive.open(entry) as member:
            member.read(header.data_offset)
            for start in range(0, rows, per_batch):
                count = min(per_batch, rows - start)
                raw = member.read(count * row_bytes)
                if len(raw) != count * row_bytes:
                    raise _damaged(header.name)
                images = np.frombuffer(raw, dtype=header.dtype).reshape(count, *header.shape[1:])
                yield start, images
            if member.read(1):
                raise _damaged(header.name)
    except MarketError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError):
        raise _damaged(header.name) from None


__all__ = ["UploadLimits", "sniff", "validate_upload", "wrong_format"]
