"""Instance hygiene: private file modes and the sweep of orphaned ciphertext.

Everything in an instance is private to the account that runs it: the database (with its
``-wal`` and ``-shm`` files), the queue, the keys, uploaded ciphertext, delivered models and
logs. ``market`` commands run under umask 077 (files 0600, folders 0700) and ``market init``
and ``market serve`` bring older files, created 0644 by earlier versions, down to the same.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from market.config import Settings

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_umask() -> int:
    """Make every file this process creates 0600 and every folder 0700; return the old mask."""
    return os.umask(PRIVATE_UMASK)


def instance_paths(settings: Settings) -> list[Path]:
    """The folders and files that belong to the instance, wherever settings put them."""
    paths = [
        settings.home,
        settings.key_dir,
        settings.storage_dir,
        settings.models_dir,
        settings.queue_file,
    ]
    url = settings.database_url
    if url.startswith("sqlite:///"):
        database = Path(url.removeprefix("sqlite:///"))
        paths += [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
    return paths


def _walk(paths: Iterable[Path]) -> Iterable[tuple[Path, os.stat_result]]:
    seen: set[Path] = set()
    for top in paths:
        if top in seen:
            continue
        seen.add(top)
        try:
            info = top.lstat()
        except FileNotFoundError:
            continue
        yield top, info
        if stat.S_ISDIR(info.st_mode):
            for root, dirs, files in os.walk(top):
                for name in (*dirs, *files):
                    path = Path(root) / name
                    if path in seen:
                        continue
                    seen.add(path)
                    try:
                        yield path, path.lstat()
                    except FileNotFoundError:
                        continue


def secure_instance(settings: Settings) -> list[Path]:
    """Take group and other permissions off every instance file and folder; return those
    changed. Links are left alone (their target is not ours to change)."""
    changed = []
    for path, info in _walk(instance_paths(settings)):
        if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid():
            continue
        wanted = PRIVATE_DIR_MODE if stat.S_ISDIR(info.st_mode) else PRIVATE_FILE_MODE
        mode = stat.S_IMODE(info.st_mode)
        new = mode & wanted  # only ever removes bits: a 0400 key stays 0400
        if new != mode:
            os.chmod(path, new)
            changed.append(path)
    return changed


def sweep_orphans(market: Any, *, older_than_s: float) -> list[str]:
    """Remove ciphertext no committed listing refers to and nobody has written for
    ``older_than_s`` seconds: the ``.partial`` of an upload cut off by a crash, or a whole
    file whose listing never committed. Returns the removed names. Wizard uploads left in
    ``drafts/`` go too, after ``market.catalog.drafts.DRAFT_TTL_S``."""
    from market.catalog.services import referenced_files

    with market.database.read() as session:
        keep = referenced_files(session)
    removed: list[str] = market.store.sweep_orphans(keep, older_than_s=older_than_s)
    for name in removed:
        log.warning("removed orphaned ciphertext %s", name)
    from market.catalog.drafts import reap_drafts

    for name in reap_drafts(market):  # wizard uploads abandoned for DRAFT_TTL_S
        log.info("removed an abandoned wizard upload %s", name)
    return removed
