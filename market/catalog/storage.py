"""The local folder of ciphertext: files appear whole or not at all.

An upload is encrypted into ``<name>.partial`` (0600) as it streams in; only a complete,
validated, fsynced file is renamed to its final name, and only a committed database row
refers to it. ``sweep_orphans`` removes what a crash between rename and commit left behind.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from privacy.vault import Vault, WrappedKey

PARTIAL_SUFFIX = ".partial"
FILE_SUFFIX = ".pvlt"


@dataclass(frozen=True)
class StoredUpload:
    storage_name: str
    wrapped_key: WrappedKey
    rows: int
    ciphertext_bytes: int


class CiphertextStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, storage_name: str) -> Path:
        if "/" in storage_name or storage_name.startswith("."):
            raise ValueError("a storage name is a plain file name")
        return self.root / storage_name

    def receive(
        self,
        *,
        dataset_id: str,
        vault: Vault,
        chunks: Iterator[bytes],
        validate: Callable[[Iterator[bytes]], int],
    ) -> StoredUpload:
        """Encrypt ``chunks`` to a new file while ``validate`` reads the same plaintext.

        Returns only when the file is complete and the validator accepted it; otherwise the
        partial file is removed and the validator's (or the stream's) error propagates.
        """
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{dataset_id}-{secrets.token_hex(8)}{FILE_SUFFIX}"
        partial = self.root / (name + PARTIAL_SUFFIX)
        encryptor, wrapped = vault.encryptor(dataset_id=dataset_id)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:

                def encrypting_tee() -> Iterator[bytes]:
                    for chunk in chunks:
                        out.write(encryptor.update(chunk))
                        yield chunk
                    out.write(encryptor.finalize())

                tee = encrypting_tee()
                rows = validate(tee)
                for _ in tee:  # a validator may stop early; the file must still be whole
                    pass
                out.flush()
                os.fsync(out.fileno())
            final = self.root / name
            os.replace(partial, final)
            return StoredUpload(
                storage_name=name,
                wrapped_key=wrapped,
                rows=rows,
                ciphertext_bytes=final.stat().st_size,
            )
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def delete(self, storage_name: str) -> None:
        self.path(storage_name).unlink(missing_ok=True)

    def sweep_orphans(self, referenced: set[str], *, older_than_s: float = 3600) -> list[str]:
        """Delete files no committed row refers to (and stale partials); return their names.

        Only files older than ``older_than_s`` go, so an upload in progress is never touched.
        """
        if not self.root.exists():
            return []
        removed = []
        cutoff = time.time() - older_than_s
        for entry in self.root.iterdir():
            if entry.is_file() and entry.name not in referenced and entry.stat().st_mtime < cutoff:
                entry.unlink(missing_ok=True)
                removed.append(entry.name)
        return removed
