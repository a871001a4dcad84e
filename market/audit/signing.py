"""Checkpoint notes and their Ed25519 signatures (in the spirit of C2SP signed-note).

A checkpoint commits the service to one prefix of the log. The signed text is the
C2SP ``tlog-checkpoint`` body, three lines each ending in a newline::

    localhost/market/audit              <- origin: names this log, so a signature for
    1042                                   one log can never be replayed for another
    2Zr0cVg3xR...base64 of 32 bytes...= <- the RFC 6962 root of the first 1042 entries

and rendered as a signed note with a blank line and one signature line::

    <the three lines above>
    <empty line>
    — localhost/market/audit <base64(key_id[4] || signature[64])>

``key_id`` is the first 4 bytes of SHA-256(origin || "\\n" || 0x01 || public key), the
signed-note key hint (0x01: Ed25519), which lets a verifier holding several keys pick one.

The signing key is *not* a data key: it lives in its own file (``audit.signing_key_file``,
default ``<home>/audit/signing.key``, mode 0600), so a worker that decrypts datasets never
needs it and rotating the vault's keys never changes what auditors verify against. Its
public half is written beside it as ``signing.pub`` (PEM) for anyone to download.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from market.config import Settings
from market.errors import ConfigurationError

_EM_DASH = "\u2014"


def note_text(origin: str, tree_size: int, root: bytes) -> str:
    """The signed body: ``origin\\ntree_size\\nroot_b64\\n``."""
    if not origin or "\n" in origin:
        raise ValueError("a checkpoint origin is one non-empty line")
    return f"{origin}\n{tree_size}\n{base64.b64encode(root).decode()}\n"


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(origin: str, public_key: Ed25519PublicKey) -> bytes:
    """The signed-note key hint: 4 bytes naming (origin, key)."""
    digest = hashlib.sha256(origin.encode() + b"\n\x01" + raw_public_key(public_key)).digest()
    return digest[:4]


def sign_note(private_key: Ed25519PrivateKey, text: str) -> bytes:
    return private_key.sign(text.encode("utf-8"))


def verify_note(public_key: Ed25519PublicKey, text: str, signature: bytes) -> bool:
    try:
        public_key.verify(signature, text.encode("utf-8"))
    except InvalidSignature:
        return False
    return True


def render_signed_note(text: str, origin: str, key_hint: bytes, signature: bytes) -> str:
    """The note as a C2SP signed note (what an auditor keeps as their old checkpoint)."""
    blob = base64.b64encode(key_hint + signature).decode()
    return f"{text}\n{_EM_DASH} {origin} {blob}\n"


@dataclass(frozen=True)
class ParsedNote:
    origin: str
    tree_size: int
    root: bytes
    key_hint: bytes
    signature: bytes


def parse_signed_note(note: str) -> ParsedNote:
    """Read a signed note written by ``render_signed_note``; ValueError if it is malformed."""
    body, sep, signatures = note.partition("\n\n")
    if not sep:
        raise ValueError("a signed note has its text, an empty line, then signature lines")
    lines = body.split("\n")
    if len(lines) < 3:
        raise ValueError("a checkpoint note has origin, tree size and root lines")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit():
        raise ValueError("the checkpoint's tree size is not a decimal number")
    root = base64.b64decode(root_text, validate=True)
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and parts[0] == _EM_DASH and parts[1] == origin:
            blob = base64.b64decode(parts[2], validate=True)
            if len(blob) != 4 + 64:
                raise ValueError("an Ed25519 note signature is 4 + 64 bytes")
            return ParsedNote(origin, int(size_text), root, blob[:4], blob[4:])
    raise ValueError(f"no signature line by {origin!r} in the note")


def load_public_key(pem: bytes | str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; ValueError for anything else."""
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the audit public key must be an Ed25519 key")
    return key


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def signing_key_path(settings: Settings) -> Path:
    if settings.audit.signing_key_file:
        return Path(settings.audit.signing_key_file).expanduser().resolve()
    return settings.home / "audit" / "signing.key"


def public_key_path(settings: Settings) -> Path:
    return signing_key_path(settings).with_suffix(".pub")


def ensure_signing_key(settings: Settings) -> Path:
    """Create the log's signing key if absent (safe to call twice, and concurrently).

    The private key is created with mode 0600, so it is never readable by others, not even
    for an instant; the public key is (re)written from it.
    """
    path = signing_key_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Write a private temporary file, then link it into place: link() fails if the
        # key exists, so two processes racing here both end up using the same, whole key.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            tmp.unlink()
    public = public_key_path(settings)
    pem_text = public_key_pem(load_signing_key(settings).public_key())
    if not public.exists() or public.read_text() != pem_text:
        public.write_text(pem_text)
    return path


def load_signing_key(settings: Settings) -> Ed25519PrivateKey:
    path = signing_key_path(settings)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"no audit signing key at {path}: run `market init` to create it"
        ) from exc
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{path} is not an Ed25519 private key")
    return key
