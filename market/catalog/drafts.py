"""The wizard's one upload: encrypted when it arrives, re-opened with a key only the owner holds.

The web tier holds only the public half of the key-encryption key, so it cannot read back a
file it stored. The wizard still needs to check the file against the description the owner
chooses after seeing its profile, without asking for the file twice. So, at the wizard's
first step:

- the file streams into ``<storage>/drafts/<id>-<random>.pvlt`` (``.partial`` until whole,
  0600), encrypted with a fresh data key bound to the future dataset id; no plaintext is
  written anywhere (the form is read with ``StreamingForm``, never spooled);
- the data key is wrapped to the workers' KEK as for any upload, and its raw bytes go back to
  the owner's browser only, in the wizard page (``Cache-Control: no-store``);
- the server keeps a small record next to the ciphertext (``<id>.json``): owner, format, file
  name, the wrapped key and the SHA-256 of the raw key. Never the raw key.

At the listing step the browser sends the key back; its hash is compared, the ciphertext is
decrypted in memory and checked against the chosen description by the upload validator, and
the file moves out of ``drafts/`` to be listed. The key is then forgotten. Whatever is left
in ``drafts/`` after ``DRAFT_TTL_S`` (an abandoned wizard) is reaped by ``reap_drafts``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from market.accounts.models import User
from market.catalog.storage import FILE_SUFFIX, PARTIAL_SUFFIX
from market.errors import MarketError, PayloadTooLarge
from market.services import Services
from privacy.errors import IntegrityError, VaultError
from privacy.vault import StreamEncryptor, decrypt_stream, generate_data_key

#: How long a wizard's upload waits for its listing step before it is reaped.
DRAFT_TTL_S = 2 * 3600
DRAFTS_FOLDER = "drafts"
_ID = re.compile(r"^[0-9a-f]{32}$")


class DraftProblem(MarketError):
    """The wizard's upload cannot be used: expired, not this owner's, or the key is wrong.

    ``field`` names the form field to point at; the message is shown to the owner."""

    status = 422
    code = "draft_unusable"

    def __init__(self, message: str, *, field: str = "file") -> None:
        super().__init__(message, details={"field": field})


@dataclass(frozen=True)
class StagedUpload:
    """The server's record of a wizard upload (no key: only the key's SHA-256)."""

    id: str
    owner_id: int
    format: str
    filename: str
    storage_name: str
    wrapped_key: str  # base64 of WrappedKey.to_bytes(), for the workers
    key_version: int
    key_sha256: str
    plaintext_bytes: int
    ciphertext_bytes: int
    created: float


def drafts_dir(market: Services) -> Path:
    return market.store.path(DRAFTS_FOLDER)


def encode_key(data_key: bytes) -> str:
    return base64.urlsafe_b64encode(data_key).decode("ascii").rstrip("=")


def decode_key(text: str) -> bytes | None:
    text = text.strip()
    if not text or len(text) > 64:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _key_hash(data_key: bytes) -> str:
    return hashlib.sha256(b"market wizard draft key\x00" + data_key).hexdigest()


def _record_path(folder: Path, draft_id: str) -> Path:
    return folder / f"{draft_id}.json"


def stage_upload(
    market: Services,
    *,
    owner: User,
    filename: str,
    chunks: Iterator[bytes],
    keep_bytes: int,
) -> tuple[StagedUpload, str, bytes]:
    """Encrypt ``chunks`` into the drafts folder; return the record, the owner's key (text)
    and the first ``keep_bytes`` of plaintext (for the profile, in memory only).

    On any error nothing remains: the partial file is removed and no record is written."""
    folder = drafts_dir(market)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    draft_id = uuid.uuid4().hex
    name = f"{draft_id}-{secrets.token_hex(8)}{FILE_SUFFIX}"
    partial = folder / (name + PARTIAL_SUFFIX)
    data_key = generate_data_key()
    wrapped = market.vault.keyring.wrap(data_key, dataset_id=draft_id)
    encryptor = StreamEncryptor(
        data_key, dataset_id=draft_id, segment_size=market.vault.segment_size
    )
    key_text, key_hash = encode_key(data_key), _key_hash(data_key)
    del data_key
    head = bytearray()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(encryptor.update(chunk))
                if len(head) < keep_bytes:
                    head.extend(chunk[: keep_bytes - len(head)])
            out.write(encryptor.finalize())
            out.flush()
            os.fsync(out.fileno())
        if encryptor.plaintext_bytes == 0:
            raise DraftProblem("The file is empty.")
        final = folder / name
        os.replace(partial, final)
        staged = StagedUpload(
            id=draft_id,
            owner_id=int(owner.id or 0),
            format="",
            filename=filename[-200:],
            storage_name=name,
            wrapped_key=base64.b64encode(wrapped.to_bytes()).decode("ascii"),
            key_version=wrapped.version,
            key_sha256=key_hash,
            plaintext_bytes=encryptor.plaintext_bytes,
            ciphertext_bytes=final.stat().st_size,
            created=time.time(),
        )
        return staged, key_text, bytes(head)
    except BaseException:
        partial.unlink(missing_ok=True)
        (folder / name).unlink(missing_ok=True)
        raise
    finally:
        head.clear()


def save_record(market: Services, staged: StagedUpload) -> None:
    """Write the record (atomically): from now on the listing step can find the upload."""
    folder = drafts_dir(market)
    path = _record_path(folder, staged.id)
    temporary = folder / f"{staged.id}.json{PARTIAL_SUFFIX}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(staged), out)
    os.replace(temporary, path)


def discard(market: Services, staged: StagedUpload) -> None:
    """Remove a wizard upload and its record (refused, listed elsewhere, or expired)."""
    folder = drafts_dir(market)
    (folder / staged.storage_name).unlink(missing_ok=True)
    _record_path(folder, staged.id).unlink(missing_ok=True)


def open_staged(
    market: Services, *, owner: User, draft_id: str, key_text: str
) -> tuple[StagedUpload, bytes]:
    """The owner's upload and its data key, once the key the browser sent matches.

    Every problem is a ``DraftProblem`` worded for the owner (never a 500)."""
    gone = DraftProblem(
        "Your uploaded file is no longer here (it waits at most "
        f"{DRAFT_TTL_S // 3600} hours, or it was listed already): choose it again in step 1."
    )
    if not _ID.match(draft_id or ""):
        raise gone
    folder = drafts_dir(market)
    try:
        raw = json.loads(_record_path(folder, draft_id).read_text())
        staged = StagedUpload(**raw)
    except (OSError, ValueError, TypeError):
        raise gone from None
    if staged.owner_id != owner.id:
        raise gone
    if time.time() - staged.created > DRAFT_TTL_S or not (folder / staged.storage_name).exists():
        discard(market, staged)
        raise gone
    if not key_text.strip():
        raise DraftProblem(
            "The page lost the key of your uploaded file (it is kept in the page only): "
            "choose the file again in step 1.",
        )
    data_key = decode_key(key_text)
    if data_key is None or not hmac.compare_digest(_key_hash(data_key), staged.key_sha256):
        raise DraftProblem(
            "The key of your uploaded file does not match it, so it cannot be read: "
            "choose the file again in step 1.",
        )
    return staged, data_key


def plaintext(market: Services, staged: StagedUpload, data_key: bytes) -> Generator[bytes]:
    """The upload's plaintext, decrypted segment by segment in memory (authenticated)."""
    path = drafts_dir(market) / staged.storage_name
    try:
        with open(path, "rb") as source:
            yield from decrypt_stream(source, data_key, dataset_id=staged.id)
    except FileNotFoundError:
        raise DraftProblem(
            "Your uploaded file was listed or removed meanwhile: choose it again in step 1."
        ) from None
    except (IntegrityError, VaultError):
        raise DraftProblem(
            "Your uploaded file could not be decrypted with the key of this page: "
            "choose it again in step 1."
        ) from None


def head(market: Services, staged: StagedUpload, data_key: bytes, *, max_bytes: int) -> bytes:
    """The first ``max_bytes`` of the plaintext (the profile shown again on a form error)."""
    out = bytearray()
    stream = plaintext(market, staged, data_key)
    try:
        for segment in stream:
            out.extend(segment[: max_bytes - len(out)])
            if len(out) >= max_bytes:
                break
    finally:
        stream.close()
    try:
        return bytes(out)
    finally:
        out.clear()


def too_large_to_profile(staged: StagedUpload, cap: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Parquet and NPZ files are read in memory, up to {cap:,} bytes; this one has "
        f"{staged.plaintext_bytes:,}. Split it, or send CSV, which streams.",
        details={"field": "file", "max_bytes": cap},
    )


@contextlib.contextmanager
def moved_for_listing(market: Services, staged: StagedUpload) -> Iterator[str]:
    """Move the ciphertext from ``drafts/`` to the store under its final name for the
    caller's listing transaction; if that fails, move it back (the owner can try again)."""
    source = drafts_dir(market) / staged.storage_name
    target = market.store.path(staged.storage_name)
    try:
        os.replace(source, target)
    except FileNotFoundError:
        raise DraftProblem(
            "Your uploaded file was listed or removed meanwhile: choose it again in step 1."
        ) from None
    try:
        yield staged.storage_name
    except BaseException:
        with contextlib.suppress(OSError):
            os.replace(target, source)
        raise
    _record_path(drafts_dir(market), staged.id).unlink(missing_ok=True)


def reap_drafts(market: Services, *, older_than_s: float = DRAFT_TTL_S) -> list[str]:
    """Remove what abandoned wizards left in ``drafts/`` (ciphertext, records, partials)
    untouched for ``older_than_s``; return the names removed."""
    folder = drafts_dir(market)
    if not folder.exists():
        return []
    cutoff = time.time() - older_than_s
    removed = []
    for entry in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                entry.unlink(missing_ok=True)
                removed.append(entry.name)
    return removed
