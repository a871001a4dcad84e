"""Request bodies as chunk iterators, never spooled: the raw PUT body and a streaming form.

Werkzeug spools a multipart file over 500 KB to a temporary file, which would put an owner's
plaintext on disk. Nothing here touches ``request.files``/``request.form``: the raw body is
read from ``request.stream``, and the HTML upload form is decoded incrementally with
Werkzeug's sans-IO ``MultipartDecoder``, the file part passing straight to the encryptor.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO

from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
    NeedData,
    Preamble,
)

from market.errors import InvalidRequest, PayloadTooLarge

CHUNK = 1 << 16
# Form fields (CSRF token, metadata JSON) are small; bound them so a form cannot fill memory.
MAX_FIELD_BYTES = 1 << 20


def body_chunks(stream: IO[bytes], *, max_bytes: int) -> Iterator[bytes]:
    """The request body in chunks; more than ``max_bytes`` raises 413 mid-stream."""
    total = 0
    while chunk := stream.read(CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(
                f"the file is larger than the {max_bytes:,} bytes this marketplace accepts",
                details={"max_bytes": max_bytes},
            )
        yield chunk


def discard_rest(stream: IO[bytes], *, max_bytes: int) -> bool:
    """Read and drop what is left of a request body, up to ``max_bytes``.

    True when the body was read to its end (the connection can serve another request);
    False when more remains or the client went away (the connection must close).
    """
    drained = 0
    try:
        while chunk := stream.read(CHUNK):
            drained += len(chunk)
            if drained > max_bytes:
                return False
    except Exception:  # the client disconnected or sent a broken body
        return False
    return True


class ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of chunks (for parsers that want a file)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class StreamingForm:
    """A multipart/form-data body read once, in order: small fields, then one file.

    Fields that come before the file are collected (``fields``); the file's bytes are then
    yielded by ``file_chunks``. Browsers send parts in the form's order, so the upload form
    puts its CSRF token and metadata before the file input.
    """

    def __init__(self, stream: IO[bytes], boundary: str, *, max_bytes: int) -> None:
        self._stream = stream
        self._decoder = MultipartDecoder(boundary.encode("latin-1"), max_parts=16)
        self._max_bytes = max_bytes
        self._received = 0
        self.fields: dict[str, str] = {}
        self.filename: str | None = None

    def _next_event(self) -> object:
        while True:
            event = self._decoder.next_event()
            if not isinstance(event, NeedData):
                return event
            chunk = self._stream.read(CHUNK)
            self._received += len(chunk)
            if self._received > self._max_bytes:
                raise PayloadTooLarge(
                    f"the upload is larger than the {self._max_bytes:,} bytes accepted",
                    details={"max_bytes": self._max_bytes},
                )
            try:
                self._decoder.receive_data(chunk or None)
            except ValueError as exc:  # pragma: no cover - decoder refuses garbage
                raise InvalidRequest("the form data is malformed") from exc

    def read_fields(self) -> dict[str, str]:
        """Collect the fields up to the file part (or to the end if there is none)."""
        current: str | None = None
        value = bytearray()
        while True:
            try:
                event = self._next_event()
            except ValueError as exc:
                raise InvalidRequest("the form data is malformed or incomplete") from exc
            if isinstance(event, Preamble):
                continue
            if isinstance(event, File):
                self.filename = event.filename
                return self.fields
            if isinstance(event, Field):
                current, value = event.name, bytearray()
            elif isinstance(event, Data) and current is not None:
                value.extend(event.data)
                if len(value) > MAX_FIELD_BYTES:
                    raise PayloadTooLarge(f"the form field {current!r} is too large")
                if not event.more_data:
                    self.fields[current] = value.decode("utf-8", errors="replace")
                    current = None
            elif isinstance(event, Epilogue):
                return self.fields

    def file_chunks(self) -> Iterator[bytes]:
        """The file part's bytes; afterwards the rest of the body is read and ignored."""
        if self.filename is None:
            return
        while True:
            try:
                event = self._next_event()
            except ValueError as exc:
                raise InvalidRequest("the upload ended before the file was complete") from exc
            if isinstance(event, Data):
                if event.data:
                    yield event.data
                if not event.more_data:
                    break
        while not isinstance(self._safe_next(), Epilogue):
            pass

    def _safe_next(self) -> object:
        try:
            return self._next_event()
        except ValueError:
            return Epilogue(data=b"")
