"""Monthly statements: the exact terms an account accrued in a month, rounded once.

What accrues (exact decimal strings, ``costing.accrual_digits`` places, never rounded per
run; ``market.money``):

- charges, to a buyer: each delivered run's measured terms (compute, energy, environment,
  royalty, platform fee, from its cost receipt, in the month it finished) and each shared
  model it acquired (the price, in the month of the acquisition);
- credits, to an owner: the royalty term of every delivered run on its datasets, and the
  owner's share of every acquisition of a model trained on them; to a publisher: its share
  of every acquisition of the models it shared.

The statement reads them from the receipts and acquisitions where they are stored (one
source of truth, nothing copied that could drift), sums each line exactly, and rounds once
(``market.money.round_statement``): the total is the exact sum rounded half to even, and the
printed lines add up to it. Months are calendar months in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlmodel import Session, col, select

from market.accounts.models import User
from market.api.schemas import ID_MAX
from market.catalog.models import Dataset
from market.errors import InvalidRequest, NotFound, PermissionDenied
from market.money import from_minor, money_context, plain, round_statement
from market.sharing.models import Acquisition
from market.trading.models import Run, RunStatus
from market.visibility import is_overseer

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

CHARGE_LINES = (
    ("compute", "Compute"),
    ("energy", "Energy"),
    ("environment", "Environment (carbon price)"),
    ("royalty", "Royalties to data owners"),
    ("platform_fee", "Platform fee"),
    ("model_acquisitions", "Shared models acquired"),
)
CREDIT_LINES = (
    ("run_royalties", "Royalties from runs on your data"),
    ("model_royalties", "Royalties from shared models trained on your data"),
    ("publisher_shares", "Your share of sales of models you shared"),
)
RUN_TERMS = ("compute", "energy", "environment", "royalty", "platform_fee")


class InvalidMonth(InvalidRequest):
    code = "invalid_month"


@dataclass(frozen=True)
class Line:
    kind: str
    label: str
    items: int
    exact: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Section:
    lines: list[Line]
    exact: Decimal
    total: Decimal


@dataclass(frozen=True)
class Statement:
    account_id: int
    email: str
    month: str
    currency: str
    start: datetime
    end: datetime
    charges: Section
    credits: Section

    @property
    def balance(self) -> Decimal:
        """Credits minus charges, both as printed."""
        return self.credits.total - self.charges.total

    def to_dict(self) -> dict[str, Any]:
        def section(s: Section) -> dict[str, Any]:
            return {
                "lines": [
                    {
                        "kind": line.kind,
                        "label": line.label,
                        "items": line.items,
                        "exact": str(line.exact),
                        "amount": plain(line.amount),
                    }
                    for line in s.lines
                ],
                "exact": str(s.exact),
                "total": str(s.total),
            }

        return {
            "account_id": self.account_id,
            "month": self.month,
            "currency": self.currency,
            "period": {"start": self.start.isoformat(), "end": self.end.isoformat()},
            "charges": section(self.charges),
            "credits": section(self.credits),
            "balance": str(self.balance),
        }


def month_bounds(
    month: str | None, *, now: datetime | None = None
) -> tuple[str, datetime, datetime]:
    """("YYYY-MM", first instant, first instant of the next month), UTC; default this month."""
    if month is None:
        current = now or datetime.now(UTC)
        month = f"{current.year:04d}-{current.month:02d}"
    found = MONTH.match(month)
    if found is None:
        raise InvalidMonth("month must be YYYY-MM", details={"month": month})
    year, number = int(found.group(1)), int(found.group(2))
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=UTC)
    return month, start, end


class _Accrual:
    def __init__(self, kinds: tuple[tuple[str, str], ...]) -> None:
        self.kinds = kinds
        self.sums: dict[str, Decimal] = {k: Decimal(0) for k, _ in kinds}
        self.counts: dict[str, int] = {k: 0 for k, _ in kinds}
        self._ctx = money_context()

    def add(self, kind: str, amount: Any) -> None:
        value = Decimal(str(amount))
        if value == 0:
            return
        self.sums[kind] = self._ctx.add(self.sums[kind], value)
        self.counts[kind] += 1

    def section(self, currency: str) -> Section:
        kept = [(k, label) for k, label in self.kinds if self.counts[k]]
        exact = [self.sums[k] for k, _ in kept]
        printed, total = round_statement(exact, currency)
        lines = [
            Line(kind=k, label=label, items=self.counts[k], exact=e, amount=p)
            for (k, label), e, p in zip(kept, exact, printed, strict=True)
        ]
        return Section(lines=lines, exact=sum(exact, Decimal(0)), total=total)


def _amount(term: Any) -> Any:
    return term.get("amount", "0") if isinstance(term, dict) else (term or "0")


def statement(
    session: Session,
    *,
    actor: User,
    currency: str,
    month: str | None = None,
    account_id: int | None = None,
) -> Statement:
    """An account's statement for a month: its own, or any account's for auditors/admins."""
    target_id = actor.id if account_id is None else account_id
    assert target_id is not None
    if target_id != actor.id and not is_overseer(actor):
        raise PermissionDenied("only auditors and admins read another account's statement")
    # An id past the column's range names no account (PostgreSQL would refuse the query).
    account = session.get(User, target_id) if 0 < target_id <= ID_MAX else None
    if account is None:
        raise NotFound(f"no account {target_id}", details={"account_id": target_id})
    label, start, end = month_bounds(month)

    charges, credits = _Accrual(CHARGE_LINES), _Accrual(CREDIT_LINES)
    in_month = (col(Run.finished_at) >= start) & (col(Run.finished_at) < end)
    delivered = (col(Run.status) == RunStatus.SUCCEEDED) & col(Run.cost_receipt).is_not(None)
    for receipt in session.exec(
        select(Run.cost_receipt).where(Run.buyer_id == target_id, delivered, in_month)
    ).all():
        measured = (receipt or {}).get("measured") or {}
        for term in RUN_TERMS:
            charges.add(term, _amount(measured.get(term)))
    for receipt in session.exec(
        select(Run.cost_receipt)
        .join(Dataset, col(Dataset.id) == Run.dataset_id)
        .where(Dataset.owner_id == target_id, delivered, in_month)
    ).all():
        credits.add(
            "run_royalties", _amount(((receipt or {}).get("measured") or {}).get("royalty"))
        )

    acquired_in_month = (col(Acquisition.created_at) >= start) & (col(Acquisition.created_at) < end)
    for acquisition in session.exec(
        select(Acquisition).where(
            acquired_in_month,
            (col(Acquisition.buyer_id) == target_id)
            | (col(Acquisition.owner_id) == target_id)
            | (col(Acquisition.publisher_id) == target_id),
        )
    ).all():
        if acquisition.buyer_id == target_id:
            charges.add(
                "model_acquisitions", from_minor(acquisition.price_minor, acquisition.currency)
            )
        if acquisition.owner_id == target_id:
            credits.add("model_royalties", acquisition.owner_amount)
        if acquisition.publisher_id == target_id:
            credits.add("publisher_shares", acquisition.publisher_amount)

    return Statement(
        account_id=target_id,
        email=account.email,
        month=label,
        currency=currency,
        start=start,
        end=end,
        charges=charges.section(currency),
        credits=credits.section(currency),
    )
