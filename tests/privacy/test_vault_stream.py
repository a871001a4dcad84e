"""The streaming format: round trips and Tink's tamper matrix.

Most cases run against both decoders (the segment iterator and the in-memory buffer), because
they share the parser but not the decrypt loop. Data keys are used directly here: wrapping is
covered in test_vault_keyring.py.
"""

from __future__ import annotations

import io
import os
import random
import struct
import threading
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.errors import IntegrityError, VaultError
from privacy.vault import (
    DEFAULT_SEGMENT_SIZE,
    StreamEncryptor,
    ciphertext_length,
    decrypt_into_buffer,
    decrypt_stream,
    generate_data_key,
    plaintext_length,
)
from privacy.vault.stream import TAG_SIZE, header_length

S = 64
DATASET = "ds-7"
H = header_length(DATASET.encode())


def encrypt(
    data: bytes, key: bytes, *, segment_size: int = S, dataset_id: str = DATASET, chunk: int = 0
) -> bytes:
    enc = StreamEncryptor(key, dataset_id=dataset_id, segment_size=segment_size)
    if not chunk:
        return enc.update(data) + enc.finalize()
    parts = [enc.update(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    return b"".join(parts) + enc.finalize()


def via_iter(ct: bytes, key: bytes, dataset_id: str = DATASET) -> bytes:
    return b"".join(decrypt_stream(io.BytesIO(ct), key, dataset_id=dataset_id))


def via_buffer(ct: bytes, key: bytes, dataset_id: str = DATASET) -> bytes:
    return bytes(decrypt_into_buffer(io.BytesIO(ct), key, dataset_id=dataset_id))


class ShortReads(io.RawIOBase):
    """A non-seekable source that returns at most 7 bytes per read (a socket, a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._src = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self._src.read(min(7, len(b)))
        memoryview(b).cast("B")[: len(chunk)] = chunk
        return len(chunk)


DECODERS: list[Callable[[bytes, bytes], bytes]] = [via_iter, via_buffer]
DECODER_IDS = ["iter", "buffer"]


def assert_rejected(ct: bytes, key: bytes, what: str, dataset_id: str = DATASET) -> None:
    for decode in DECODERS:
        try:
            decode(ct, key, dataset_id)  # type: ignore[call-arg]
        except IntegrityError:
            continue
        raise AssertionError(f"{decode.__name__} accepted {what}")


def segments(ct: bytes, segment_size: int = S) -> tuple[bytes, list[bytes]]:
    body = ct[H:]
    step = segment_size + TAG_SIZE
    return ct[:H], [body[i : i + step] for i in range(0, len(body), step)]


@pytest.fixture
def key() -> bytes:
    return generate_data_key()


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, S - 1, S, S + 1, 2 * S, 5 * S + 17])
@pytest.mark.parametrize("decode", DECODERS, ids=DECODER_IDS)
def test_round_trip_small_segments(size: int, decode: Callable[..., bytes], key: bytes) -> None:
    data = os.urandom(size)
    ct = encrypt(data, key)
    assert len(ct) == ciphertext_length(size, dataset_id=DATASET, segment_size=S)
    assert plaintext_length(len(ct) - H, segment_size=S) == size
    assert decode(ct, key) == data


@pytest.mark.parametrize(
    "size", [0, DEFAULT_SEGMENT_SIZE - 1, DEFAULT_SEGMENT_SIZE, 2 * DEFAULT_SEGMENT_SIZE + 12345]
)
def test_round_trip_default_segment_size(size: int, key: bytes) -> None:
    data = os.urandom(size)
    ct = encrypt(data, key, segment_size=DEFAULT_SEGMENT_SIZE, chunk=65536)
    assert len(ct) == ciphertext_length(size, dataset_id=DATASET, segment_size=DEFAULT_SEGMENT_SIZE)
    assert via_iter(ct, key) == data
    assert via_buffer(ct, key) == data


def test_chunking_does_not_change_the_layout(key: bytes) -> None:
    data = os.urandom(3 * S)  # an exact multiple: the last full segment must carry the flag
    for chunk in (0, 1, 7, S - 1, S, S + 1, 3 * S, 10 * S):
        ct = encrypt(data, key, chunk=chunk)
        assert len(ct) == H + 3 * (S + TAG_SIZE)
        assert via_iter(ct, key) == data


def test_short_reads_and_real_files(key: bytes, tmp_path: os.PathLike[str]) -> None:
    data = os.urandom(4 * S + 3)
    ct = encrypt(data, key)
    assert b"".join(decrypt_stream(ShortReads(ct), key, dataset_id=DATASET)) == data
    assert bytes(decrypt_into_buffer(ShortReads(ct), key, dataset_id=DATASET)) == data
    path = os.path.join(tmp_path, "f.bin")
    with open(path, "wb") as fh:
        fh.write(ct)
    with open(path, "rb") as fh:
        assert bytes(decrypt_into_buffer(fh, key, dataset_id=DATASET)) == data


def test_pipe_source_is_not_mistaken_for_an_empty_file(key: bytes) -> None:
    """fstat() of a pipe says size 0; the buffer decoder must fall back to growing."""
    data = os.urandom(6 * S + 5)
    ct = encrypt(data, key)
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as w:
            w.write(ct)

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(read_fd, "rb") as r:
        got = decrypt_into_buffer(r, key, dataset_id=DATASET)
    writer.join()
    assert bytes(got) == data


def test_max_bytes_refuses_before_allocating(key: bytes) -> None:
    ct = encrypt(os.urandom(5 * S), key)
    assert len(decrypt_into_buffer(io.BytesIO(ct), key, dataset_id=DATASET, max_bytes=5 * S))
    with pytest.raises(VaultError, match="max_bytes"):
        decrypt_into_buffer(io.BytesIO(ct), key, dataset_id=DATASET, max_bytes=5 * S - 1)
    with pytest.raises(VaultError, match="max_bytes"):
        decrypt_into_buffer(ShortReads(ct), key, dataset_id=DATASET, max_bytes=2 * S)


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(max_size=700),
    segment_size=st.integers(min_value=16, max_value=96),
    cuts=st.lists(st.integers(min_value=0, max_value=700), max_size=8),
)
def test_property_round_trip(data: bytes, segment_size: int, cuts: list[int]) -> None:
    """Any split of any input into update() calls decrypts to the input, at the exact size."""
    key = generate_data_key()
    enc = StreamEncryptor(key, dataset_id=DATASET, segment_size=segment_size)
    out = []
    prev = 0
    for cut in sorted(c for c in cuts if c <= len(data)) + [len(data)]:
        out.append(enc.update(data[prev:cut]))
        prev = cut
    out.append(enc.finalize())
    ct = b"".join(out)
    assert len(ct) == ciphertext_length(len(data), dataset_id=DATASET, segment_size=segment_size)
    assert b"".join(decrypt_stream(io.BytesIO(ct), key, dataset_id=DATASET)) == data
    assert bytes(decrypt_into_buffer(io.BytesIO(ct), key, dataset_id=DATASET)) == data


def test_encryptor_misuse(key: bytes) -> None:
    enc = StreamEncryptor(key, dataset_id=DATASET, segment_size=S)
    enc.finalize()
    with pytest.raises(VaultError):
        enc.update(b"x")
    with pytest.raises(VaultError):
        enc.finalize()
    with pytest.raises(ValueError):
        StreamEncryptor(key, dataset_id=DATASET, segment_size=8)
    with pytest.raises(ValueError):
        StreamEncryptor(key, dataset_id="", segment_size=S)
    with pytest.raises(ValueError):
        StreamEncryptor(b"short", dataset_id=DATASET, segment_size=S)


def test_fresh_salt_and_nonce_prefix_per_file(key: bytes) -> None:
    a, b = encrypt(b"same", key), encrypt(b"same", key)
    assert a[:12] == b[:12] and a != b


# --- memory ---------------------------------------------------------------------------------


def test_memory_is_bounded_by_the_segment_size(key: bytes) -> None:
    """8 MiB through 64 KiB segments: neither direction holds more than a few segments."""
    seg, total, chunk = 64 * 1024, 8 * 1024 * 1024, 16 * 1024
    block = os.urandom(chunk)
    sink = io.BytesIO()

    tracemalloc.start()
    enc = StreamEncryptor(key, dataset_id=DATASET, segment_size=seg)
    for _ in range(total // chunk):
        out = enc.update(block)
        if out:
            sink.write(out)
            sink.seek(0)  # keep the sink small: overwrite instead of growing
    sink.write(enc.finalize())
    _, enc_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert enc_peak < 6 * seg, enc_peak

    ct = encrypt(os.urandom(total), key, segment_size=seg, chunk=1 << 20)
    tracemalloc.start()
    seen = 0
    for part in decrypt_stream(io.BytesIO(ct), key, dataset_id=DATASET):
        seen += len(part)
    _, dec_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seen == total
    assert dec_peak < 6 * seg, dec_peak


# --- tamper matrix --------------------------------------------------------------------------


@pytest.fixture
def sample(key: bytes) -> tuple[bytes, bytes]:
    """3 full segments and a partial one."""
    data = os.urandom(3 * S + 21)
    return data, encrypt(data, key)


def test_truncation_at_every_offset(key: bytes, sample: tuple[bytes, bytes]) -> None:
    """Every proper prefix is refused: inside the header, inside a segment, at each boundary."""
    _, ct = sample
    for cut in range(len(ct)):
        assert_rejected(ct[:cut], key, f"a prefix of {cut}/{len(ct)} bytes")


def test_truncation_exactly_at_segment_boundaries_names_the_cause(key: bytes) -> None:
    data = os.urandom(4 * S)  # exact multiple: the full last segment carries the flag
    ct = encrypt(data, key)
    step = S + TAG_SIZE
    for k in range(0, 4):
        cut = H + k * step
        with pytest.raises(IntegrityError, match="truncated|segment"):
            via_iter(ct[:cut], key)
        with pytest.raises(IntegrityError):
            via_buffer(ct[:cut], key)


def test_truncation_at_random_offsets_default_segment_size(key: bytes) -> None:
    data = os.urandom(2 * DEFAULT_SEGMENT_SIZE + 999)
    ct = encrypt(data, key, segment_size=DEFAULT_SEGMENT_SIZE)
    step = DEFAULT_SEGMENT_SIZE + TAG_SIZE
    rng = random.Random(1234)
    cuts = {H + step, H + 2 * step, len(ct) - 1, len(ct) - TAG_SIZE}
    cuts |= {rng.randrange(len(ct)) for _ in range(6)}
    for cut in sorted(cuts):
        assert_rejected(ct[:cut], key, f"a prefix of {cut} bytes")


REGIONS = ["header", "segment0", "segment1", "segment2", "last"]


@pytest.mark.parametrize("region", REGIONS)
def test_every_bit_flip_is_detected(region: str, key: bytes) -> None:
    """All bits of a 3-segment file (16-byte segments), one region per parameter."""
    seg = 16
    data = os.urandom(2 * seg + 8)
    ct = encrypt(data, key, segment_size=seg)
    step = seg + TAG_SIZE
    bounds = {
        "header": (0, H),
        "segment0": (H, H + step),
        "segment1": (H + step, H + 2 * step),
        "segment2": (H + 2 * step, len(ct)),
        "last": (len(ct) - TAG_SIZE, len(ct)),
    }
    lo, hi = bounds[region]
    assert hi > lo
    for pos in range(lo, hi):
        for bit in range(8):
            bad = bytearray(ct)
            bad[pos] ^= 1 << bit
            assert_rejected(bytes(bad), key, f"bit {bit} of byte {pos} flipped")


def _join(header: bytes, segs: list[bytes]) -> bytes:
    return header + b"".join(segs)


SEGMENT_EDITS: dict[str, Callable[[list[bytes]], list[bytes]]] = {
    "swap-0-1": lambda s: [s[1], s[0], *s[2:]],
    "swap-1-2": lambda s: [s[0], s[2], s[1], *s[3:]],
    "reverse": lambda s: s[::-1],
    "duplicate-first": lambda s: [s[0], *s],
    "duplicate-middle": lambda s: [*s[:2], s[1], *s[2:]],
    "duplicate-last": lambda s: [*s, s[-1]],
    "drop-first": lambda s: s[1:],
    "drop-middle": lambda s: [s[0], *s[2:]],
    "drop-last": lambda s: s[:-1],
    "append-copy-of-first": lambda s: [*s, s[0]],
    "append-random-segment": lambda s: [*s, os.urandom(S + TAG_SIZE)],
    "append-one-byte": lambda s: [*s, b"\x00"],
    "append-empty-tag": lambda s: [*s, bytes(TAG_SIZE)],
    "move-last-to-front": lambda s: [s[-1], *s[:-1]],
}


@pytest.mark.parametrize("edit", list(SEGMENT_EDITS))
def test_segment_reorder_duplicate_drop_append(
    edit: str, key: bytes, sample: tuple[bytes, bytes]
) -> None:
    _, ct = sample
    header, segs = segments(ct)
    assert len(segs) == 4
    assert_rejected(_join(header, SEGMENT_EDITS[edit](segs)), key, edit)


def _field_offsets() -> dict[str, tuple[int, int]]:
    n = len(DATASET)
    return {
        "magic": (0, 4),
        "version": (4, 5),
        "algorithm": (5, 6),
        "segment_size": (6, 10),
        "dataset_id_length": (10, 12),
        "dataset_id": (12, 12 + n),
        "salt": (12 + n, 44 + n),
        "nonce_prefix": (44 + n, 51 + n),
        "commitment": (51 + n, 83 + n),
    }


@pytest.mark.parametrize("field", list(_field_offsets()))
def test_header_edit_per_field(field: str, key: bytes, sample: tuple[bytes, bytes]) -> None:
    _, ct = sample
    lo, hi = _field_offsets()[field]
    bad = bytearray(ct)
    bad[lo] ^= 0x01  # minimal edit of the field's first byte
    assert_rejected(bytes(bad), key, f"edited {field}")
    bad = bytearray(ct)
    bad[hi - 1] ^= 0x80  # and of its last byte
    assert_rejected(bytes(bad), key, f"edited {field}")


@pytest.mark.parametrize("new_size", [16, 32, 65, 128, DEFAULT_SEGMENT_SIZE])
def test_segment_size_edited_to_other_valid_values(
    new_size: int, key: bytes, sample: tuple[bytes, bytes]
) -> None:
    _, ct = sample
    bad = ct[:6] + struct.pack(">I", new_size) + ct[10:]
    with pytest.raises(IntegrityError, match="commitment"):
        via_iter(bad, key)
    assert_rejected(bad, key, f"segment size {new_size}")


def test_relabelled_dataset_id_fails_even_when_reader_expects_the_new_id(key: bytes) -> None:
    """Moving a file to dataset 'ds-8' (same length id) changes the HKDF info."""
    ct = encrypt(b"rows", key)
    moved = ct.replace(DATASET.encode(), b"ds-8", 1)
    with pytest.raises(IntegrityError, match="commitment"):
        via_iter(moved, key, "ds-8")
    assert_rejected(moved, key, "relabelled file", dataset_id="ds-8")


def test_wrong_dataset_id(key: bytes, sample: tuple[bytes, bytes]) -> None:
    _, ct = sample
    for other in ("ds-8", "ds-77", "x"):
        with pytest.raises(IntegrityError, match="another dataset"):
            via_iter(ct, key, other)
        assert_rejected(ct, key, "wrong dataset id", dataset_id=other)


def test_wrong_key_is_caught_by_the_commitment(sample: tuple[bytes, bytes]) -> None:
    _, ct = sample
    other = generate_data_key()
    with pytest.raises(IntegrityError, match="commitment"):
        via_iter(ct, other)
    assert_rejected(ct, other, "wrong key")


def test_commitment_mismatch_is_refused_before_any_segment(key: bytes) -> None:
    ct = bytearray(encrypt(os.urandom(3 * S), key))
    ct[H - 1] ^= 1
    it: Iterator[bytes] = decrypt_stream(io.BytesIO(bytes(ct)), key, dataset_id=DATASET)
    with pytest.raises(IntegrityError, match="commitment"):
        next(it)


def test_cross_file_swaps(key: bytes) -> None:
    """Same key, same dataset, same size: headers and segments still do not mix."""
    a_data, b_data = os.urandom(3 * S), os.urandom(3 * S)
    a, b = encrypt(a_data, key), encrypt(b_data, key)
    a_head, a_segs = segments(a)
    b_head, b_segs = segments(b)
    assert_rejected(_join(a_head, b_segs), key, "header of A, body of B")
    assert_rejected(_join(a_head, [a_segs[0], b_segs[1], a_segs[2]]), key, "one segment of B")
    assert_rejected(_join(a_head, [*a_segs[:2], b_segs[2]]), key, "last segment of B")
    other_key_file = encrypt(a_data, generate_data_key())
    _, o_segs = segments(other_key_file)
    assert_rejected(_join(a_head, o_segs), key, "body under another key")
    assert via_iter(a, key) == a_data and via_iter(b, key) == b_data


def test_header_only_and_empty_files(key: bytes) -> None:
    ct = encrypt(b"", key)
    assert len(ct) == H + TAG_SIZE and via_iter(ct, key) == b""
    assert_rejected(ct[:H], key, "header without its (empty) last segment")
    assert_rejected(b"", key, "empty file")


def test_iterator_yields_only_authenticated_segments(key: bytes) -> None:
    data = os.urandom(3 * S)
    ct = bytearray(encrypt(data, key))
    ct[H + 2 * (S + TAG_SIZE) + 5] ^= 4  # corrupt segment 2
    got: list[bytes] = []
    with pytest.raises(IntegrityError, match="segment 2"):
        for part in decrypt_stream(io.BytesIO(bytes(ct)), key, dataset_id=DATASET):
            got.append(part)
    assert got == [data[:S], data[S : 2 * S]]
