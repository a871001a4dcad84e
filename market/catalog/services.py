"""Catalog rules: drafts, uploads, search, detail and crypto-shredding delisting.

Who sees what (the rules are market.visibility's): listed datasets are visible to everyone
signed in; drafts to their owner; delisted ones to their owner, auditors and admins (the
ledgers refer to them). A dataset a caller may not see reads as not found, so ids of others'
drafts are not confirmed.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from market.accounts.models import Role, User
from market.accounts.services import require_role
from market.catalog.limits import check_delta
from market.catalog.models import Dataset, DatasetFormat, DatasetStatus, DatasetTag
from market.catalog.schemas import (
    Budget,
    CategoricalColumn,
    DatasetCreate,
    DatasetPublic,
    Price,
    SchemaSummary,
)
from market.config import CatalogSettings
from market.db import utcnow
from market.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from market.money import from_minor, to_minor
from market.visibility import datasets_owned_by, may_change_dataset, may_see_dataset
from privacy.errors import SchemaError
from privacy.preprocessing import Description, describe

CONTENT_TYPES = {
    "text/csv": DatasetFormat.CSV,
    "application/vnd.apache.parquet": DatasetFormat.PARQUET,
    "application/x-parquet": DatasetFormat.PARQUET,
    "application/x-npz": DatasetFormat.NPZ,
}
MEDIA_TYPE_OF = {
    DatasetFormat.CSV: "text/csv",
    DatasetFormat.PARQUET: "application/vnd.apache.parquet",
    DatasetFormat.NPZ: "application/x-npz",
}


def metadata_of(dataset: Dataset) -> dict[str, Any]:
    """The public metadata in docs/api.md's shape (what ``privacy.preprocessing`` reads)."""
    meta: dict[str, Any] = {"format": dataset.format.value, "label": dataset.label}
    meta.update(dataset.data_schema)
    return meta


def preprocessing_of(dataset: Dataset) -> Description:
    return describe(metadata_of(dataset))


def check_metadata_limits(data: DatasetCreate, limits: CatalogSettings) -> None:
    """Bound what one listing may make every catalog reader download and parse."""
    columns = data.columns or []
    if len(columns) > limits.max_columns:
        raise ValidationFailed(
            f"a listing declares at most {limits.max_columns:,} columns; this one declares "
            f"{len(columns):,}",
            details={"field": "columns", "max": limits.max_columns, "received": len(columns)},
        )
    named: list[tuple[str, int]] = [
        (f"columns.{i}.categories", len(c.categories))
        for i, c in enumerate(columns)
        if isinstance(c, CategoricalColumn)
    ]
    if data.image is not None:
        named.append(("image.class_names", len(data.image.class_names)))
    for field, count in named:
        if count > limits.max_categories:
            raise ValidationFailed(
                f"{field} declares {count:,} categories; at most {limits.max_categories:,} "
                "per column are accepted",
                details={"field": field, "max": limits.max_categories, "received": count},
            )
    size = len(data.model_dump_json().encode())
    if size > limits.max_metadata_bytes:
        raise ValidationFailed(
            f"the listing's metadata is {size:,} bytes as JSON; at most "
            f"{limits.max_metadata_bytes:,} are accepted",
            details={"field": "body", "max_bytes": limits.max_metadata_bytes, "received": size},
        )


def schema_of(data: DatasetCreate) -> dict[str, Any]:
    """The stored schema: the columns (with the optional whitespace and missing-value
    treatment, ``trim_spaces`` and ``missing_values``) or the image spec."""
    if data.image is not None:
        return {"image": data.image.model_dump(exclude_none=True)}
    schema: dict[str, Any] = {
        "columns": [c.model_dump(exclude_none=True) for c in data.columns or []]
    }
    if data.trim_spaces:
        schema["trim_spaces"] = True
    if data.missing_values:
        schema["missing_values"] = list(dict.fromkeys(data.missing_values))
    return schema


def check_draft(data: DatasetCreate, *, currency: str, limits: CatalogSettings) -> dict[str, Any]:
    """Every check of a draft's metadata that needs no database; returns its schema."""
    check_metadata_limits(data, limits)
    if data.price.currency != currency:
        raise ValidationFailed(
            f"prices on this marketplace are in {currency}, not {data.price.currency}",
            details={"field": "price.currency", "expected": currency},
        )
    schema = schema_of(data)
    try:
        describe({"format": data.format.value, "label": data.label, **schema})
    except SchemaError as exc:
        raise ValidationFailed(str(exc), details=exc.details) from exc
    return schema


def create_draft(
    session: Session,
    *,
    owner: User,
    data: DatasetCreate,
    currency: str,
    limits: CatalogSettings | None = None,
    dataset_id: str | None = None,
) -> Dataset:
    """A listing draft; ``limits`` (the catalog settings) caps its metadata's size.
    ``dataset_id``: the id the wizard's upload was already encrypted for."""
    require_role(owner, Role.OWNER)
    schema = check_draft(data, currency=currency, limits=limits or CatalogSettings())
    try:
        per_run = to_minor(data.price.per_run, currency)
        per_epsilon = to_minor(data.price.per_epsilon, currency)
    except ValueError as exc:
        raise ValidationFailed(str(exc), details={"field": "price"}) from exc
    dataset = Dataset.model_validate(
        {
            "id": dataset_id or uuid.uuid4().hex,
            "owner_id": owner.id,
            "title": data.title,
            "description": data.description,
            "licence": data.licence,
            "format": data.format,
            "label": data.label if data.image is None else None,
            "data_schema": schema,
            "epsilon_total": data.privacy.epsilon_total,
            "delta": data.privacy.delta,
            "max_epsilon_per_run": data.privacy.max_epsilon_per_run,
            "price_per_run_minor": per_run,
            "price_per_epsilon_minor": per_epsilon,
            "currency": currency,
        }
    )
    session.add(dataset)
    session.flush()
    for tag in data.tags:
        session.add(DatasetTag(dataset_id=dataset.id, tag=tag))
    return dataset


def lock_dataset_row(session: Session, dataset_id: str) -> Dataset | None:
    """Lock the dataset's row for this transaction (FOR NO KEY UPDATE on PostgreSQL; on
    SQLite the write transaction's BEGIN IMMEDIATE already serialises writers).

    NO KEY: lockers still exclude each other, but the KEY SHARE lock a foreign-key check
    takes (a worker updating its run row, whose dataset_id references this row) does not
    wait. With FOR UPDATE, a purchase holding this row and waiting for the dataset's budget
    state deadlocked with a delivery holding that state and checking its run's key."""
    return session.exec(
        select(Dataset).where(Dataset.id == dataset_id).with_for_update(key_share=True)
    ).first()


def get_dataset(session: Session, *, actor: User, dataset_id: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or not may_see_dataset(actor, dataset):
        raise NotFound(f"no dataset {dataset_id}", details={"dataset_id": dataset_id})
    return dataset


def get_own_dataset(session: Session, *, actor: User, dataset_id: str) -> Dataset:
    """A dataset the caller may change: their own (admins may change any)."""
    dataset = get_dataset(session, actor=actor, dataset_id=dataset_id)
    if not may_change_dataset(actor, dataset):
        raise PermissionDenied("only the dataset's owner may change it")
    return dataset


def prepare_upload(
    session: Session, *, actor: User, dataset_id: str, content_type: str | None
) -> Dataset:
    """Check, before any byte is read, that this caller may upload this file type here."""
    from market.errors import UnsupportedMediaType

    dataset = get_own_dataset(session, actor=actor, dataset_id=dataset_id)
    if dataset.status is not DatasetStatus.DRAFT:
        raise Conflict(
            f"dataset {dataset_id} is {dataset.status.value}; a listed file cannot be replaced",
            details={"status": dataset.status.value},
        )
    media_type = (content_type or "").split(";")[0].strip().lower()
    sent = CONTENT_TYPES.get(media_type)
    expected = MEDIA_TYPE_OF[dataset.format]
    if sent is not dataset.format:
        raise UnsupportedMediaType(
            f"this dataset was declared as {dataset.format.value}: send Content-Type: {expected}",
            details={"expected": expected, "received": media_type or None},
        )
    return dataset


def check_delta_fits_rows(dataset: Dataset, rows: int) -> None:
    """Delta must stay below 1/n: a larger delta permits releasing a whole row outright."""
    check_delta(dataset.delta, rows)


def list_file(
    session: Session,
    *,
    actor: User,
    dataset_id: str,
    storage_name: str,
    wrapped_key: bytes,
    key_version: int,
    rows: int,
    ciphertext_bytes: int,
) -> Dataset:
    """Attach the stored file and list the dataset, in the caller's transaction.

    The row is locked first (FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already
    serialises writers), so of two uploads racing to the same draft exactly one lists it.
    """
    lock_dataset_row(session, dataset_id)
    dataset = get_own_dataset(session, actor=actor, dataset_id=dataset_id)
    if dataset.status is not DatasetStatus.DRAFT:
        raise Conflict(f"dataset {dataset_id} was listed by another upload meanwhile")
    check_delta_fits_rows(dataset, rows)
    now = utcnow()
    dataset.storage_name = storage_name
    dataset.wrapped_key = wrapped_key
    dataset.key_version = key_version
    dataset.rows = rows
    dataset.ciphertext_bytes = ciphertext_bytes
    dataset.status = DatasetStatus.LISTED
    dataset.listed_at = now
    dataset.updated_at = now
    session.add(dataset)
    return dataset


def delist(session: Session, *, actor: User, dataset_id: str) -> tuple[Dataset, str | None]:
    """Withdraw and crypto-shred: the wrapped data key is destroyed, so the ciphertext is
    noise. Returns the storage name whose file the caller deletes after committing."""
    lock_dataset_row(session, dataset_id)
    dataset = get_own_dataset(session, actor=actor, dataset_id=dataset_id)
    if dataset.status is DatasetStatus.DELISTED:
        return dataset, None
    storage_name = dataset.storage_name
    now = utcnow()
    dataset.wrapped_key = None
    dataset.storage_name = None
    dataset.status = DatasetStatus.DELISTED
    dataset.delisted_at = now
    dataset.updated_at = now
    session.add(dataset)
    return dataset, storage_name


@dataclass(frozen=True)
class CatalogPage:
    items: list[Dataset]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))


def search(
    session: Session,
    *,
    actor: User,
    q: str | None = None,
    tag: str | None = None,
    page: int = 1,
    page_size: int = 20,
    mine: bool = False,
) -> CatalogPage:
    """Listed datasets matching every word of ``q`` (title, description, tags) and ``tag``;
    with ``mine``, the caller's own datasets in any status."""
    statement = select(Dataset)
    if mine:
        statement = datasets_owned_by(statement, actor)
    else:
        statement = statement.where(Dataset.status == DatasetStatus.LISTED)
    if tag:
        tagged = select(DatasetTag.dataset_id).where(DatasetTag.tag == tag.strip().lower())
        statement = statement.where(col(Dataset.id).in_(tagged))
    for word in (q or "").split()[:10]:
        pattern = f"%{_escape_like(word.lower())}%"
        tag_match = select(DatasetTag.dataset_id).where(
            col(DatasetTag.tag).like(pattern, escape="\\")
        )
        statement = statement.where(
            or_(
                func.lower(Dataset.title).like(pattern, escape="\\"),
                func.lower(Dataset.description).like(pattern, escape="\\"),
                col(Dataset.id).in_(tag_match),
            )
        )
    # The page and the total in one statement (a window count over the matches, taken before
    # LIMIT); only a page past the end, which has no row to carry it, counts separately.
    rows = session.execute(
        statement.add_columns(func.count().over())
        .order_by(col(Dataset.created_at).desc(), col(Dataset.id))
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    items = [row[0] for row in rows]
    if rows:
        total = rows[0][1]
    else:
        total = session.exec(select(func.count()).select_from(statement.subquery())).one()
    return CatalogPage(items=items, total=int(total), page=page, page_size=page_size)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def tags_of(session: Session, dataset_ids: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {i: [] for i in dataset_ids}
    if dataset_ids:
        rows = session.exec(
            select(DatasetTag)
            .where(col(DatasetTag.dataset_id).in_(dataset_ids))
            .order_by(col(DatasetTag.tag))
        ).all()
        for row in rows:
            found[row.dataset_id].append(row.tag)
    return found


class BudgetProvider(Protocol):
    def __call__(self, session: Session, dataset: Dataset, *, accountant: str = ...) -> Budget: ...


class BudgetsProvider(Protocol):
    def __call__(
        self, session: Session, datasets: list[Dataset], *, accountant: str = ...
    ) -> dict[str, Budget]: ...


_budget_provider: BudgetProvider | None = None
_budgets_provider: BudgetsProvider | None = None


def provide_budget(provider: BudgetProvider, many: BudgetsProvider | None = None) -> None:
    """Name the function that reads a dataset's budget: ``market.trading.budget.budget_of``,
    registered by ``market.trading.init_services`` (the catalog imports no trading), and
    the one that reads a page of them at once (``budgets_of``)."""
    global _budget_provider, _budgets_provider
    _budget_provider = provider
    _budgets_provider = many


def budget_of(session: Session, dataset: Dataset, *, accountant: str = "rdp") -> Budget:
    """The dataset's privacy budget, as trading composes it (``market.trading.budget``)."""
    if _budget_provider is None:
        raise RuntimeError("no budget provider: market.trading.init_services was not called")
    return _budget_provider(session, dataset, accountant=accountant)


def schema_summary(schema: dict[str, Any]) -> SchemaSummary:
    """The schema in a few numbers (catalog pages list these, not whole schemas)."""
    image = schema.get("image")
    if isinstance(image, dict):
        return SchemaSummary(
            columns=None,
            numeric_columns=None,
            categorical_columns=None,
            categories=None,
            image_shape=list(image.get("shape") or []),
            classes=len(image.get("class_names") or []),
        )
    columns = schema.get("columns") or []
    categorical = [c for c in columns if c.get("type") == "categorical"]
    return SchemaSummary(
        columns=len(columns),
        numeric_columns=len(columns) - len(categorical),
        categorical_columns=len(categorical),
        categories=sum(len(c.get("categories") or []) for c in categorical),
        image_shape=None,
        classes=0,
    )


def summaries(session: Session, datasets: list[Dataset]) -> list[DatasetPublic]:
    """The catalog lists' view of a page of listings (``to_public(summary_only=True)``),
    their tags and budgets read for the whole page at once, not per listing."""
    ids = [d.id for d in datasets]
    tags = tags_of(session, ids)
    budgets = _budgets_provider(session, datasets) if _budgets_provider is not None and ids else {}
    return [
        to_public(session, d, tags[d.id], summary_only=True, budget=budgets.get(d.id))
        for d in datasets
    ]


def to_public(
    session: Session,
    dataset: Dataset,
    tags: list[str] | None = None,
    *,
    summary_only: bool = False,
    budget: Budget | None = None,
) -> DatasetPublic:
    """The public view of a listing; ``summary_only`` (catalog lists) leaves out the schema
    itself (``columns``/``image`` null) and keeps its ``schema_summary``; ``budget`` when
    the caller already read it."""
    if tags is None:
        tags = tags_of(session, [dataset.id])[dataset.id]
    schema = dataset.data_schema
    summary = schema_summary(schema)
    if dataset.label is not None:
        for column in schema.get("columns") or []:
            if column.get("name") == dataset.label:
                summary.classes = len(column.get("categories") or [])
    return DatasetPublic.model_validate(
        {
            "id": dataset.id,
            "owner_id": dataset.owner_id,
            "status": dataset.status,
            "title": dataset.title,
            "description": dataset.description,
            "licence": dataset.licence,
            "tags": tags,
            "format": dataset.format,
            "label": dataset.label,
            "columns": None if summary_only else schema.get("columns"),
            "trim_spaces": schema.get("trim_spaces", False),
            "missing_values": schema.get("missing_values", []),
            "image": None if summary_only else schema.get("image"),
            "schema_summary": summary,
            "rows": dataset.rows,
            "budget": budget if budget is not None else budget_of(session, dataset),
            "price": Price(
                per_run=str(from_minor(dataset.price_per_run_minor, dataset.currency)),
                per_epsilon=str(from_minor(dataset.price_per_epsilon_minor, dataset.currency)),
                currency=dataset.currency,
            ),
            "created_at": dataset.created_at,
            "listed_at": dataset.listed_at,
        }
    )


def referenced_files(session: Session) -> set[str]:
    names = session.exec(select(Dataset.storage_name).where(col(Dataset.storage_name).is_not(None)))
    return {name for name in names if name}


def discard_draft(session: Session, *, actor: User, dataset_id: str) -> None:
    """Remove a draft the web form created when its file was refused (nothing stays behind)."""
    dataset = get_own_dataset(session, actor=actor, dataset_id=dataset_id)
    if dataset.status is DatasetStatus.DRAFT:
        session.delete(dataset)
