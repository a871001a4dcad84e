"""A dataset's privacy budget: the composition of its reserved and spent releases.

Purchases lock the dataset row first (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the
``BEGIN IMMEDIATE`` of every write transaction already serialises writers), so two purchases
can never both see the budget before the other's reservation.

Kept incrementally, so a budget check costs the same at ten releases as at ten thousand:

- every ``PrivacyRelease`` row stores the RDP curve of its records (``rdp_curve``, at
  ``privacy.accounting.RDP_ORDERS``), computed once when the row is written;
- ``PrivacyBudgetState`` holds, per dataset, the sum of its *spent* releases' curves and
  their merged records (what the PRV and PLD accountants compose); spending only ever adds;
- the *reserved* part is summed, at each check, from the dataset's active reservations (as
  many as it has pending runs), so releasing a reservation subtracts nothing and is exact.

A check (``ledger_for``) is therefore one statement: the state row and the active
reservations, plus the planned run's own curve. The state is written by a ``before_flush``
hook on every session (``_keep_budget_states``), so whatever writes a release (a purchase,
a delivery, a failure, the reaper, a seed script) updates it in the same transaction; a
change the increment cannot express exactly (a spent release changed or deleted) marks the
state for re-derivation instead of guessing. ``rederive_ledger`` composes from the release
rows' records alone, as auditors do; ``tests/trading/test_budget_state.py`` checks that the
two agree after random sequences of reservations, spends, releases and failures.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from market.catalog.models import Dataset
from market.catalog.schemas import Budget
from market.catalog.services import lock_dataset_row
from market.db import utcnow
from market.errors import NotFound
from market.trading.models import PrivacyBudgetState, PrivacyRelease, ReleaseState

if TYPE_CHECKING:
    import numpy as np

    from privacy.accounting import PrivacyLedger

COUNTED = (ReleaseState.RESERVED, ReleaseState.SPENT)


def lock_dataset(session: Session, dataset_id: str) -> Dataset:
    dataset = lock_dataset_row(session, dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id}")
    return dataset


# --- reading ---------------------------------------------------------------------------


def _kept_rows(session: Session, dataset_ids: list[str], *, accountant: str) -> list[Any]:
    """The state rows and active reservations of these datasets, in one statement (so that,
    on PostgreSQL's read committed, a reservation turning into a spend concurrently is seen
    either before or after, never missed)."""
    reserved: Any = sa.select(
        col(PrivacyRelease.dataset_id).label("dataset_id"),
        sa.literal("reserved", sa.String).label("kind"),
        col(PrivacyRelease.records).label("records"),
        col(PrivacyRelease.rdp_curve).label("curve"),
    ).where(
        col(PrivacyRelease.dataset_id).in_(dataset_ids),
        col(PrivacyRelease.state) == ReleaseState.RESERVED,
    )
    spent: Any = sa.select(
        col(PrivacyBudgetState.dataset_id),
        sa.literal("spent", sa.String),
        # The merged records grow with the distinct mechanisms: read only where needed.
        sa.cast(sa.null(), sa.JSON)
        if accountant == "rdp"
        else col(PrivacyBudgetState.spent_records),
        col(PrivacyBudgetState.spent_rdp),
    ).where(col(PrivacyBudgetState.dataset_id).in_(dataset_ids))
    return list(session.execute(sa.union_all(reserved, spent)).all())


def _kept_ledger(rows: list[Any], *, accountant: str) -> PrivacyLedger | None:
    """One dataset's ledger from its ``_kept_rows``; None where no usable state is kept."""
    from privacy.accounting import PrivacyLedger, curve_from_json, rdp_curve_of

    kept = [row for row in rows if row.kind == "spent"]
    spent_curve = curve_from_json(kept[0].curve) if kept else None
    if spent_curve is None:
        return None
    active = [row for row in rows if row.kind == "reserved"]
    if accountant != "rdp":
        records = list(kept[0].records or [])
        for row in active:
            records.extend(row.records)
        return PrivacyLedger(records, accountant=accountant)
    total = spent_curve
    for row in active:
        curve = curve_from_json(row.curve)
        total = total + (curve if curve is not None else rdp_curve_of(row.records))
    return PrivacyLedger(accountant="rdp", rdp=total)


def ledger_for(session: Session, dataset_id: str, *, accountant: str) -> PrivacyLedger:
    """The dataset's committed releases (reserved or spent) as a ledger to ask questions of.

    Read from the kept state: with the ``rdp`` accountant the ledger carries the composed
    curve only; with ``prv`` or ``pld`` it carries the merged records. Falls back to
    ``rederive_ledger`` where no state is kept (a dataset that never sold a run, a database
    from before the state, or after a change the increment could not express).
    """
    # Imported lazily (inside the helpers too): Opacus (and torch) take seconds to import,
    # and only budget questions need them, not every process that imports the marketplace.
    ledger = _kept_ledger(
        _kept_rows(session, [dataset_id], accountant=accountant), accountant=accountant
    )
    if ledger is None:
        return rederive_ledger(session, dataset_id, accountant=accountant)
    return ledger


def budgets_of(
    session: Session, datasets: list[Dataset], *, accountant: str = "rdp"
) -> dict[str, Budget]:
    """``budget_of`` for a page of datasets in two or three statements, not two per dataset
    (the catalog lists show every listing's budget)."""
    from privacy.accounting import PrivacyLedger

    ids = [d.id for d in datasets]
    if not ids:
        return {}
    rows: dict[str, list[Any]] = defaultdict(list)
    for row in _kept_rows(session, ids, accountant=accountant):
        rows[row.dataset_id].append(row)
    ledgers = {i: _kept_ledger(rows[i], accountant=accountant) for i in ids}
    unkept = [i for i, ledger in ledgers.items() if ledger is None]
    if unkept:
        # No state: never sold a run (epsilon 0), or releases from before the state.
        sold = set(
            session.exec(
                select(PrivacyRelease.dataset_id)
                .where(col(PrivacyRelease.dataset_id).in_(unkept))
                .distinct()
            ).all()
        )
        for i in unkept:
            ledgers[i] = (
                rederive_ledger(session, i, accountant=accountant)
                if i in sold
                else PrivacyLedger(accountant=accountant)
            )
    return {
        d.id: _budget(d, ledgers[d.id].epsilon(delta=d.delta))  # type: ignore[union-attr]
        for d in datasets
    }


def rederive_ledger(session: Session, dataset_id: str, *, accountant: str) -> PrivacyLedger:
    """The same ledger composed from every counted release row's records (nothing kept):
    what an auditor derives from the privacy ledger, and the reference the kept state is
    tested against. Reads every row: its cost grows with the history."""
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
    return _budget(dataset, committed_epsilon(session, dataset, accountant=accountant))


def _budget(dataset: Dataset, spent: float) -> Budget:
    return Budget(
        epsilon_total=dataset.epsilon_total,
        delta=dataset.delta,
        epsilon_spent=spent,
        epsilon_remaining=max(0.0, dataset.epsilon_total - spent),
        max_epsilon_per_run=dataset.max_epsilon_per_run,
    )


def kept_spent_curve(session: Session, dataset_id: str) -> np.ndarray | None:
    """The kept composed curve of the dataset's spent releases (None: not kept yet)."""
    from privacy.accounting import curve_from_json

    state = session.get(PrivacyBudgetState, dataset_id)
    return None if state is None else curve_from_json(state.spent_rdp)


# --- keeping ---------------------------------------------------------------------------


@dataclass
class _Change:
    """What one flush does to one dataset's spent releases."""

    spent: list[PrivacyRelease] = field(default_factory=list)  # rows that became spent
    stale: bool = False  # a change the increment cannot express: derive again


@event.listens_for(OrmSession, "before_flush")
def _keep_budget_states(session: OrmSession, _context: Any, _instances: Any) -> None:
    """Store each written release's curve and fold new spends into its dataset's state,
    in the flush (hence the transaction) that writes the release."""
    changes: dict[str, _Change] = defaultdict(_Change)
    for obj in list(session.new):
        if isinstance(obj, PrivacyRelease):
            _store_curve(obj)
            change = changes[obj.dataset_id]
            if obj.state is ReleaseState.SPENT:
                change.spent.append(obj)
    for obj in list(session.dirty):
        if isinstance(obj, PrivacyRelease) and session.is_modified(obj):
            _note_update(obj, changes[obj.dataset_id])
    for obj in list(session.deleted):
        if isinstance(obj, PrivacyRelease) and obj.state is not ReleaseState.RESERVED:
            changes[obj.dataset_id].stale = True
    for dataset_id, change in changes.items():
        _apply(session, dataset_id, change)


def _store_curve(release: PrivacyRelease) -> None:
    from privacy.accounting import curve_to_json, rdp_curve_of

    release.rdp_curve = curve_to_json(rdp_curve_of(release.records))


_UNKNOWN = object()


def _old_value(release: PrivacyRelease, name: str) -> object:
    history = sa.inspect(release).attrs[name].history
    if history.deleted:
        return history.deleted[0]
    if history.unchanged:
        return history.unchanged[0]
    return _UNKNOWN  # set without having been loaded: the old value is not known


def _note_update(release: PrivacyRelease, change: _Change) -> None:
    from privacy.accounting import curve_from_json

    records_changed = sa.inspect(release).attrs["records"].history.has_changes()
    if records_changed or curve_from_json(release.rdp_curve) is None:
        _store_curve(release)
    was = _old_value(release, "state")
    now = release.state
    if was is _UNKNOWN:
        change.stale = True
    elif was is ReleaseState.SPENT or was == ReleaseState.SPENT.value:
        # Spent is final; a spent row rewritten is not an increment.
        if now is not ReleaseState.SPENT or records_changed:
            change.stale = True
    elif now is ReleaseState.SPENT:
        change.spent.append(release)


def _apply(session: OrmSession, dataset_id: str, change: _Change) -> None:
    from privacy.accounting import curve_from_json, curve_to_json, merge_records

    state = _locked_state(session, dataset_id)
    if change.stale:
        state.spent_rdp = None
        state.spent_records = []
        state.spent_releases = 0
    else:
        curve = curve_from_json(state.spent_rdp)
        derived = curve is None
        if curve is None:
            # First write since the state was created or marked stale: derive it from the
            # rows as they stand before this flush (this flush's spends are added below).
            curve, records, count = _derive_spent(session, dataset_id)
        else:
            records, count = list(state.spent_records), state.spent_releases
        for release in change.spent:
            stored = curve_from_json(release.rdp_curve)
            assert stored is not None  # written by the hook, before this
            curve = curve + stored
            records.extend(release.records)
            count += 1
        if derived or change.spent:
            state.spent_rdp = curve_to_json(curve)
            state.spent_records = merge_records(records)
            state.spent_releases = count
    state.updated_at = utcnow()
    session.add(state)


def _locked_state(session: OrmSession, dataset_id: str) -> PrivacyBudgetState:
    """The dataset's state row, created if missing, locked until the transaction ends."""
    values = {"dataset_id": dataset_id, "spent_records": [], "spent_releases": 0}
    table = PrivacyBudgetState
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(
            postgresql.insert(table).values(**values, updated_at=utcnow()).on_conflict_do_nothing()
        )
    elif dialect == "sqlite":
        session.execute(
            sqlite.insert(table).values(**values, updated_at=utcnow()).on_conflict_do_nothing()
        )
    elif session.get(PrivacyBudgetState, dataset_id) is None:  # pragma: no cover - other SQL
        session.execute(sa.insert(table).values(**values, updated_at=utcnow()))
    return session.execute(
        sa.select(PrivacyBudgetState)
        .where(col(PrivacyBudgetState.dataset_id) == dataset_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def _derive_spent(session: OrmSession, dataset_id: str) -> tuple[np.ndarray, list[Any], int]:
    """The spent releases' summed curve, records and count, read from the rows."""
    import numpy as np

    from privacy.accounting import RDP_ORDERS, curve_from_json, rdp_curve_of

    rows = session.execute(
        sa.select(col(PrivacyRelease.records), col(PrivacyRelease.rdp_curve)).where(
            col(PrivacyRelease.dataset_id) == dataset_id,
            col(PrivacyRelease.state) == ReleaseState.SPENT,
        )
    ).all()
    total = np.zeros(len(RDP_ORDERS))
    records: list[Any] = []
    for row_records, row_curve in rows:
        curve = curve_from_json(row_curve)
        total = total + (curve if curve is not None else rdp_curve_of(row_records))
        records.extend(row_records)
    return total, records, len(rows)
