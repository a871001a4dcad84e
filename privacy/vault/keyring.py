"""Key-encryption keys (KEKs) on disk, and wrapping data keys to them.

A KEK is an X25519 key pair with an integer version. The key directory holds, per version::

    kek-v<N>.key   PKCS#8 PEM private key, mode 0600 (only the worker reads it)
    kek-v<N>.pub   SubjectPublicKeyInfo PEM public key, mode 0644
    .lock          flock(2) target that serialises rotate/retire between processes

A data key is wrapped with HPKE (RFC 9180) Base mode, suite DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, AES-256-GCM, as implemented by ``cryptography.hazmat.primitives.hpke``. That is
exactly "ephemeral X25519 + HKDF-SHA256 + AES-256-GCM", but standardised and with test vectors,
so we do not hand-roll the KEM. HPKE's single-shot API binds context through ``info`` (RFC 9180
section 8.1), and ``info`` here carries the KEK version and the dataset id: a wrapped key copied
to another dataset's row, or relabelled with another version, does not open.

Why files are written private-key first: the web tier wraps every new data key to the newest
``.pub`` it sees. If a rotation wrote the public half first and crashed, uploads could be wrapped
to a key whose private half never existed, and those datasets would be lost. Writing ``.key``
first means a visible ``.pub`` always has its private half on disk; an interrupted rotation
leaves a lone ``.key`` that the next :func:`rotate` completes instead of minting another version.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import secrets
import stat
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from privacy.errors import (
    IntegrityError,
    KeyFilePermissionError,
    KeyNotFound,
    KeyringError,
    KeyVersionRetired,
    PrivateKeyUnavailable,
)

__all__ = [
    "DATA_KEY_SIZE",
    "Keyring",
    "WrappedKey",
    "generate_data_key",
    "init_keydir",
    "retire",
    "rotate",
]

DATA_KEY_SIZE = 32
"""Bytes in a data key (AES-256 strength input to the per-file HKDF)."""

_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
_WRAP_ALG = 1  # HPKE base, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM
_WRAP_ALG_NAME = "hpke-x25519-sha256-aes256gcm"
_SEALED_LEN = 32 + DATA_KEY_SIZE + 16  # enc (X25519 public) || AES-GCM ciphertext || tag
_WRAPPED_HEAD = struct.Struct(">BI")  # algorithm id, KEK version
_WRAP_INFO_LABEL = b"privacy.vault wrap v1\x00"
_MAX_DATASET_ID = 255
_KEY_FILE = re.compile(r"^kek-v([1-9][0-9]{0,8})\.(pub|key)$")


def generate_data_key() -> bytes:
    """A fresh random 256-bit data key, from the OS CSPRNG."""
    return secrets.token_bytes(DATA_KEY_SIZE)


def encode_dataset_id(dataset_id: str) -> bytes:
    """UTF-8 bytes of a dataset id, refusing ids that cannot be framed unambiguously."""
    if not isinstance(dataset_id, str):
        raise TypeError(f"dataset_id must be str, not {type(dataset_id).__name__}")
    raw = dataset_id.encode("utf-8")
    if not 1 <= len(raw) <= _MAX_DATASET_ID:
        raise ValueError(f"dataset_id must be 1..{_MAX_DATASET_ID} UTF-8 bytes")
    return raw


def _wrap_info(version: int, dataset_id: str) -> bytes:
    raw = encode_dataset_id(dataset_id)
    return _WRAP_INFO_LABEL + struct.pack(">IH", version, len(raw)) + raw


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key sealed to one KEK version; safe to store next to the ciphertext's row.

    It is not secret (only the worker's private KEK opens it), but it is the only path to the
    data: deleting every copy of it is crypto-shredding.
    """

    version: int
    sealed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.version <= 0xFFFFFFFF:
            raise ValueError("KEK version out of range")
        if len(self.sealed) != _SEALED_LEN:
            raise ValueError(f"sealed data key must be {_SEALED_LEN} bytes")

    def to_bytes(self) -> bytes:
        """85 bytes for a BLOB/bytea column: alg (1) || KEK version (4, BE) || enc || ct."""
        return _WRAPPED_HEAD.pack(_WRAP_ALG, self.version) + self.sealed

    @classmethod
    def from_bytes(cls, raw: bytes) -> WrappedKey:
        raw = bytes(raw)
        if len(raw) != _WRAPPED_HEAD.size + _SEALED_LEN:
            raise IntegrityError("wrapped key has the wrong length")
        alg, version = _WRAPPED_HEAD.unpack_from(raw)
        if alg != _WRAP_ALG:
            raise IntegrityError(f"unknown wrapped key algorithm {alg}")
        try:
            return cls(version=version, sealed=raw[_WRAPPED_HEAD.size :])
        except ValueError as exc:
            raise IntegrityError(str(exc)) from None

    def to_dict(self) -> dict[str, str | int]:
        """A JSON-able form: ``{"alg": ..., "kek": version, "sealed": base64url}``."""
        return {
            "alg": _WRAP_ALG_NAME,
            "kek": self.version,
            "sealed": base64.urlsafe_b64encode(self.sealed).decode("ascii").rstrip("="),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> WrappedKey:
        try:
            alg, version, sealed = data["alg"], data["kek"], data["sealed"]
            if alg != _WRAP_ALG_NAME or not isinstance(version, int) or isinstance(version, bool):
                raise ValueError("unknown algorithm or bad version")
            if not isinstance(sealed, str):
                raise ValueError("sealed must be base64url text")
            blob = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
            return cls(version=version, sealed=blob)
        except (KeyError, ValueError, TypeError) as exc:
            raise IntegrityError(f"malformed wrapped key: {exc}") from None

    def to_str(self) -> str:
        """base64url of :meth:`to_bytes`, for text columns and logs of key *ids* (not secret)."""
        return base64.urlsafe_b64encode(self.to_bytes()).decode("ascii").rstrip("=")

    @classmethod
    def from_str(cls, text: str) -> WrappedKey:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except ValueError as exc:
            raise IntegrityError(f"malformed wrapped key: {exc}") from None
        return cls.from_bytes(raw)


# ---------------------------------------------------------------------------------------------
# Key directory


def _scan(keydir: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """Public and private key files by version. Temp files and strangers are ignored."""
    publics: dict[int, Path] = {}
    privates: dict[int, Path] = {}
    try:
        names = os.listdir(keydir)
    except FileNotFoundError:
        raise KeyNotFound(f"key directory {keydir} does not exist (run `market init`)") from None
    for name in names:
        match = _KEY_FILE.match(name)
        if match:
            target = publics if match.group(2) == "pub" else privates
            target[int(match.group(1))] = keydir / name
    return publics, privates


def _check_dir(keydir: Path) -> os.stat_result:
    try:
        st = os.stat(keydir)
    except FileNotFoundError:
        raise KeyNotFound(f"key directory {keydir} does not exist (run `market init`)") from None
    if not stat.S_ISDIR(st.st_mode):
        raise KeyringError(f"{keydir} is not a directory")
    if st.st_mode & 0o022:
        # Anyone who can add files here can plant a public key the web tier would wrap to.
        raise KeyringError(f"key directory {keydir} is writable by group or others")
    return st


def _fsync_dir(keydir: Path) -> None:
    fd = os.open(keydir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with exactly ``mode``, never visible half-written or with wider rights.

    The temp file is created by ``os.open`` with the final mode (so a private key is never
    readable by others, not even for a moment, whatever the umask), fsynced, then renamed.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits we want (0644 public files)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    if path.exists():
        os.unlink(tmp)
        raise KeyringError(f"{path.name} already exists; refusing to overwrite a key")
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(keydir: Path) -> Iterator[None]:
    """Serialise rotate/retire across processes (the dir lock is advisory, like every flock)."""
    fd = os.open(keydir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _public_pem(public: X25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _read_private(path: Path) -> X25519PrivateKey:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)  # fstat the opened file: no window to swap it after the check
        if st.st_mode & 0o077:
            raise KeyFilePermissionError(
                f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; private keys must be 0600"
            )
        with os.fdopen(os.dup(fd), "rb") as fh:
            pem = fh.read()
    finally:
        os.close(fd)
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyringError(f"{path.name} is not a readable private key: {exc}") from None
    if not isinstance(key, X25519PrivateKey):
        raise KeyringError(f"{path.name} is not an X25519 private key")
    return key


def _read_public(path: Path) -> X25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, TypeError) as exc:
        raise KeyringError(f"{path.name} is not a readable public key: {exc}") from None
    if not isinstance(key, X25519PublicKey):
        raise KeyringError(f"{path.name} is not an X25519 public key")
    return key


def rotate(keydir: str | os.PathLike[str]) -> int:
    """Create the next KEK version and return it; complete an interrupted rotation instead.

    Old versions stay on disk (so keys wrapped under them still open) until :func:`retire`.
    Needs the private key directory: a public-only copy (the web tier's) cannot rotate.
    """
    path = Path(keydir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_dir(path)
    with _locked(path):
        publics, privates = _scan(path)
        if publics and not privates:
            raise KeyringError(f"{path} holds public keys only; rotate where the private keys are")
        orphans = sorted(set(privates) - set(publics))
        for version in orphans:  # a previous rotate died between the two renames
            _write_atomic(
                _public_path(path, version),
                _public_pem(_read_private(privates[version]).public_key()),
                0o644,
            )
        if orphans:
            _fsync_dir(path)
            return max(orphans + list(publics))
        version = max([0, *publics, *privates]) + 1
        private = X25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_atomic(path / f"kek-v{version}.key", pem, 0o600)
        _fsync_dir(path)
        _write_atomic(_public_path(path, version), _public_pem(private.public_key()), 0o644)
        _fsync_dir(path)
        return version


def _public_path(keydir: Path, version: int) -> Path:
    return keydir / f"kek-v{version}.pub"


def init_keydir(keydir: str | os.PathLike[str]) -> int:
    """Make sure a KEK exists (``market init``); idempotent. Returns the newest version."""
    path = Path(keydir)
    if path.is_dir():
        publics, privates = _scan(path)
        if publics and set(privates) <= set(publics):
            return max(publics)
    return rotate(path)


def retire(keydir: str | os.PathLike[str], *, below: int) -> list[Path]:
    """Delete the key files of every version older than ``below``; returns what was removed.

    Run it only after every wrapped key was re-wrapped (``rewrap``) and ``min_version`` was
    raised to ``below``: wrapped keys still under a removed version become unrecoverable,
    which is also how old backups of the database are crypto-shredded.
    """
    path = Path(keydir)
    with _locked(path):
        publics, privates = _scan(path)
        if not publics or max(publics) < below:
            raise KeyringError(f"retiring below v{below} would leave no usable KEK")
        removed: list[Path] = []
        for version in sorted(set(publics) | set(privates)):
            if version < below:
                for victim in (privates.get(version), publics.get(version)):
                    if victim is not None:
                        victim.unlink()
                        removed.append(victim)
        _fsync_dir(path)
        return removed


# ---------------------------------------------------------------------------------------------
# Keyring


@dataclass(frozen=True, slots=True)
class _State:
    stamp: tuple[int, frozenset[int], frozenset[int]]
    publics: dict[int, X25519PublicKey]
    privates: dict[int, X25519PrivateKey]


class Keyring:
    """The KEKs one process may use. Load with ``private=False`` in the web tier.

    A public-only keyring never opens a ``.key`` file and holds no private key object, so
    :meth:`unwrap` there raises :class:`PrivateKeyUnavailable` whatever the caller does: the
    web process can encrypt uploads but cannot decrypt stored data.

    The keyring rescans the directory when it changes (one ``stat`` per wrap, and on an unknown
    version at unwrap), so a rotation is picked up by running processes without a restart.
    Instances are safe to share between threads.
    """

    def __init__(self, keydir: Path, *, private: bool, min_version: int) -> None:
        if min_version < 1:
            raise ValueError("min_version starts at 1")
        self._keydir = keydir
        self._private = private
        self._min_version = min_version
        self._lock = threading.Lock()
        self._state = self._load()

    @classmethod
    def load(
        cls, keydir: str | os.PathLike[str], *, private: bool = False, min_version: int = 1
    ) -> Keyring:
        """Load the KEKs in ``keydir``; ``private=True`` only in the worker."""
        return cls(Path(keydir), private=private, min_version=min_version)

    # -- state ---------------------------------------------------------------------------------

    def _stamp(
        self,
    ) -> tuple[tuple[int, frozenset[int], frozenset[int]], dict[int, Path], dict[int, Path]]:
        # Which versions exist, not the directory's mtime: mtime has a coarse clock tick on
        # many kernels, and a rotation inside one tick would go unnoticed (and a rewrap pass
        # would then "find nothing to do"). A listdir of a handful of names is cheap.
        st = _check_dir(self._keydir)
        publics, privates = _scan(self._keydir)
        return (st.st_ino, frozenset(publics), frozenset(privates)), publics, privates

    def _load(self) -> _State:
        stamp, pub_paths, priv_paths = self._stamp()
        wanted = [v for v in pub_paths if v >= self._min_version]
        if not wanted:
            raise KeyNotFound(
                f"no key-encryption key of version >= {self._min_version} in {self._keydir}"
            )
        publics = {v: _read_public(pub_paths[v]) for v in wanted}
        privates: dict[int, X25519PrivateKey] = {}
        if self._private:
            for version in wanted:
                if version not in priv_paths:
                    continue
                key = _read_private(priv_paths[version])
                if _public_pem(key.public_key()) != _public_pem(publics[version]):
                    raise KeyringError(f"kek-v{version}.pub does not match kek-v{version}.key")
                privates[version] = key
            newest = max(wanted)
            if newest not in privates:
                # Uploads are wrapped to the newest public key; a worker that cannot open them
                # is a misconfiguration to stop at start-up, not at the first training run.
                raise KeyNotFound(f"private key for the newest KEK v{newest} is missing")
        return _State(stamp=stamp, publics=publics, privates=privates)

    def refresh(self, *, force: bool = False) -> None:
        """Rescan the key directory if it changed since the last load."""
        with self._lock:
            if force or self._stamp()[0] != self._state.stamp:
                self._state = self._load()

    # -- properties ----------------------------------------------------------------------------

    @property
    def keydir(self) -> Path:
        return self._keydir

    @property
    def can_unwrap(self) -> bool:
        return self._private

    @property
    def min_version(self) -> int:
        return self._min_version

    @property
    def current_version(self) -> int:
        return max(self._state.publics)

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(sorted(self._state.publics))

    # -- operations ----------------------------------------------------------------------------

    def wrap(self, data_key: bytes, *, dataset_id: str) -> WrappedKey:
        """Seal ``data_key`` to the newest KEK, bound to ``dataset_id`` and that version."""
        if len(data_key) != DATA_KEY_SIZE:
            raise ValueError(f"data keys are {DATA_KEY_SIZE} bytes")
        self.refresh()
        state = self._state
        version = max(state.publics)
        sealed = _SUITE.encrypt(
            bytes(data_key), state.publics[version], info=_wrap_info(version, dataset_id)
        )
        return WrappedKey(version=version, sealed=sealed)

    def unwrap(self, wrapped: WrappedKey, *, dataset_id: str) -> bytes:
        """Open a wrapped data key; only a private keyring can.

        Raises :class:`PrivateKeyUnavailable` on a public-only keyring,
        :class:`KeyVersionRetired` below ``min_version``, :class:`KeyNotFound` for an unknown
        version, :class:`IntegrityError` if the wrapped key or its dataset binding is wrong.
        """
        info = _wrap_info(wrapped.version, dataset_id)  # validates dataset_id in every mode
        if not self._private:
            raise PrivateKeyUnavailable("this keyring is public-only and cannot unwrap data keys")
        if wrapped.version < self._min_version:
            raise KeyVersionRetired(
                f"data key wrapped under KEK v{wrapped.version}, below min_version "
                f"{self._min_version}; it should have been re-wrapped before the bump"
            )
        private = self._state.privates.get(wrapped.version)
        if private is None:
            self.refresh()
            private = self._state.privates.get(wrapped.version)
            if private is None:
                raise KeyNotFound(f"no private key for KEK v{wrapped.version}")
        try:
            return _SUITE.decrypt(wrapped.sealed, private, info=info)
        except InvalidTag:
            raise IntegrityError(
                "wrapped key does not open: it belongs to another dataset or was altered"
            ) from None

    def rewrap(self, wrapped: WrappedKey, *, dataset_id: str) -> WrappedKey:
        """Re-seal a data key under the newest KEK; ciphertext is not touched.

        Idempotent: a key already under the newest version is returned unchanged, so a rotation
        job that was interrupted can simply be run again.
        """
        self.refresh()
        if wrapped.version == self.current_version:
            # Still authenticate it, so a rotation pass doubles as a check of every row.
            self.unwrap(wrapped, dataset_id=dataset_id)
            return wrapped
        data_key = self.unwrap(wrapped, dataset_id=dataset_id)
        return self.wrap(data_key, dataset_id=dataset_id)
