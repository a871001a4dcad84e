"""Columns the owner chose not to publish are left out of the stored file.

The wizard lets the owner keep a column private: it is then neither described nor stored.
The upload was encrypted whole at the wizard's first step, so the listing step re-reads it
(decrypted in memory, market.catalog.drafts) and streams the kept columns into a new
ciphertext with a fresh data key; the first one is then deleted. Cells are copied as text,
exactly as written (spaces, marks and empty cells included): only columns go.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from market.catalog.streams import ChunkReader
from market.errors import ValidationFailed

BLOCK_BYTES = 1 << 20


class _Sink(io.RawIOBase):
    """A write-only file whose bytes are taken out after each batch."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def project_csv(chunks: Iterator[bytes], keep: list[str]) -> Iterator[bytes]:
    """The CSV with only the columns named in ``keep`` (names as written in the header)."""
    source = io.BufferedReader(ChunkReader(chunks), buffer_size=1 << 16)
    try:
        reader = pa_csv.open_csv(
            source,
            read_options=pa_csv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
            convert_options=pa_csv.ConvertOptions(
                include_columns=keep,
                column_types={name: pa.string() for name in keep},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
        sink = _Sink()
        writer = pa_csv.CSVWriter(
            sink, reader.schema, write_options=pa_csv.WriteOptions(quoting_style="needed")
        )
        for batch in reader:
            writer.write_batch(batch)
            if part := sink.take():
                yield part
        writer.close()
        if part := sink.take():
            yield part
    except (pa.ArrowInvalid, UnicodeDecodeError):
        raise ValidationFailed(
            "the file is not well-formed CSV (UTF-8, comma-separated, a header line first)"
        ) from None


def project_parquet(chunks: Iterator[bytes], keep: list[str]) -> Iterator[bytes]:
    """The Parquet file with only ``keep``'s columns (in memory: the caller bounds it)."""
    data = b"".join(chunks)
    try:
        table = pq.read_table(io.BytesIO(data), columns=keep)
    except (pa.ArrowException, OSError):
        raise ValidationFailed("the Parquet file could not be read") from None
    out = io.BytesIO()
    pq.write_table(table, out)
    del table, data
    yield out.getvalue()
