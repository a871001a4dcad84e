"""The upload use case: stream, encrypt, validate, then list, in that order, or leave nothing.

No database transaction is open while bytes arrive (an upload can take minutes; holding
SQLite's write lock that long would stall every other writer). The final transaction
re-checks that the dataset is still a draft, so two concurrent uploads cannot both list it.
"""

from __future__ import annotations

from collections.abc import Iterator

from market.accounts.models import User
from market.audit import log as audit
from market.catalog import services as catalog
from market.catalog.limits import UploadLimits
from market.catalog.models import Dataset
from market.catalog.validation import validate_upload
from market.services import Services


def upload_dataset_file(
    market: Services,
    *,
    actor: User,
    dataset_id: str,
    content_type: str | None,
    chunks: Iterator[bytes],
) -> Dataset:
    with market.database.read() as session:
        dataset = catalog.prepare_upload(
            session, actor=actor, dataset_id=dataset_id, content_type=content_type
        )
    description = catalog.preprocessing_of(dataset)
    declared = [c["name"] for c in dataset.data_schema.get("columns", [])]
    settings = market.settings.catalog
    limits = UploadLimits(
        delta=dataset.delta,
        max_in_memory_bytes=settings.max_in_memory_bytes,
        max_decoded_bytes=settings.max_decoded_bytes,
        max_cells=settings.max_cells,
    )
    stored = market.store.receive(
        dataset_id=dataset.id,
        vault=market.vault,
        chunks=chunks,
        validate=lambda plaintext: validate_upload(
            dataset.format,
            plaintext,
            description,
            declared_columns=declared,
            limits=limits,
        ),
    )
    try:
        with market.database.write() as session:
            listed = catalog.list_file(
                session,
                actor=actor,
                dataset_id=dataset.id,
                storage_name=stored.storage_name,
                wrapped_key=stored.wrapped_key.to_bytes(),
                key_version=stored.wrapped_key.version,
                rows=stored.rows,
                ciphertext_bytes=stored.ciphertext_bytes,
            )
            audit.record(
                session,
                market.settings,
                kind="dataset.listed",
                subject=listed.id,
                actor_id=actor.id,
                data={
                    "owner_id": listed.owner_id,
                    "title": listed.title,
                    "rows": listed.rows,
                    "epsilon_total": listed.epsilon_total,
                    "delta": listed.delta,
                    "max_epsilon_per_run": listed.max_epsilon_per_run,
                    "key_version": listed.key_version,
                },
            )
    except BaseException:
        market.store.delete(stored.storage_name)
        raise
    return listed


def delist_dataset(market: Services, *, actor: User, dataset_id: str) -> Dataset:
    """Delist and crypto-shred in one transaction (recorded), then delete the ciphertext."""
    with market.database.write() as session:
        dataset, storage_name = catalog.delist(session, actor=actor, dataset_id=dataset_id)
        if storage_name:
            audit.record(
                session,
                market.settings,
                kind="dataset.delisted",
                subject=dataset.id,
                actor_id=actor.id,
                data={"shredded": True},
            )
    if storage_name:
        market.store.delete(storage_name)
    return dataset
