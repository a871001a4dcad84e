"""How the platform reads a listed CSV: every cell as text, header names as declared.

One rule for the upload validator (``market.catalog.validation``) and the worker
(``market.trading.execution``), so a file that was accepted is read the same way when it is
trained on. Cells stay text: ``privacy.preprocessing`` parses numbers itself, and a parser's
type-inference error would quote the offending value. With the listing's ``trim_spaces``
the header's names are trimmed too (``age, workclass`` names ``workclass``).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv


def header_names(line: bytes) -> list[str]:
    """The names in a CSV header line.

    Raises:
        UnicodeDecodeError: not UTF-8.
        csv.Error: not one CSV record.
    """
    return next(csv.reader([line.rstrip(b"\r\n").decode("utf-8-sig")]), [])


def trims(description: Mapping[str, Any]) -> bool:
    return bool(description.get("trim_spaces", False))


def read_options(header: list[str], *, trim: bool, **options: Any) -> pa_csv.ReadOptions:
    """Names from the file's header, trimmed when the listing says so (then the header
    line is skipped and the trimmed names given instead)."""
    if not trim:
        return pa_csv.ReadOptions(**options)
    return pa_csv.ReadOptions(column_names=[n.strip() for n in header], skip_rows=1, **options)


def convert_options(declared: list[str]) -> pa_csv.ConvertOptions:
    return pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in declared},
        strings_can_be_null=True,
        null_values=[""],
    )
