"""Key hierarchy, the public-only web tier, min_version, rotation, crypto-shredding."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from privacy.errors import (
    IntegrityError,
    KeyFilePermissionError,
    KeyNotFound,
    KeyringError,
    KeyVersionRetired,
    PrivateKeyUnavailable,
    VaultError,
)
from privacy.vault import (
    Keyring,
    Vault,
    WrappedKey,
    generate_data_key,
    init_keydir,
    retire,
    rotate,
    wipe,
)

S = 64


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    assert init_keydir(path) == 1
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def upload(vault: Vault, data: bytes, dataset_id: str, dst: Path) -> WrappedKey:
    """What the web tier does: stream chunks through an encryptor into an open file."""
    encryptor, wrapped = vault.encryptor(dataset_id=dataset_id)
    with open(dst, "wb") as fh:
        for i in range(0, len(data), 50):
            fh.write(encryptor.update(data[i : i + 50]))
        fh.write(encryptor.finalize())
    return wrapped


# --- key files ------------------------------------------------------------------------------


def test_init_creates_private_0600_public_0644_dir_0700(tmp_path: Path) -> None:
    old = os.umask(0)  # a careless umask must not widen a private key, even transiently
    try:
        keydir = tmp_path / "k"
        assert init_keydir(keydir) == 1
    finally:
        os.umask(old)
    assert mode(keydir) == 0o700
    assert mode(keydir / "kek-v1.key") == 0o600
    assert mode(keydir / "kek-v1.pub") == 0o644
    assert sorted(p.name for p in keydir.iterdir()) == [".lock", "kek-v1.key", "kek-v1.pub"]


def test_init_is_idempotent(keydir: Path) -> None:
    before = {p.name: p.read_bytes() for p in keydir.glob("kek-*")}
    assert init_keydir(keydir) == 1
    assert {p.name: p.read_bytes() for p in keydir.glob("kek-*")} == before


def test_rotate_adds_versions_and_keeps_old_files(keydir: Path) -> None:
    assert rotate(keydir) == 2
    assert rotate(keydir) == 3
    names = sorted(p.name for p in keydir.glob("kek-*"))
    assert names == [f"kek-v{v}.{ext}" for v in (1, 2, 3) for ext in ("key", "pub")]
    for v in (2, 3):
        assert mode(keydir / f"kek-v{v}.key") == 0o600
    assert Keyring.load(keydir).versions == (1, 2, 3)


def test_interrupted_rotation_is_completed_not_repeated(keydir: Path) -> None:
    """A crash between the private and the public rename leaves a lone .key."""
    assert rotate(keydir) == 2
    (keydir / "kek-v2.pub").unlink()
    (keydir / ".kek-v3.key.0123456789abcdef.tmp").write_bytes(b"half-written")
    # Until completed, the web tier cannot wrap to v2 (its public half is not visible).
    assert Keyring.load(keydir).current_version == 1
    assert rotate(keydir) == 2
    assert Keyring.load(keydir, private=True).current_version == 2
    assert not (keydir / "kek-v3.key").exists()


def test_private_key_with_loose_permissions_is_refused(keydir: Path) -> None:
    os.chmod(keydir / "kek-v1.key", 0o640)
    with pytest.raises(KeyFilePermissionError, match="0640"):
        Keyring.load(keydir, private=True)
    Keyring.load(keydir)  # the public half is still usable


def test_group_writable_keydir_is_refused(keydir: Path) -> None:
    os.chmod(keydir, 0o770)
    with pytest.raises(KeyringError, match="writable"):
        Keyring.load(keydir)


def test_mismatched_key_pair_is_refused(keydir: Path) -> None:
    rotate(keydir)
    shutil.copy(keydir / "kek-v1.pub", keydir / "kek-v2.pub")
    with pytest.raises(KeyringError, match="does not match"):
        Keyring.load(keydir, private=True)


def test_missing_keydir_and_empty_keydir(tmp_path: Path) -> None:
    with pytest.raises(KeyNotFound):
        Keyring.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir(mode=0o700)
    with pytest.raises(KeyNotFound):
        Keyring.load(tmp_path / "empty")


# --- the web tier cannot decrypt ---------------------------------------------------------------

_opened: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _opened is not None and event == "open" and args and isinstance(args[0], str | Path):
        _opened.append(os.fspath(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; it records only inside `recording()`


@contextlib.contextmanager
def recording_opens() -> Iterator[list[str]]:
    """Every path this process opens inside the block (builtins.open, io.open, os.open)."""
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


def _reachable_private_keys(root: object) -> int:
    seen: set[int] = set()
    todo = [root]
    found = 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        if isinstance(obj, X25519PrivateKey):
            found += 1
        todo.extend(gc.get_referents(obj))
        for slot in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, slot):
                todo.append(getattr(obj, slot))
    return found


def test_public_only_keyring_can_encrypt_but_never_unwrap(keydir: Path, tmp_path: Path) -> None:
    with recording_opens() as opened:
        web = Vault(Keyring.load(keydir), segment_size=S)
        wrapped = upload(web, b"secret rows" * 40, "ds1", tmp_path / "ds1.bin")
    assert opened, "the audit hook saw nothing: the proof below would be vacuous"
    assert not [p for p in opened if p.endswith(".key")], opened
    assert not web.keyring.can_unwrap
    assert _reachable_private_keys(web) == 0
    assert _reachable_private_keys(Vault(Keyring.load(keydir, private=True))) == 1

    with pytest.raises(PrivateKeyUnavailable):
        web.keyring.unwrap(wrapped, dataset_id="ds1")
    with pytest.raises(PrivateKeyUnavailable):
        web.decrypt_to_buffer(tmp_path / "ds1.bin", dataset_id="ds1", wrapped=wrapped)
    with pytest.raises(PrivateKeyUnavailable):  # at the call, before any iteration
        web.decrypt_iter(tmp_path / "ds1.bin", dataset_id="ds1", wrapped=wrapped)
    with pytest.raises(PrivateKeyUnavailable):
        web.rewrap(wrapped, dataset_id="ds1")
    with pytest.raises(KeyNotFound):  # callers may catch the broader class
        web.keyring.unwrap(wrapped, dataset_id="ds1")

    worker = Vault(Keyring.load(keydir, private=True))
    got = worker.decrypt_bytes(tmp_path / "ds1.bin", dataset_id="ds1", wrapped=wrapped)
    assert got == b"secret rows" * 40


def test_encrypting_and_decrypting_in_memory_opens_no_file(keydir: Path) -> None:
    """The vault itself never spools: no temp file, no file at all, for plaintext or otherwise."""
    web = Vault(Keyring.load(keydir), segment_size=S)
    worker = Vault(Keyring.load(keydir, private=True), segment_size=S)
    data = os.urandom(10 * S + 1)
    with recording_opens() as opened:
        dst = io.BytesIO()
        wrapped = web.encrypt_stream(io.BytesIO(data), dst, dataset_id="ds1", chunk_size=100)
        dst.seek(0)
        assert worker.open_plaintext(dst, dataset_id="ds1", wrapped=wrapped).read() == data
        dst.seek(0)
        assert b"".join(worker.decrypt_iter(dst, dataset_id="ds1", wrapped=wrapped)) == data
    assert opened == []


def test_web_tier_deployment_with_public_files_only(keydir: Path, tmp_path: Path) -> None:
    web_dir = tmp_path / "web-keys"
    web_dir.mkdir(mode=0o700)
    for pub in keydir.glob("*.pub"):
        shutil.copy(pub, web_dir / pub.name)
    web = Vault(Keyring.load(web_dir), segment_size=S)
    ct, wrapped = web.encrypt_bytes(b"abc", dataset_id="ds1")
    with pytest.raises(KeyNotFound):
        Keyring.load(web_dir, private=True)
    with pytest.raises(KeyringError, match="public keys only"):
        rotate(web_dir)
    worker = Vault(Keyring.load(keydir, private=True))
    assert worker.decrypt_bytes(io.BytesIO(ct), dataset_id="ds1", wrapped=wrapped) == b"abc"


# --- wrapped keys -----------------------------------------------------------------------------


def test_wrapped_key_serialisations(keydir: Path) -> None:
    ring = Keyring.load(keydir, private=True)
    key = generate_data_key()
    wrapped = ring.wrap(key, dataset_id="ds1")
    raw = wrapped.to_bytes()
    assert len(raw) == 85 and raw[:5] == b"\x01\x00\x00\x00\x01"
    for again in (
        WrappedKey.from_bytes(raw),
        WrappedKey.from_dict(json.loads(json.dumps(wrapped.to_dict()))),
        WrappedKey.from_str(wrapped.to_str()),
    ):
        assert again == wrapped
        assert ring.unwrap(again, dataset_id="ds1") == key
    assert "sealed" not in repr(wrapped)
    for bad in (raw[:-1], b"\x02" + raw[1:], raw + b"\x00"):
        with pytest.raises(IntegrityError):
            WrappedKey.from_bytes(bad)
    with pytest.raises(IntegrityError):
        WrappedKey.from_dict({"alg": "rsa", "kek": 1, "sealed": ""})
    with pytest.raises(IntegrityError):
        WrappedKey.from_dict({"kek": 1})


def test_wrapped_key_is_bound_to_its_dataset_and_version(keydir: Path) -> None:
    rotate(keydir)
    ring = Keyring.load(keydir, private=True)
    wrapped = ring.wrap(generate_data_key(), dataset_id="ds1")
    with pytest.raises(IntegrityError, match="another dataset"):
        ring.unwrap(wrapped, dataset_id="ds2")
    relabelled = WrappedKey(version=1, sealed=wrapped.sealed)  # claims v1, sealed to v2
    with pytest.raises(IntegrityError):
        ring.unwrap(relabelled, dataset_id="ds1")
    for i in range(len(wrapped.sealed)):
        bad = bytearray(wrapped.sealed)
        bad[i] ^= 0x10
        with pytest.raises(IntegrityError):
            ring.unwrap(WrappedKey(version=2, sealed=bytes(bad)), dataset_id="ds1")
    with pytest.raises(KeyNotFound):
        ring.unwrap(WrappedKey(version=9, sealed=wrapped.sealed), dataset_id="ds1")


def test_each_upload_gets_a_fresh_data_key(keydir: Path) -> None:
    vault = Vault(Keyring.load(keydir, private=True), segment_size=S)
    ring = vault.keyring
    _, w1 = vault.encrypt_bytes(b"x", dataset_id="ds1")
    _, w2 = vault.encrypt_bytes(b"x", dataset_id="ds1")
    assert ring.unwrap(w1, dataset_id="ds1") != ring.unwrap(w2, dataset_id="ds1")


# --- min_version, rotation, rewrap -------------------------------------------------------------


def test_min_version_refuses_older_wrapped_keys(keydir: Path, tmp_path: Path) -> None:
    old = upload(Vault(Keyring.load(keydir), segment_size=S), b"d" * 100, "ds1", tmp_path / "f")
    rotate(keydir)
    strict = Vault(Keyring.load(keydir, private=True, min_version=2))
    with pytest.raises(KeyVersionRetired, match="below min_version 2"):
        strict.decrypt_bytes(tmp_path / "f", dataset_id="ds1", wrapped=old)
    with pytest.raises(KeyVersionRetired):
        strict.rewrap(old, dataset_id="ds1")  # rewrap must happen before the bump
    lenient = Vault(Keyring.load(keydir, private=True))
    new = lenient.rewrap(old, dataset_id="ds1")
    assert new.version == 2
    assert strict.decrypt_bytes(tmp_path / "f", dataset_id="ds1", wrapped=new) == b"d" * 100
    with pytest.raises(KeyNotFound, match="version >= 3"):
        Keyring.load(keydir, min_version=3)


def test_rewrap_leaves_ciphertext_alone_and_is_idempotent(keydir: Path, tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = os.urandom(5 * S + 3)
    vault = Vault(Keyring.load(keydir, private=True), segment_size=S)
    wrapped = upload(vault, data, "ds1", path)
    digest = hashlib.sha256(path.read_bytes()).digest()
    stamp = path.stat().st_mtime_ns

    rotate(keydir)  # the running keyring notices the new version by itself
    new = vault.rewrap(wrapped, dataset_id="ds1")
    assert (wrapped.version, new.version) == (1, 2)
    assert vault.rewrap(new, dataset_id="ds1") is new  # idempotent: nothing to do
    assert hashlib.sha256(path.read_bytes()).digest() == digest
    assert path.stat().st_mtime_ns == stamp
    assert vault.decrypt_bytes(path, dataset_id="ds1", wrapped=new) == data
    assert vault.decrypt_bytes(path, dataset_id="ds1", wrapped=wrapped) == data  # old KEK kept
    _, newer = vault.encrypt_bytes(b"x", dataset_id="ds2")
    assert newer.version == 2


def test_rotation_within_one_clock_tick_is_noticed(keydir: Path) -> None:
    """Directory mtime is coarse; a keyring must not miss a rotation that kept the same mtime."""
    ring = Keyring.load(keydir, private=True)
    wrapped = ring.wrap(generate_data_key(), dataset_id="ds1")
    before = keydir.stat()
    rotate(keydir)
    os.utime(keydir, ns=(before.st_atime_ns, before.st_mtime_ns))  # as if in the same tick
    assert ring.rewrap(wrapped, dataset_id="ds1").version == 2


def test_retire_removes_old_versions(keydir: Path, tmp_path: Path) -> None:
    vault = Vault(Keyring.load(keydir, private=True), segment_size=S)
    wrapped = upload(vault, b"q" * 10, "ds1", tmp_path / "f")
    rotate(keydir)
    with pytest.raises(KeyringError):
        retire(keydir, below=3)
    removed = retire(keydir, below=2)
    assert sorted(p.name for p in removed) == ["kek-v1.key", "kek-v1.pub"]
    fresh = Vault(Keyring.load(keydir, private=True))
    with pytest.raises(KeyNotFound):
        fresh.decrypt_bytes(tmp_path / "f", dataset_id="ds1", wrapped=wrapped)


def test_rotation_under_concurrent_reads(keydir: Path, tmp_path: Path) -> None:
    """Readers decrypt non-stop while another thread rotates twice and re-wraps every row."""
    web = Vault(Keyring.load(keydir), segment_size=S)
    table: dict[str, WrappedKey] = {}
    plain: dict[str, bytes] = {}
    for i in range(6):
        ds = f"ds{i}"
        plain[ds] = os.urandom(3 * S + i)
        table[ds] = upload(web, plain[ds], ds, tmp_path / ds)
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]
    worker = Vault(Keyring.load(keydir, private=True))

    def reader() -> None:
        try:
            while not stop.is_set():
                for ds in plain:
                    with lock:
                        wrapped = table[ds]
                    got = b"".join(
                        worker.decrypt_iter(tmp_path / ds, dataset_id=ds, wrapped=wrapped)
                    )
                    assert got == plain[ds]
                    with lock:
                        reads[0] += 1
        except BaseException as exc:  # surfaced below; a thread must not die silently
            errors.append(exc)

    def rotator() -> None:
        try:
            admin = Vault(Keyring.load(keydir, private=True))
            for _ in range(2):
                rotate(keydir)
                for ds in plain:
                    with lock:
                        current = table[ds]
                    fresh = admin.rewrap(current, dataset_id=ds)
                    with lock:
                        table[ds] = fresh
                    time.sleep(0.005)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    rot = threading.Thread(target=rotator)
    rot.start()
    rot.join(timeout=30)
    time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert reads[0] > len(plain)
    assert {w.version for w in table.values()} == {3}
    # Everything still opens once the operator retires v1 and v2.
    strict = Vault(Keyring.load(keydir, private=True, min_version=3))
    for ds, wrapped in table.items():
        assert strict.decrypt_bytes(tmp_path / ds, dataset_id=ds, wrapped=wrapped) == plain[ds]


def test_concurrent_rotations_do_not_clobber(keydir: Path) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def go() -> None:
        try:
            results.append(rotate(keydir))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(results) == [2, 3, 4, 5]
    Keyring.load(keydir, private=True)  # every pair still matches


# --- crypto-shredding ---------------------------------------------------------------------------


def _windows(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(len(data) - size + 1))


def test_ciphertext_without_its_wrapped_key_is_unrecoverable(keydir: Path, tmp_path: Path) -> None:
    """Shredding = deleting the wrapped key. Even holding every private KEK does not help,
    because no KEK ever encrypted data, and nothing in the file is sealed to a KEK."""
    rotate(keydir)
    vault = Vault(Keyring.load(keydir, private=True), segment_size=S)
    data = os.urandom(4 * S)
    path = tmp_path / "victim"
    wrapped = upload(vault, data, "victim", path)
    ct = path.read_bytes()
    del wrapped  # the application deletes the column: this is the shred

    # 1. The wrapped key (or any 16 bytes of it) was never written into the file.
    # 2. No window of the file opens as an HPKE ciphertext under any KEK, with any binding.
    suite = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
    privates = list(vault.keyring._state.privates.values())
    info = b"privacy.vault wrap v1\x00"
    for window in _windows(ct, 80):
        for private in privates:
            with pytest.raises(Exception):  # noqa: B017 - any failure is the point
                suite.decrypt(window, private, info=info)
    # 3. Other data keys, including a sibling dataset's wrapped key, do not open it.
    _, sibling = vault.encrypt_bytes(b"other", dataset_id="victim")
    with pytest.raises(IntegrityError, match="commitment"):
        vault.decrypt_bytes(path, dataset_id="victim", wrapped=sibling)
    for _ in range(20):
        with pytest.raises(VaultError):
            vault.decrypt_bytes(
                path,
                dataset_id="victim",
                wrapped=vault.keyring.wrap(generate_data_key(), dataset_id="victim"),
            )


def test_decrypt_to_buffer_can_be_wiped(keydir: Path, tmp_path: Path) -> None:
    vault = Vault(Keyring.load(keydir, private=True), segment_size=S)
    wrapped = upload(vault, b"z" * 300, "ds1", tmp_path / "f")
    buf = vault.decrypt_to_buffer(tmp_path / "f", dataset_id="ds1", wrapped=wrapped)
    assert buf == b"z" * 300
    wipe(buf)
    assert buf == bytes(300)
    fh = vault.open_plaintext(tmp_path / "f", dataset_id="ds1", wrapped=wrapped)
    assert fh.read() == b"z" * 300
