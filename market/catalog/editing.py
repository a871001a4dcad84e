"""Editing a listing: its words, tags, licence and prices, and raising its total budget.

Only the owner edits, under the dataset row's lock, in the caller's transaction with its
audit entries. The schema, the file, delta and the per-run cap stay as listed (they are what
was checked against the rows). The total budget may only grow, never shrink below what is
committed: a raise is its own audit entry (``dataset.budget_raised``, old and new total),
because it changes how much privacy the owner gives away in all.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, delete

from market.accounts.models import User
from market.audit import log as audit
from market.catalog import services as catalog
from market.catalog.models import DatasetStatus, DatasetTag
from market.catalog.schemas import Tag
from market.config import Settings
from market.db import utcnow
from market.errors import Conflict, NotFound, ValidationFailed
from market.money import to_minor


class ListingEdit(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    licence: str = Field(min_length=1, max_length=64)
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    per_run: Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=3)]
    per_epsilon: Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=3)]
    epsilon_total: float = Field(gt=0, le=100)


def edit_listing(
    session: Session, *, actor: User, dataset_id: str, edit: ListingEdit, settings: Settings
) -> dict[str, Any]:
    """Apply ``edit``; returns the fields that changed (old, new)."""
    dataset = catalog.get_own_dataset(session, actor=actor, dataset_id=dataset_id)
    locked = catalog.lock_dataset_row(session, dataset.id)
    if locked is None:
        raise NotFound(f"dataset {dataset_id} not found")
    dataset = locked
    if dataset.status is DatasetStatus.DELISTED:
        raise Conflict("a delisted dataset cannot be edited")
    if edit.epsilon_total < dataset.epsilon_total:
        raise ValidationFailed(
            f"the total budget can only be raised (it is {dataset.epsilon_total:g})",
            details={"field": "epsilon_total"},
        )
    if edit.epsilon_total < dataset.max_epsilon_per_run:
        raise ValidationFailed(
            "the total budget cannot be below the per-run cap", details={"field": "epsilon_total"}
        )
    try:
        per_run = to_minor(edit.per_run, dataset.currency)
        per_epsilon = to_minor(edit.per_epsilon, dataset.currency)
    except ValueError as exc:
        raise ValidationFailed(str(exc), details={"field": "price"}) from exc
    old_tags = sorted(catalog.tags_of(session, [dataset.id]).get(dataset.id, []))
    new_tags = sorted(set(edit.tags))
    changes: dict[str, Any] = {}
    for name, new in (
        ("title", edit.title),
        ("description", edit.description),
        ("licence", edit.licence),
        ("price_per_run_minor", per_run),
        ("price_per_epsilon_minor", per_epsilon),
    ):
        old = getattr(dataset, name)
        if old != new:
            changes[name] = {"old": old, "new": new}
            setattr(dataset, name, new)
    if new_tags != old_tags:
        changes["tags"] = {"old": old_tags, "new": new_tags}
        session.exec(delete(DatasetTag).where(col(DatasetTag.dataset_id) == dataset.id))
        for tag in new_tags:
            session.add(DatasetTag(dataset_id=dataset.id, tag=tag))
    raised = edit.epsilon_total > dataset.epsilon_total
    if raised:
        audit.record(
            session,
            settings,
            kind="dataset.budget_raised",
            subject=dataset.id,
            actor_id=actor.id,
            data={"epsilon_total_old": dataset.epsilon_total, "epsilon_total": edit.epsilon_total},
        )
        changes["epsilon_total"] = {"old": dataset.epsilon_total, "new": edit.epsilon_total}
        dataset.epsilon_total = edit.epsilon_total
    if changes:
        dataset.updated_at = utcnow()
        session.add(dataset)
        audit.record(
            session,
            settings,
            kind="dataset.edited",
            subject=dataset.id,
            actor_id=actor.id,
            data={"fields": sorted(changes)},
        )
    return changes
