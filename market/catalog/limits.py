"""What an uploaded file claims to be, read from its headers before anything is decoded.

A few hundred compressed bytes can claim gigabytes: an NPZ of zeros deflates a
thousandfold, a Parquet file of identical rows run-length encodes to almost nothing. So the
size that bounds memory and CPU is the *declared* one, read here without materialising a
value: each NPZ member's ``.npy`` header (``numpy.lib.format``) and its ZIP entry's
uncompressed size, or a Parquet file's footer (``pyarrow.parquet.ParquetFile(...).metadata``).
The validator (``market.catalog.validation``) checks these claims against the caps and the
cheap rules (delta below 1/rows) first, and only then decodes, in bounded batches.

Every refusal here is a ``MarketError`` whose message names the problem and never a value
from the file (only sizes, counts and the archive's array names, which the schema declares).
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from market.errors import MarketError, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

NPY_MAGIC = b"\x93NUMPY"
ZIP_LOCAL_MAGIC = b"PK\x03\x04"
ZIP_EMPTY_MAGIC = b"PK\x05\x06"
PARQUET_MAGIC = b"PAR1"
#: An .npz holds a features and a labels array (and maybe a few more); a central directory
#: of thousands of entries is a way to make the ZIP reader allocate, not a dataset.
MAX_NPZ_MEMBERS = 64
#: numpy's own default for ``max_header_size`` (headers of ordinary arrays are < 200 bytes).
MAX_NPY_HEADER = 10_000
_EOCD = struct.Struct("<4s4H2LH")


@dataclass(frozen=True)
class UploadLimits:
    """Everything the validator checks a file against, besides its schema."""

    delta: float
    max_in_memory_bytes: int
    max_decoded_bytes: int
    max_cells: int


def check_delta(delta: float, rows: int, *, at_least: bool = False) -> None:
    """Delta must stay below 1/rows: a larger delta permits releasing a whole row outright.

    ``at_least``: ``rows`` is a count so far (a CSV still streaming); the file has more.
    """
    if rows > 0 and not delta < 1.0 / rows:
        counted = f"at least {rows:,}" if at_least else f"{rows:,}"
        raise ValidationFailed(
            f"delta {delta:g} must be below 1/rows: this file has {counted} rows "
            f"(1/rows = {1.0 / rows:.3g}); lower the dataset's delta",
            details={"field": "privacy.delta", "rows": rows, "max_delta": 1.0 / rows},
        )


def check_cells(rows: int, columns: int, limits: UploadLimits, *, at_least: bool = False) -> None:
    """Rows x columns (x pixels per image) bounds the validator's CPU and the trainer's."""
    cells = rows * columns
    if cells > limits.max_cells:
        counted = "at least " if at_least else ""
        raise PayloadTooLarge(
            f"the file holds {counted}{rows:,} rows x {columns:,} values = {cells:,} values, "
            f"more than the {limits.max_cells:,} this marketplace accepts (catalog.max_cells)",
            details={"rows": rows, "columns": columns, "max_cells": limits.max_cells},
        )


def check_decoded(decoded: int, limits: UploadLimits, what: str) -> None:
    if decoded > limits.max_decoded_bytes:
        raise PayloadTooLarge(
            f"the {what} decodes to {decoded:,} bytes, more than the "
            f"{limits.max_decoded_bytes:,} accepted (catalog.max_decoded_bytes)",
            details={"decoded_bytes": decoded, "max_decoded_bytes": limits.max_decoded_bytes},
        )


def sniff(data: bytes) -> str | None:
    """The container format the first bytes announce: "npy", "npz", "parquet" or None."""
    if data.startswith(NPY_MAGIC):
        return "npy"
    if data.startswith((ZIP_LOCAL_MAGIC, ZIP_EMPTY_MAGIC)):
        return "npz"
    if data.startswith(PARQUET_MAGIC):
        return "parquet"
    return None


_FORMAT_NAMES = {
    "npy": "a .npy array",
    "npz": "a ZIP archive (.npz)",
    "parquet": "a Parquet file",
}


def wrong_format(expected: str, data: bytes, hint: str) -> UnsupportedMediaType:
    """415 for a body that is another format than the dataset declared."""
    found = sniff(data)
    what = _FORMAT_NAMES.get(found or "", "")
    message = f"the file is {what}, not {expected}" if what else f"the file is not {expected}"
    return UnsupportedMediaType(
        f"{message}; {hint}", details={"expected": expected, "detected": found}
    )


# -- NPZ ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NpyHeader:
    """One archive member's declared array: shape, dtype and memory order."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    fortran_order: bool
    data_offset: int  # bytes of magic + header inside the member

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _zip_member_count(data: bytes) -> int:
    """Entries in the ZIP's end-of-central-directory record, before ZipFile parses them."""
    tail = data[-(65535 + _EOCD.size) :]
    at = tail.rfind(ZIP_EMPTY_MAGIC)
    if at < 0 or len(tail) - at < _EOCD.size:
        raise ValidationFailed(
            "the .npz archive is damaged or truncated (its ZIP directory is missing)"
        )
    fields = _EOCD.unpack(tail[at : at + _EOCD.size])
    total = int(fields[4])
    return total


def open_npz(data: bytes) -> zipfile.ZipFile:
    """The archive, after checking it is a ZIP of a handful of members."""
    if sniff(data) != "npz":
        raise wrong_format(
            "an .npz archive",
            data,
            "save the arrays with numpy.savez(file, x=images, y=labels)",
        )
    members = _zip_member_count(data)
    if members == 0xFFFF or members > MAX_NPZ_MEMBERS:
        raise ValidationFailed(
            f"the .npz archive has more than {MAX_NPZ_MEMBERS} members; "
            "send only the images and labels arrays",
            details={"max_members": MAX_NPZ_MEMBERS},
        )
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError):
        raise ValidationFailed(
            "the .npz archive is damaged (its ZIP directory is unreadable)"
        ) from None


def member_name(archive: zipfile.ZipFile, key: str) -> str | None:
    """The ZIP entry of array ``key`` (numpy.savez writes ``<key>.npy``)."""
    names = set(archive.namelist())
    for candidate in (f"{key}.npy", key):
        if candidate in names:
            return candidate
    return None


def read_npy_header(archive: zipfile.ZipFile, key: str, entry: str) -> NpyHeader:
    """Read only the ``.npy`` header of one member (a few hundred bytes decompressed)."""
    info = archive.getinfo(entry)
    try:
        with archive.open(info) as member:
            return _parse_npy_header(member, key, info.file_size)
    except MarketError:
        raise
    except (RuntimeError, NotImplementedError):  # encrypted or an unknown compression
        raise ValidationFailed(
            f"array {key!r} is encrypted or compressed with a method numpy cannot read",
            details={"array": key},
        ) from None
    except Exception:  # zlib.error, BadZipFile, EOFError, ValueError, struct.error, ...
        raise ValidationFailed(
            f"array {key!r} has a damaged or unreadable .npy header", details={"array": key}
        ) from None


def _parse_npy_header(member: IO[bytes], key: str, file_size: int) -> NpyHeader:
    try:
        version = np.lib.format.read_magic(member)
    except ValueError:
        raise ValidationFailed(
            f"archive member {key!r} is not a .npy array", details={"array": key}
        ) from None
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(
            member, max_header_size=MAX_NPY_HEADER
        )
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(
            member, max_header_size=MAX_NPY_HEADER
        )
    else:
        raise ValidationFailed(
            f"array {key!r} uses .npy format version {version[0]}.{version[1]}; "
            "plain numeric arrays are saved as 1.0 or 2.0",
            details={"array": key},
        )
    if dtype.hasobject:
        raise ValidationFailed(
            f"array {key!r} holds Python objects (pickles), which are refused; "
            "send plain numeric arrays",
            details={"array": key},
        )
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise ValidationFailed(
            f"array {key!r} has dtype {dtype.str}; images and labels are plain "
            "integer, boolean or floating arrays",
            details={"array": key, "dtype": dtype.str},
        )
    header = NpyHeader(
        name=key,
        shape=tuple(int(s) for s in shape),
        dtype=dtype,
        fortran_order=bool(fortran),
        data_offset=member.tell(),
    )
    stored = file_size - header.data_offset
    if header.nbytes != stored:
        raise ValidationFailed(
            f"array {key!r} claims shape {list(header.shape)} ({header.nbytes:,} bytes) but "
            f"its archive member holds {max(stored, 0):,} bytes of data",
            details={"array": key, "shape": list(header.shape), "stored_bytes": stored},
        )
    return header


def npz_decoded_size(archive: zipfile.ZipFile) -> int:
    """Sum of every member's uncompressed size, as the ZIP directory declares it."""
    return sum(info.file_size for info in archive.infolist())


# -- Parquet -----------------------------------------------------------------------


@dataclass(frozen=True)
class ParquetFooter:
    file: pq.ParquetFile
    rows: int
    leaf_columns: int
    names: list[str]
    decoded_bytes: int


def read_parquet_footer(data: bytes) -> ParquetFooter:
    """Open the file's footer only (row groups are decoded later, one at a time)."""
    if not (data.startswith(PARQUET_MAGIC) and data.endswith(PARQUET_MAGIC)):
        if sniff(data) not in (None, "parquet"):
            raise wrong_format("a Parquet file", data, "send Content-Type: the file's own format")
        raise ValidationFailed(
            "the file is not a readable Parquet file (it must begin and end with 'PAR1')"
        )
    try:
        file = pq.ParquetFile(pa.BufferReader(data))
        meta = file.metadata
        names = list(file.schema_arrow.names)
        decoded = sum(max(0, meta.row_group(i).total_byte_size) for i in range(meta.num_row_groups))
        return ParquetFooter(
            file=file,
            rows=int(meta.num_rows),
            leaf_columns=int(meta.num_columns),
            names=names,
            decoded_bytes=int(decoded),
        )
    except MarketError:
        raise
    except Exception:  # ArrowInvalid, OSError, thrift limits, ...
        raise ValidationFailed(
            "the file is not a readable Parquet file (its footer is damaged)"
        ) from None
