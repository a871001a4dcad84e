"""The two ledgers as rows: every privacy release of a dataset, every run's measured costs.

Scoping (market.visibility's rules): auditors and admins read everything; owners read their
datasets' releases and the costs of runs on their data; researchers read the costs of their
own runs.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlmodel import Session, col, select

from market.accounts.models import User
from market.catalog.models import Dataset
from market.errors import NotFound, PermissionDenied
from market.trading.models import PrivacyRelease, Run, RunStatus
from market.visibility import may_see_ledger, runs_visible_to

COST_COLUMNS = [
    "run_id",
    "dataset_id",
    "buyer_id",
    "owner_id",
    "finished_at",
    "method",
    "seconds",
    "energy_kwh",
    "emissions_kg",
    "sci_kg_per_run",
    "compute",
    "energy",
    "environment",
    "royalty",
    "platform_fee",
    "total",
    "currency",
]


def privacy_ledger(
    session: Session, *, actor: User, dataset_id: str
) -> tuple[Dataset, list[PrivacyRelease]]:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id}")
    if not may_see_ledger(actor, dataset):
        raise PermissionDenied("the privacy ledger is for auditors and the dataset's owner")
    releases = session.exec(
        select(PrivacyRelease)
        .where(PrivacyRelease.dataset_id == dataset_id)
        .order_by(col(PrivacyRelease.id))
    ).all()
    return dataset, list(releases)


def release_row(release: PrivacyRelease) -> dict[str, Any]:
    return {
        "id": release.id,
        "run_id": release.run_id,
        "state": release.state.value,
        "records": release.records,
        "epsilon": release.epsilon,
        "epsilon_after": release.epsilon_after,
        "created_at": release.created_at.isoformat(),
        "updated_at": release.updated_at.isoformat(),
    }


def cost_rows(session: Session, *, actor: User) -> list[dict[str, Any]]:
    """The succeeded runs' cost receipts the actor may see (``runs_visible_to``), as rows."""
    statement = runs_visible_to(
        select(Run, Dataset)
        .join(Dataset, col(Dataset.id) == col(Run.dataset_id))
        .where(Run.status == RunStatus.SUCCEEDED)
        .order_by(col(Run.finished_at)),
        actor,
    )
    rows = []
    for run, dataset in session.exec(statement).all():
        receipt = run.cost_receipt or {}
        measured = receipt.get("measured", {})
        measurement = receipt.get("measurement", {})

        def amount(term: str, measured: dict[str, Any] = measured) -> str:
            value = measured.get(term)
            return str(value.get("amount")) if isinstance(value, dict) else str(value)

        rows.append(
            {
                "run_id": run.id,
                "dataset_id": run.dataset_id,
                "buyer_id": run.buyer_id,
                "owner_id": dataset.owner_id,
                "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                "method": measurement.get("method"),
                "seconds": measured.get("seconds"),
                "energy_kwh": measured.get("energy_kwh"),
                "emissions_kg": measured.get("emissions_kg"),
                "sci_kg_per_run": measured.get("sci_kg_per_run"),
                "compute": amount("compute"),
                "energy": amount("energy"),
                "environment": amount("environment"),
                "royalty": amount("royalty"),
                "platform_fee": amount("platform_fee"),
                "total": amount("total"),
                "currency": run.currency,
            }
        )
    return rows


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
