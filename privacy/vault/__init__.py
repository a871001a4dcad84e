"""Envelope encryption for datasets: key hierarchy, streaming AEAD, rotation, crypto-shredding.

Key hierarchy
=============
::

    KEK  (X25519 key pair, version N, files in the key directory)
     |      public half: web tier + worker        private half: worker only (0600)
     |  HPKE Base: DHKEM(X25519, HKDF-SHA256) + HKDF-SHA256 + AES-256-GCM,
     |  info = label || KEK version || dataset id
     v
    data key  (32 random bytes, one per dataset, stored only wrapped: WrappedKey, 85 bytes)
     |  HKDF-SHA256(ikm = data key, salt = header salt, info = label || every header field)
     v
    segment key (one per file) + key commitment (in the header)
     |  AES-256-GCM, nonce = nonce prefix (7) || segment counter (4, BE) || last flag (1)
     v
    segments of `segment_size` plaintext bytes (1 MiB default), each + 16-byte tag

Ciphertext file layout (integers big-endian; L = dataset id length)
===================================================================

=========  ======  ================================================================
offset     bytes   field
=========  ======  ================================================================
0          4       magic ``PVLT``
4          1       format version (1)
5          1       algorithm (1 = AES-256-GCM segments, HKDF-SHA256 key derivation)
6          4       plaintext segment size S (16 .. 64 MiB)
10         2       L, dataset id length (1 .. 255)
12         L       dataset id, UTF-8
12+L       32      HKDF salt, random per file
44+L       7       nonce prefix, random per file
51+L       32      key commitment = HKDF(data key, salt, "commitment" || bytes 0 .. 51+L)
83+L       ...     segment 0 || segment 1 || ... || segment n-1
=========  ======  ================================================================

Segment i is ``AES-256-GCM(segment key, prefix || i || [i == n-1], M_i)``: ``S + 16`` bytes for
every segment but the last, ``16 .. S + 16`` for the last, which is empty only when the whole
plaintext is. Every header field feeds the segment key's HKDF ``info``, and the commitment is
checked before any segment, so header edits fail as "commitment mismatch".

Threat model
============
Protected:

- *Storage readers* (a copied disk, backup, bucket): see header metadata only (dataset id,
  segment size, and the exact plaintext length, which the file size reveals).
- *The web tier*, compromised or not: it holds public KEKs only (``Keyring.load(...,
  private=False)``), so it can encrypt new uploads but cannot unwrap any data key or read any
  stored file. It does see each upload's plaintext while it streams in; that is unavoidable.
  The one exception is the listing wizard's upload awaiting its owner's choices: the web tier
  re-reads it in memory only when the owner's page sends back the raw data key it was given
  (the server keeps only that key's SHA-256 and the worker-wrapped key), then forgets it.
- *Anyone who can edit files or rows*: any bit flip, truncation (including exactly at a segment
  boundary), reordering, duplication, dropping or appending of segments, header edit, body moved
  from another file, file moved to another dataset, or wrapped key moved to another dataset is
  refused with :class:`~privacy.errors.IntegrityError` before the affected plaintext is
  released. A wrong data key is caught by the commitment.

Not protected:

- The worker host: it holds the private KEKs, so its compromise exposes every dataset.
- Rollback of a whole file to an older ciphertext made with the *same* data key. The vault gives
  every upload a fresh data key, so the only ciphertext a wrapped key opens is the one it was
  made with; do not reuse data keys across uploads.
- Plaintext in process memory (Python copies buffers; wiping is best effort), side channels.

Crypto-shredding
================
To shred a dataset, delete its wrapped key (the application deletes the database column). The
ciphertext may stay: without the data key it is indistinguishable from random, and the KEKs
cannot help, because they only ever encrypted data keys, never data. One caveat: a database
*backup* that still holds the wrapped key can be opened as long as that KEK version's private
key exists. The shred is complete for backups after the next ``rotate`` -> ``rewrap`` ->
``min_version`` bump -> :func:`retire` cycle, which destroys the old private keys.

Rotation
========
:func:`rotate` adds KEK version N+1 (private file first, so a visible public key always has its
private half); ``Keyring.rewrap`` re-seals each data key under the newest version without
reading or writing ciphertext, and is a no-op for keys already there, so an interrupted
rotation job is simply run again. Old KEK files stay until the operator raises ``min_version``
(keys under older versions are then refused) and calls :func:`retire`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import BinaryIO

from privacy.vault.keyring import (
    DATA_KEY_SIZE,
    Keyring,
    WrappedKey,
    generate_data_key,
    init_keydir,
    retire,
    rotate,
)
from privacy.vault.stream import (
    DEFAULT_SEGMENT_SIZE,
    MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
    StreamEncryptor,
    ciphertext_length,
    decrypt_into_buffer,
    decrypt_stream,
    plaintext_length,
    wipe,
)

__all__ = [
    "DATA_KEY_SIZE",
    "DEFAULT_SEGMENT_SIZE",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "Keyring",
    "StreamEncryptor",
    "Vault",
    "WrappedKey",
    "ciphertext_length",
    "decrypt_into_buffer",
    "decrypt_stream",
    "generate_data_key",
    "init_keydir",
    "plaintext_length",
    "retire",
    "rotate",
    "wipe",
]

_Source = BinaryIO | str | os.PathLike[str]


class Vault:
    """The one entry point the application uses: encrypt uploads, decrypt for training.

    Construct it with the keyring the process is allowed to hold: public-only in the web tier,
    private in the worker. All methods take the dataset id as a keyword, and every result is
    bound to it.
    """

    def __init__(self, keyring: Keyring, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
            raise ValueError(
                f"segment_size must be between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE} bytes"
            )
        self._keyring = keyring
        self._segment_size = segment_size

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    @property
    def segment_size(self) -> int:
        return self._segment_size

    # -- encryption (web tier) -----------------------------------------------------------------

    def encryptor(self, *, dataset_id: str) -> tuple[StreamEncryptor, WrappedKey]:
        """A fresh data key, wrapped to the newest KEK, and an encryptor using it.

        Store the :class:`WrappedKey` with the dataset's row in the same transaction that makes
        the ciphertext visible. The data key itself is dropped here: the encryptor keeps only
        the derived per-file key.
        """
        data_key = generate_data_key()
        wrapped = self._keyring.wrap(data_key, dataset_id=dataset_id)
        encryptor = StreamEncryptor(
            data_key, dataset_id=dataset_id, segment_size=self._segment_size
        )
        del data_key
        return encryptor, wrapped

    def encrypt_stream(
        self, src: BinaryIO, dst: BinaryIO, *, dataset_id: str, chunk_size: int = 1 << 16
    ) -> WrappedKey:
        """Encrypt ``src`` into ``dst`` chunk by chunk; memory stays ~ one segment."""
        encryptor, wrapped = self.encryptor(dataset_id=dataset_id)
        while chunk := src.read(chunk_size):
            dst.write(encryptor.update(chunk))
        dst.write(encryptor.finalize())
        return wrapped

    def encrypt_bytes(self, data: bytes, *, dataset_id: str) -> tuple[bytes, WrappedKey]:
        """Encrypt an in-memory value (tests, small artefacts)."""
        encryptor, wrapped = self.encryptor(dataset_id=dataset_id)
        return encryptor.update(data) + encryptor.finalize(), wrapped

    # -- decryption (worker) -------------------------------------------------------------------

    def decrypt_iter(
        self, src: _Source, *, dataset_id: str, wrapped: WrappedKey
    ) -> Iterator[bytes]:
        """Yield authenticated plaintext segments, memory bounded by one segment.

        Key problems (public-only keyring, retired version, wrong dataset binding) raise here,
        at the call; integrity problems of the file raise while iterating, and the file is
        known complete only when the iterator ends without raising (see :func:`decrypt_stream`).
        """
        data_key = self._keyring.unwrap(wrapped, dataset_id=dataset_id)
        return self._iter(src, data_key, dataset_id)

    @staticmethod
    def _iter(src: _Source, data_key: bytes, dataset_id: str) -> Iterator[bytes]:
        if isinstance(src, str | os.PathLike):
            with open(src, "rb") as fh:
                yield from decrypt_stream(fh, data_key, dataset_id=dataset_id)
        else:
            yield from decrypt_stream(src, data_key, dataset_id=dataset_id)

    def decrypt_to_buffer(
        self,
        src: _Source,
        *,
        dataset_id: str,
        wrapped: WrappedKey,
        max_bytes: int | None = None,
    ) -> bytearray:
        """The whole plaintext in one ``bytearray`` (peak ~ plaintext + one segment).

        Fully authenticated before it returns; wipe it with :func:`wipe` when done.
        ``max_bytes`` bounds what a (tampered, oversized) file can make the worker allocate.
        """
        data_key = self._keyring.unwrap(wrapped, dataset_id=dataset_id)
        if isinstance(src, str | os.PathLike):
            with open(src, "rb") as fh:
                return decrypt_into_buffer(fh, data_key, dataset_id=dataset_id, max_bytes=max_bytes)
        return decrypt_into_buffer(src, data_key, dataset_id=dataset_id, max_bytes=max_bytes)

    def decrypt_bytes(
        self,
        src: _Source,
        *,
        dataset_id: str,
        wrapped: WrappedKey,
        max_bytes: int | None = None,
    ) -> bytes:
        """The whole plaintext as ``bytes`` (briefly 2x the plaintext in memory)."""
        buffer = self.decrypt_to_buffer(
            src, dataset_id=dataset_id, wrapped=wrapped, max_bytes=max_bytes
        )
        try:
            return bytes(buffer)
        finally:
            wipe(buffer)

    def open_plaintext(
        self,
        src: _Source,
        *,
        dataset_id: str,
        wrapped: WrappedKey,
        max_bytes: int | None = None,
    ) -> io.BytesIO:
        """A seekable in-memory file of the plaintext, for pandas/pyarrow/numpy readers.

        Built from :meth:`decrypt_bytes` (``BytesIO`` shares an immutable ``bytes`` without a
        copy), so the steady state is one copy of the plaintext. Nothing touches disk.
        """
        plaintext = self.decrypt_bytes(
            src, dataset_id=dataset_id, wrapped=wrapped, max_bytes=max_bytes
        )
        return io.BytesIO(plaintext)

    # -- rotation ------------------------------------------------------------------------------

    def rewrap(self, wrapped: WrappedKey, *, dataset_id: str) -> WrappedKey:
        """Re-seal a data key under the newest KEK (idempotent); see :meth:`Keyring.rewrap`."""
        return self._keyring.rewrap(wrapped, dataset_id=dataset_id)
