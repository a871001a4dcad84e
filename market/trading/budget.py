"""A dataset's privacy budget: the composition of its reserved and spent releases.

Purchases lock the dataset row first (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the
``BEGIN IMMEDIATE`` of every write transaction already serialises writers), so two purchases
can never both see the budget before the other's reservation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from market.catalog.models import Dataset
from market.catalog.schemas import Budget
from market.catalog.services import lock_dataset_row
from market.errors import NotFound
from market.trading.models import PrivacyRelease, ReleaseState

if TYPE_CHECKING:
    from privacy.accounting import PrivacyLedger

COUNTED = (ReleaseState.RESERVED, ReleaseState.SPENT)


def lock_dataset(session: Session, dataset_id: str) -> Dataset:
    dataset = lock_dataset_row(session, dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id}")
    return dataset


def ledger_for(session: Session, dataset_id: str, *, accountant: str) -> PrivacyLedger:
    # Imported here: Opacus (and torch) take seconds to import, and only budget questions
    # need them, not every process that imports the marketplace.
    from privacy.accounting import PrivacyLedger

    rows = session.exec(
        select(PrivacyRelease.records).where(
            PrivacyRelease.dataset_id == dataset_id, col(PrivacyRelease.state).in_(COUNTED)
        )
    ).all()
    ledger = PrivacyLedger(accountant=accountant)
    for records in rows:
        ledger.extend(records)
    return ledger


def committed_epsilon(session: Session, dataset: Dataset, *, accountant: str) -> float:
    """Epsilon of everything sold so far (reserved or spent) at the dataset's delta."""
    return ledger_for(session, dataset.id, accountant=accountant).epsilon(delta=dataset.delta)


def budget_of(session: Session, dataset: Dataset, *, accountant: str = "rdp") -> Budget:
    """The dataset's privacy budget: ``epsilon_spent`` composes every release sold so far
    (reserved for pending runs or spent), with a real accountant, at the dataset's delta.
    The catalog shows it through ``market.catalog.services.budget_of``."""
    spent = committed_epsilon(session, dataset, accountant=accountant)
    return Budget(
        epsilon_total=dataset.epsilon_total,
        delta=dataset.delta,
        epsilon_spent=spent,
        epsilon_remaining=max(0.0, dataset.epsilon_total - spent),
        max_epsilon_per_run=dataset.max_epsilon_per_run,
    )
