"""The streaming ciphertext format: one data key, many fixed-size AES-256-GCM segments.

The layout follows Tink's AES-GCM-HKDF streaming AEAD (itself the STREAM construction of
Hoang, Reyhanitabar, Rogaway and Vizar, 2015): a per-file key derived by HKDF from the data key
and a random salt, and per-segment nonces ``nonce_prefix || counter || last_flag``. It departs
from Tink where this product needs more, and says so:

- the header carries magic, version, algorithm, segment size and dataset id, and *every* header
  field is HKDF ``info``, so editing any of them changes the derived key (Tink puts only the
  caller's associated data there);
- a 32-byte key-commitment value sits in the header, so a wrong data key is refused before any
  segment is touched, and no one can build a file that opens under two data keys;
- every segment holds the same plaintext size (Tink shortens segment 0 by the header length),
  which keeps the plaintext length a simple function of the file length.

See :mod:`privacy.vault` for the byte table and the threat model.
"""

from __future__ import annotations

import ctypes
import hmac
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privacy.errors import IntegrityError, VaultError
from privacy.vault.keyring import DATA_KEY_SIZE, encode_dataset_id

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "StreamEncryptor",
    "StreamHeader",
    "ciphertext_length",
    "decrypt_into_buffer",
    "decrypt_stream",
    "plaintext_length",
]

MAGIC = b"PVLT"
FORMAT_VERSION = 1
ALG_AES256GCM_HKDF_SHA256 = 1
DEFAULT_SEGMENT_SIZE = 1 << 20
MIN_SEGMENT_SIZE = 16
MAX_SEGMENT_SIZE = 64 << 20  # caps what one segment can make a reader allocate
TAG_SIZE = 16
SALT_SIZE = 32
NONCE_PREFIX_SIZE = 7
COMMITMENT_SIZE = 32
MAX_SEGMENTS = 1 << 32  # the counter is 32 bits

_FIXED = struct.Struct(">4sBBIH")  # magic, version, algorithm, segment size, dataset id length
_NONCE_TAIL = struct.Struct(">IB")  # counter, last-segment flag
_KEY_LABEL = b"privacy.vault stream v1 segment key\x00"
_COMMIT_LABEL = b"privacy.vault stream v1 key commitment\x00"


class _Reader(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def _wipe(buf: bytearray) -> None:
    """Zero a buffer in place (best effort: Python may have copied the data elsewhere)."""
    if buf:
        ctypes.memset((ctypes.c_char * len(buf)).from_buffer(buf), 0, len(buf))


def _hkdf(data_key: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(data_key)


@dataclass(frozen=True, slots=True)
class StreamHeader:
    """The parsed header. ``authenticated_part`` is every byte before the commitment."""

    segment_size: int
    dataset_id: bytes
    salt: bytes
    nonce_prefix: bytes
    commitment: bytes

    @property
    def authenticated_part(self) -> bytes:
        return (
            _FIXED.pack(
                MAGIC,
                FORMAT_VERSION,
                ALG_AES256GCM_HKDF_SHA256,
                self.segment_size,
                len(self.dataset_id),
            )
            + self.dataset_id
            + self.salt
            + self.nonce_prefix
        )

    def to_bytes(self) -> bytes:
        return self.authenticated_part + self.commitment

    def __len__(self) -> int:
        return header_length(self.dataset_id)

    def derive(self, data_key: bytes) -> tuple[bytes, bytes]:
        """(segment key, commitment) for this header: both bind every header field."""
        if len(data_key) != DATA_KEY_SIZE:
            raise ValueError(f"data keys are {DATA_KEY_SIZE} bytes")
        info = self.authenticated_part
        return (
            _hkdf(data_key, self.salt, _KEY_LABEL + info),
            _hkdf(data_key, self.salt, _COMMIT_LABEL + info),
        )


def header_length(dataset_id: bytes) -> int:
    return _FIXED.size + len(dataset_id) + SALT_SIZE + NONCE_PREFIX_SIZE + COMMITMENT_SIZE


def _check_segment_size(segment_size: int) -> None:
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError(
            f"segment_size must be between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE} bytes"
        )


def ciphertext_length(plaintext_len: int, *, dataset_id: str, segment_size: int) -> int:
    """Exact size of the file for a plaintext of ``plaintext_len`` bytes."""
    _check_segment_size(segment_size)
    segments = max(1, -(-plaintext_len // segment_size))
    return header_length(encode_dataset_id(dataset_id)) + plaintext_len + segments * TAG_SIZE


def plaintext_length(body_len: int, *, segment_size: int) -> int:
    """Plaintext size for ``body_len`` bytes of segments (the file after its header).

    Raises :class:`IntegrityError` for lengths no encryptor produces (a truncated tag).
    """
    full, rest = divmod(body_len, segment_size + TAG_SIZE)
    if rest == 0 and full > 0:
        return full * segment_size
    if rest < TAG_SIZE:
        raise IntegrityError("ciphertext is truncated inside a segment tag")
    return full * segment_size + rest - TAG_SIZE


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + _NONCE_TAIL.pack(counter, last)


class StreamEncryptor:
    """Encrypt one file incrementally: ``update(chunk) -> bytes`` then ``finalize() -> bytes``.

    Meant for a request body: feed chunks as they arrive and write each return value straight
    into the open ciphertext file. At most one segment of plaintext is buffered (the last full
    segment is held back until more data or :meth:`finalize` says whether it is the last one),
    so memory is bounded by ``segment_size`` plus the caller's chunk size. The first call that
    returns data also returns the header. Not thread-safe: one encryptor per upload.
    """

    def __init__(
        self,
        data_key: bytes,
        *,
        dataset_id: str,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> None:
        _check_segment_size(segment_size)
        self._header = StreamHeader(
            segment_size=segment_size,
            dataset_id=encode_dataset_id(dataset_id),
            salt=os.urandom(SALT_SIZE),
            nonce_prefix=os.urandom(NONCE_PREFIX_SIZE),
            commitment=b"",
        )
        segment_key, commitment = self._header.derive(data_key)
        self._header = StreamHeader(
            segment_size=segment_size,
            dataset_id=self._header.dataset_id,
            salt=self._header.salt,
            nonce_prefix=self._header.nonce_prefix,
            commitment=commitment,
        )
        self._aead = AESGCM(segment_key)
        self._size = segment_size
        self._buf = bytearray(segment_size)
        self._fill = 0
        self._counter = 0
        self._pending_header = True
        self._finished = False
        self._plaintext_bytes = 0

    @property
    def header(self) -> StreamHeader:
        return self._header

    @property
    def plaintext_bytes(self) -> int:
        """Plaintext bytes accepted so far (what an upload size limit should look at)."""
        return self._plaintext_bytes

    def _seal(self, data: memoryview | bytearray, *, last: bool) -> bytes:
        if self._counter >= MAX_SEGMENTS:
            raise VaultError("stream too long: the 32-bit segment counter is exhausted")
        sealed = self._aead.encrypt(
            _nonce(self._header.nonce_prefix, self._counter, last), data, None
        )
        self._counter += 1
        return sealed

    def _take_header(self, out: list[bytes]) -> None:
        if self._pending_header:
            out.append(self._header.to_bytes())
            self._pending_header = False

    def update(self, chunk: bytes | bytearray | memoryview) -> bytes:
        """Accept plaintext; return the ciphertext that is now final (possibly ``b""``)."""
        if self._finished:
            raise VaultError("update() after finalize()")
        view = memoryview(chunk).cast("B")
        self._plaintext_bytes += len(view)
        out: list[bytes] = []
        self._take_header(out)
        size = self._size
        while view:
            if self._fill == size:
                # A full segment followed by more data cannot be the last one: seal it now.
                out.append(self._seal(self._buf, last=False))
                self._fill = 0
            if self._fill == 0 and len(view) > size:
                # Fast path: seal straight from the caller's buffer, no copy into ours.
                out.append(self._seal(view[:size], last=False))
                view = view[size:]
                continue
            take = min(size - self._fill, len(view))
            self._buf[self._fill : self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
        return out[0] if len(out) == 1 else b"".join(out)

    def finalize(self) -> bytes:
        """Seal the last segment (flag set; empty only for an empty file) and wipe the buffer."""
        if self._finished:
            raise VaultError("finalize() called twice")
        out: list[bytes] = []
        self._take_header(out)
        out.append(self._seal(memoryview(self._buf)[: self._fill], last=True))
        self._finished = True
        _wipe(self._buf)
        self._fill = 0
        return b"".join(out)


def _read_exact(src: _Reader, size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at end of file (raw streams may return short reads)."""
    parts: list[bytes] = []
    left = size
    while left:
        part = src.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _readinto_full(src: _Reader, view: memoryview) -> int:
    readinto = getattr(src, "readinto", None)
    if readinto is None:
        data = _read_exact(src, len(view))
        view[: len(data)] = data
        return len(data)
    got = 0
    while got < len(view):
        n = readinto(view[got:])
        if not n:
            break
        got += n
    return got


def read_header(src: _Reader, *, dataset_id: str) -> StreamHeader:
    """Parse and sanity-check a header; the dataset id must be the one the caller expects."""
    expected = encode_dataset_id(dataset_id)
    fixed = _read_exact(src, _FIXED.size)
    if len(fixed) < _FIXED.size:
        raise IntegrityError("ciphertext is truncated inside the header")
    magic, version, alg, segment_size, id_len = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise IntegrityError("not a vault ciphertext (bad magic)")
    if version != FORMAT_VERSION:
        raise IntegrityError(f"unsupported vault format version {version}")
    if alg != ALG_AES256GCM_HKDF_SHA256:
        raise IntegrityError(f"unsupported vault algorithm {alg}")
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise IntegrityError("segment size in the header is out of range")
    if id_len != len(expected):
        raise IntegrityError("ciphertext belongs to another dataset")
    rest_len = id_len + SALT_SIZE + NONCE_PREFIX_SIZE + COMMITMENT_SIZE
    rest = _read_exact(src, rest_len)
    if len(rest) < rest_len:
        raise IntegrityError("ciphertext is truncated inside the header")
    stored_id = rest[:id_len]
    if not hmac.compare_digest(stored_id, expected):
        raise IntegrityError("ciphertext belongs to another dataset")
    pos = id_len
    salt = rest[pos : pos + SALT_SIZE]
    pos += SALT_SIZE
    prefix = rest[pos : pos + NONCE_PREFIX_SIZE]
    pos += NONCE_PREFIX_SIZE
    return StreamHeader(
        segment_size=segment_size,
        dataset_id=stored_id,
        salt=salt,
        nonce_prefix=prefix,
        commitment=rest[pos:],
    )


def _open(src: _Reader, data_key: bytes, dataset_id: str) -> tuple[StreamHeader, AESGCM]:
    header = read_header(src, dataset_id=dataset_id)
    segment_key, commitment = header.derive(data_key)
    if not hmac.compare_digest(commitment, header.commitment):
        raise IntegrityError("key commitment mismatch: wrong data key or edited header")
    return header, AESGCM(segment_key)


def _segments(src: _Reader, segment_size: int) -> Iterator[tuple[int, bool, memoryview]]:
    """Yield (counter, is_last, ciphertext view); a view is valid until the next step.

    One byte of look-ahead decides whether a segment is the last: a segment is "last" exactly
    when the file ends right after it. Truncation at a boundary therefore turns a sealed
    non-last segment into a claimed last one, whose nonce differs, and its tag fails.
    """
    seg_ct = segment_size + TAG_SIZE
    buf = bytearray(seg_ct + 1)
    view = memoryview(buf)
    have = _readinto_full(src, view)
    counter = 0
    while True:
        last = have <= seg_ct
        length = have if last else seg_ct
        if length < TAG_SIZE:
            raise IntegrityError(
                "ciphertext ends without a verified last segment (truncated)"
                if counter
                else "ciphertext has no segment (truncated after the header)"
            )
        if counter >= MAX_SEGMENTS:
            raise IntegrityError("too many segments")
        yield counter, last, view[:length]
        if last:
            return
        buf[0] = buf[seg_ct]
        have = 1 + _readinto_full(src, view[1:])
        counter += 1


def decrypt_stream(src: BinaryIO | _Reader, data_key: bytes, *, dataset_id: str) -> Iterator[bytes]:
    """Yield plaintext segments, each only after its tag verified.

    Memory is one ciphertext segment plus the plaintext being yielded, whatever the file size.
    A segment is authentic on its own, but the *file* is known complete only when the iterator
    finishes without raising: treat what you received as unconfirmed until then (a truncated
    file raises at its end, after the earlier segments were yielded).
    """
    header, aead = _open(src, data_key, dataset_id)
    prefix = header.nonce_prefix
    for counter, last, ct in _segments(src, header.segment_size):
        try:
            yield aead.decrypt(_nonce(prefix, counter, last), ct, None)
        except InvalidTag:
            raise IntegrityError(
                f"segment {counter} failed authentication "
                "(tampered, reordered, truncated, or from another file)"
            ) from None


def _remaining_size(src: object) -> int | None:
    """Bytes left in ``src`` if that can be known without reading it (regular file, BytesIO)."""
    try:
        st = os.fstat(src.fileno())  # type: ignore[attr-defined]
        if stat.S_ISREG(st.st_mode):  # a pipe or socket reports 0, which means "unknown"
            return st.st_size - int(src.tell())  # type: ignore[attr-defined]
        return None
    except (AttributeError, OSError, ValueError):
        pass
    getbuffer = getattr(src, "getbuffer", None)
    if getbuffer is not None:
        with getbuffer() as buffer:
            return int(buffer.nbytes) - int(src.tell())  # type: ignore[attr-defined]
    return None


def decrypt_into_buffer(
    src: BinaryIO | _Reader, data_key: bytes, *, dataset_id: str, max_bytes: int | None = None
) -> bytearray:
    """Decrypt a whole file into one ``bytearray`` (the worker's in-memory copy).

    When the source's size is known (a file, a BytesIO) the buffer is allocated once at the
    exact plaintext size and each segment is decrypted straight into it, so the peak is the
    plaintext plus one segment. ``AESGCM.decrypt_into`` writes plaintext before it checks the
    tag, so on any failure the whole buffer is wiped before the error propagates. The caller
    may wipe the result with :func:`wipe` when done.

    ``max_bytes`` refuses (with :class:`VaultError`) a plaintext larger than the worker is
    willing to hold, before allocating it: whoever can append to a stored file could otherwise
    make the worker allocate the file's whole length before the last segment fails.
    """
    remaining = _remaining_size(src)
    header, aead = _open(src, data_key, dataset_id)
    size = header.segment_size
    prefix = header.nonce_prefix
    if remaining is not None:
        expected = plaintext_length(remaining - len(header), segment_size=size)
        if max_bytes is not None and expected > max_bytes:
            raise VaultError(f"plaintext of {expected} bytes exceeds max_bytes={max_bytes}")
        out = bytearray(expected)
    else:
        out = bytearray()
    target = memoryview(out) if remaining is not None else None
    pos = 0
    try:
        for counter, last, ct in _segments(src, size):
            nonce = _nonce(prefix, counter, last)
            n = len(ct) - TAG_SIZE
            if target is None:
                if max_bytes is not None and len(out) + n > max_bytes:
                    raise VaultError(f"plaintext exceeds max_bytes={max_bytes}")
                out += aead.decrypt(nonce, ct, None)
                continue
            if pos + n > len(out):
                raise IntegrityError("ciphertext grew while it was being read")
            aead.decrypt_into(nonce, ct, None, target[pos : pos + n])
            pos += n
        if target is not None and pos != len(out):
            raise IntegrityError("ciphertext shrank while it was being read")
    except InvalidTag:
        if target is not None:
            target.release()
        _wipe(out)
        raise IntegrityError(
            "a segment failed authentication (tampered, reordered, truncated, or wrong file)"
        ) from None
    except BaseException:
        if target is not None:
            target.release()
        _wipe(out)
        raise
    if target is not None:
        target.release()
    return out


wipe = _wipe
