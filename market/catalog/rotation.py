"""Re-wrapping every dataset's data key under the newest key version (``market keys rotate``).

Only the operator's command runs this: it needs the private keys, which the web process
never holds. One short transaction per dataset, so a long rotation never blocks uploads,
and an interruption leaves every row either old-and-valid or new-and-valid.
"""

from __future__ import annotations

from sqlmodel import col, select

from market.audit import log as audit
from market.catalog.models import Dataset
from market.services import Services
from privacy.vault import Keyring, WrappedKey


def rewrap_all(market: Services) -> tuple[int, int]:
    """Return (re-wrapped, already current)."""
    keyring = Keyring.load(
        market.settings.key_dir, private=True, min_version=market.settings.vault.min_key_version
    )
    with market.database.read() as session:
        ids = list(
            session.exec(select(Dataset.id).where(col(Dataset.wrapped_key).is_not(None))).all()
        )
    moved = already = 0
    for dataset_id in ids:
        with market.database.write() as session:
            dataset = session.get(Dataset, dataset_id)
            if dataset is None or dataset.wrapped_key is None:
                continue
            old = WrappedKey.from_bytes(dataset.wrapped_key)
            new = keyring.rewrap(old, dataset_id=dataset.id)
            if new is old:
                already += 1
                continue
            dataset.wrapped_key = new.to_bytes()
            dataset.key_version = new.version
            session.add(dataset)
            moved += 1
    with market.database.write() as session:
        audit.record(
            session,
            market.settings,
            kind="keys.rotated",
            subject=f"kek-v{keyring.current_version}",
            actor_id=None,
            data={"to_version": keyring.current_version, "rewrapped": moved, "current": already},
        )
    return moved, already
