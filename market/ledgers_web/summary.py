"""What the ledger pages show, computed from market.trading.ledgers' rows (views stay thin).

Money is summed as Decimal and per currency, never as float; physical quantities (kWh, kg,
seconds) are Decimal sums of the receipts' exact strings. Floats appear only on the way into
a chart.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlmodel import Session, col, select

from market.accounts.models import User
from market.catalog.models import Dataset
from market.errors import PermissionDenied
from market.trading import ledgers
from market.trading.budget import COUNTED, budget_of
from market.trading.models import PrivacyRelease
from market.visibility import (
    datasets_owned_by,
    ledger_datasets_visible_to,
    may_list_privacy_ledgers,
)
from privacy.records import MechanismRecord

# The API's CSV columns for the privacy ledger (market.trading.ledger_api).
PRIVACY_CSV_COLUMNS = [
    "id",
    "run_id",
    "state",
    "epsilon",
    "epsilon_after",
    "created_at",
    "updated_at",
]
MONEY_TERMS = ("compute", "energy", "environment", "royalty", "platform_fee", "total")
QUANTITIES = ("seconds", "energy_kwh", "emissions_kg")
TERM_LABELS = {
    "compute": "Compute",
    "energy": "Energy",
    "environment": "Environment",
    "royalty": "Royalty",
    "platform_fee": "Platform fee",
}


def decimal(value: Any) -> Decimal:
    """A receipt's value as Decimal: '—' cells (None, 'None', garbage) count as zero."""
    if value is None or isinstance(value, float):
        return Decimal(0) if value is None else Decimal(str(value))
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


# --- privacy ledger --------------------------------------------------------------------


def mechanism_summary(records: Sequence[MechanismRecord]) -> list[str]:
    """One readable line per accounted mechanism of a release."""
    lines = []
    for record in records:
        if record["mechanism"] == "subsampled_gaussian":
            lines.append(
                f"DP-SGD: noise multiplier {record['noise_multiplier']:.4g}, "
                f"sample rate {record['sample_rate']:.4g}, {record['steps']} steps"
            )
        elif record["mechanism"] == "gaussian":
            lines.append(
                f"Gaussian: σ {record['sigma']:.4g}, sensitivity "
                f"{record['sensitivity']:.4g}, × {record['count']}"
            )
        elif record["mechanism"] == "laplace":
            lines.append(
                f"Laplace: scale {record['scale']:.4g}, sensitivity "
                f"{record['sensitivity']:.4g}, × {record['count']}"
            )
        else:  # not a known mechanism: a row written by something else, shown as is
            lines.append(str(record.get("mechanism")))
    return lines


def privacy_datasets(
    session: Session, *, actor: User, accountant: str = "rdp"
) -> list[dict[str, Any]]:
    """The datasets whose privacy ledger ``actor`` may read, with their release counts and
    the epsilon committed (composed by ``accountant``) against each total."""
    if not may_list_privacy_ledgers(actor):
        raise PermissionDenied("the privacy ledger is for auditors and dataset owners")
    statement = ledger_datasets_visible_to(select(Dataset).order_by(col(Dataset.created_at)), actor)
    datasets = list(session.exec(statement).all())
    counts: dict[str, int] = defaultdict(int)
    for dataset_id in session.exec(
        select(PrivacyRelease.dataset_id).where(
            col(PrivacyRelease.dataset_id).in_([d.id for d in datasets])
        )
    ).all():
        counts[dataset_id] += 1
    return [
        {
            "id": d.id,
            "title": d.title,
            "status": d.status.value,
            "owner_id": d.owner_id,
            "epsilon_total": d.epsilon_total,
            "epsilon_committed": budget_of(session, d, accountant=accountant).epsilon_spent,
            "releases": counts[d.id],
        }
        for d in datasets
    ]


def privacy_json(dataset: Dataset, releases: list[PrivacyRelease], accountant: str) -> dict:
    """The API's JSON (``GET /api/v1/ledger/privacy``), built from the same rows."""
    from market.trading.ledger_api import PrivacyLedgerOut

    out = PrivacyLedgerOut(
        dataset_id=dataset.id,
        epsilon_total=dataset.epsilon_total,
        delta=dataset.delta,
        accountant=accountant,
        releases=[ledgers.release_row(r) for r in releases],
    )
    return out.model_dump(mode="json")


def privacy_csv(releases: list[PrivacyRelease]) -> str:
    return ledgers.to_csv([ledgers.release_row(r) for r in releases], PRIVACY_CSV_COLUMNS)


def release_rows(releases: list[PrivacyRelease]) -> list[dict[str, Any]]:
    """The page's table: every release, and whether it counts against the budget."""
    rows = []
    point = 0
    for r in releases:
        counts = r.state in COUNTED
        point += counts
        rows.append(
            {
                **ledgers.release_row(r),
                "mechanisms": mechanism_summary(r.records),
                "counts": counts,
                # The chart plots counted releases 1, 2, 3...: the table numbers them alike.
                "point": point if counts else None,
            }
        )
    return rows


def counted_epsilons(releases: list[PrivacyRelease]) -> list[float]:
    """The composed epsilon after each release that still counts (reserved or spent)."""
    return [r.epsilon_after for r in releases if r.state in COUNTED]


# --- cost ledger -----------------------------------------------------------------------


@dataclass
class Totals:
    """Sums over a group of cost rows: quantities, and money per currency."""

    runs: int = 0
    quantities: dict[str, Decimal] = field(
        default_factory=lambda: dict.fromkeys(QUANTITIES, Decimal(0))
    )
    money: dict[str, dict[str, Decimal]] = field(default_factory=dict)

    def add(self, row: dict[str, Any]) -> None:
        self.runs += 1
        for name in QUANTITIES:
            self.quantities[name] += decimal(row.get(name))
        terms = self.money.setdefault(
            str(row.get("currency")), dict.fromkeys(MONEY_TERMS, Decimal(0))
        )
        for term in MONEY_TERMS:
            terms[term] += decimal(row.get(term))


def month_of(row: dict[str, Any]) -> str:
    finished = row.get("finished_at")
    return str(finished)[:7] if finished else "—"


def group_totals(rows: list[dict[str, Any]], key: str) -> list[tuple[str, Totals]]:
    """Totals per value of ``key`` ('dataset_id', 'owner_id', 'buyer_id' or 'month')."""
    groups: dict[str, Totals] = {}
    for row in rows:
        value = month_of(row) if key == "month" else str(row.get(key))
        groups.setdefault(value, Totals()).add(row)
    return sorted(groups.items())


def cost_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    overall = Totals()
    for row in rows:
        overall.add(row)
    return {
        "overall": overall,
        "by": {
            "dataset": group_totals(rows, "dataset_id"),
            "owner": group_totals(rows, "owner_id"),
            "buyer": group_totals(rows, "buyer_id"),
            "month": group_totals(rows, "month"),
        },
    }


def cost_json(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The API's JSON (``GET /api/v1/ledger/costs``): the rows and the terms' sums."""
    from market.trading.ledger_api import CostLedgerOut

    totals = {
        term: str(
            sum((Decimal(r[term]) for r in rows if r[term] not in (None, "None")), Decimal(0))
        )
        for term in MONEY_TERMS
    }
    return CostLedgerOut(items=rows, totals=totals).model_dump(mode="json")


def cost_csv(rows: list[dict[str, Any]]) -> str:
    return ledgers.to_csv(rows, ledgers.COST_COLUMNS)


def dataset_titles(session: Session, dataset_ids: set[str]) -> dict[str, str]:
    found = session.exec(
        select(Dataset.id, Dataset.title).where(col(Dataset.id).in_(dataset_ids))
    ).all()
    return dict(found)


def cost_series(rows: list[dict[str, Any]]) -> tuple[list[Any], list[tuple[str, str, list]]]:
    """Times and per-run values for the over-time chart (rows without a time are skipped)."""
    from datetime import datetime

    timed = [r for r in rows if r.get("finished_at")]
    times = [datetime.fromisoformat(r["finished_at"]) for r in timed]
    series: list[tuple[str, str, list]] = [
        ("energy (kWh)", "series-energy", [decimal(r["energy_kwh"]) for r in timed]),
        ("emissions (kg CO₂e)", "series-emissions", [decimal(r["emissions_kg"]) for r in timed]),
    ]
    for currency in sorted({str(r["currency"]) for r in timed}):
        series.append(
            (
                f"paid ({currency})",
                f"series-money-{currency}",
                [decimal(r["total"]) if r["currency"] == currency else Decimal(0) for r in timed],
            )
        )
    return times, series


# --- owner dashboard -------------------------------------------------------------------


def owner_dashboard(
    session: Session, *, actor: User, rows: list[dict[str, Any]], accountant: str
) -> list[dict[str, Any]]:
    """Per owned dataset: runs, revenue (royalties, per currency), energy, emissions and the
    epsilon committed (composed by the accountant) against the total."""
    by_dataset = dict(group_totals(rows, "dataset_id"))
    datasets = session.exec(
        datasets_owned_by(select(Dataset), actor).order_by(col(Dataset.created_at))
    ).all()
    out = []
    for dataset in datasets:
        totals = by_dataset.get(dataset.id, Totals())
        budget = budget_of(session, dataset, accountant=accountant)
        out.append(
            {
                "id": dataset.id,
                "title": dataset.title,
                "status": dataset.status.value,
                "totals": totals,
                "revenue": {c: terms["royalty"] for c, terms in sorted(totals.money.items())},
                "epsilon_committed": budget.epsilon_spent,
                "epsilon_total": budget.epsilon_total,
            }
        )
    return out


# --- run page ----------------------------------------------------------------------------


def receipt_terms(receipt: dict[str, Any] | None) -> tuple[list[tuple[str, Decimal]], str] | None:
    """A cost receipt's measured money terms (label, amount) and currency, or None."""
    measured = (receipt or {}).get("measured") or {}
    terms = []
    currency = ""
    for term, label in TERM_LABELS.items():
        value = measured.get(term)
        if isinstance(value, dict):
            currency = currency or str(value.get("currency", ""))
            value = value.get("amount")
        if value is None:
            return None
        terms.append((label, decimal(value)))
    return terms, currency or str(measured.get("currency", ""))
