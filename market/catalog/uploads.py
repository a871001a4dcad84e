"""The upload use case: stream, encrypt, validate, then list, in that order, or leave nothing.

No database transaction is open while bytes arrive (an upload can take minutes; holding
SQLite's write lock that long would stall every other writer). The final transaction
re-checks that the dataset is still a draft, so two concurrent uploads cannot both list it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

from sqlmodel import Session

from market.accounts.models import User
from market.audit import log as audit
from market.catalog import drafts, projection
from market.catalog import services as catalog
from market.catalog.drafts import StagedUpload
from market.catalog.limits import UploadLimits
from market.catalog.models import Dataset
from market.catalog.schemas import DatasetCreate
from market.catalog.validation import validate_upload
from market.errors import Conflict, ValidationFailed
from market.services import Services
from privacy.preprocessing import Description, describe


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
    limits = upload_limits(market, dataset.delta)
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
            record_listed(session, market, actor=actor, listed=listed)
    except BaseException:
        market.store.delete(stored.storage_name)
        raise
    return listed


def record_listed(session: Session, market: Services, *, actor: User, listed: Dataset) -> None:
    """The audit entry of a listing (the API's upload and the wizard write the same)."""
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


def upload_limits(market: Services, delta: float) -> UploadLimits:
    settings = market.settings.catalog
    return UploadLimits(
        delta=delta,
        max_in_memory_bytes=settings.max_in_memory_bytes,
        max_decoded_bytes=settings.max_decoded_bytes,
        max_cells=settings.max_cells,
    )


def list_staged_upload(
    market: Services,
    *,
    actor: User,
    staged: StagedUpload,
    data_key: bytes,
    data: DatasetCreate,
    keep: list[str] | None = None,
) -> Dataset:
    """The wizard's listing step: the upload already encrypted at its first step is decrypted
    in memory with the owner's key, checked against ``data`` (the chosen description), then
    listed under the id it was encrypted for. On any refusal nothing is written and the
    upload stays in the drafts folder, so the owner can correct the description. ``keep``:
    the file's columns (as written) to store when the owner left some out."""
    currency = market.settings.costing.currency
    schema = catalog.check_draft(data, currency=currency, limits=market.settings.catalog)
    if data.format.value != staged.format:
        raise ValidationFailed(
            f"the file is {staged.format.upper()}, not {data.format.value.upper()}",
            details={"field": "format"},
        )
    description = describe({"format": data.format.value, "label": data.label, **schema})
    declared = [c["name"] for c in schema.get("columns", [])]
    if keep is not None and data.format.value in ("csv", "parquet"):
        return _list_projected(market, actor, staged, data_key, data, description, keep)
    chunks = drafts.plaintext(market, staged, data_key)
    try:
        rows = _validator(market, data, description, declared)(chunks)
    finally:
        chunks.close()
    with drafts.moved_for_listing(market, staged) as storage_name:
        listed = _list_under_draft_id(
            market,
            actor,
            data,
            dataset_id=staged.id,
            storage_name=storage_name,
            wrapped_key=base64.b64decode(staged.wrapped_key),
            key_version=staged.key_version,
            rows=rows,
            ciphertext_bytes=staged.ciphertext_bytes,
        )
    return listed


def _list_under_draft_id(
    market: Services,
    actor: User,
    data: DatasetCreate,
    *,
    dataset_id: str,
    storage_name: str,
    wrapped_key: bytes,
    key_version: int,
    rows: int,
    ciphertext_bytes: int,
) -> Dataset:
    """Create the row under the id the upload was encrypted for and list it, in one
    transaction; an id already taken (the same upload listed from another tab) is a 409."""
    with market.database.write() as session:
        if session.get(Dataset, dataset_id) is not None:
            raise Conflict("this upload was listed already", details={"field": "file"})
        catalog.create_draft(
            session,
            owner=actor,
            data=data,
            currency=market.settings.costing.currency,
            limits=market.settings.catalog,
            dataset_id=dataset_id,
        )
        session.flush()
        listed = catalog.list_file(
            session,
            actor=actor,
            dataset_id=dataset_id,
            storage_name=storage_name,
            wrapped_key=wrapped_key,
            key_version=key_version,
            rows=rows,
            ciphertext_bytes=ciphertext_bytes,
        )
        record_listed(session, market, actor=actor, listed=listed)
    return listed


def _validator(
    market: Services, data: DatasetCreate, description: Description, declared: list[str]
) -> Callable[[Iterator[bytes]], int]:
    """The wizard's check of a plaintext stream against the owner's chosen metadata (the
    whole upload, or the copy keeping only the published columns): its row count."""
    limits = upload_limits(market, data.privacy.delta)
    return lambda plaintext: validate_upload(
        data.format, plaintext, description, declared_columns=declared, limits=limits
    )


def _list_projected(
    market: Services,
    actor: User,
    staged: StagedUpload,
    data_key: bytes,
    data: DatasetCreate,
    description: Description,
    keep: list[str],
) -> Dataset:
    """List a copy of the upload with only ``keep``'s columns, streamed from the decrypted
    upload into a new ciphertext (fresh data key) while the validator reads it."""
    project = projection.project_csv if staged.format == "csv" else projection.project_parquet
    names = [c["name"] for c in (data.model_dump()["columns"] or [])]
    chunks = drafts.plaintext(market, staged, data_key)
    try:
        stored = market.store.receive(
            dataset_id=staged.id,
            vault=market.vault,
            chunks=project(chunks, keep),
            validate=_validator(market, data, description, names),
        )
    finally:
        chunks.close()
    try:
        listed = _list_under_draft_id(
            market,
            actor,
            data,
            dataset_id=staged.id,
            storage_name=stored.storage_name,
            wrapped_key=stored.wrapped_key.to_bytes(),
            key_version=stored.wrapped_key.version,
            rows=stored.rows,
            ciphertext_bytes=stored.ciphertext_bytes,
        )
    except BaseException:
        market.store.delete(stored.storage_name)
        raise
    drafts.discard(market, staged)
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
