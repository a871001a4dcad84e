"""What the quote page tells a researcher beyond the stored quote: does it still fit now, and
what is the largest epsilon that would.

A quote records whether it fitted when it was made; other purchases may have used the
budget since. The quote page asks the ledger again (the purchase re-checks under the
dataset's lock anyway, so this is advice, never a reservation). When a request does not
fit, the largest epsilon that does is found by bisection: the same epochs and batch size
are planned at a candidate epsilon and composed with the ledger, as the purchase would.
The composed epsilon grows with the run's epsilon, so bisection converges; each step plans
a run (about half a second on this machine), hence few steps and only when needed.

Only public values enter: the listing's row count, the request, and the ledger's records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from market.catalog.models import Dataset
from market.trading import budget
from market.trading.models import Quote

# Bisection steps: the answer is within cap / 2**STEPS of the true largest epsilon (and
# always on the side that fits).
STEPS = 7


@dataclass(frozen=True)
class Fit:
    fits: bool
    epsilon_after: float
    largest_epsilon: float | None  # None: not computed (the request fits, or nothing would)


def _after(ledger: Any, dataset: Dataset, quote: Quote, epsilon: float, settings: Any) -> float:
    from privacy.errors import PlanError
    from privacy.training import plan_run

    planned = quote.plan
    try:
        plan = plan_run(
            rows=int(planned["rows"]),
            epsilon=epsilon,
            delta=float(planned["delta"]),
            epochs=int(planned["epochs"]),
            batch_size=int(planned["batch_size"]),
            max_grad_norm=float(planned["max_grad_norm"]),
            accountant=str(planned["accountant"]),
            **settings.trading.holdout(),
            metrics_fraction=float(planned["metrics_fraction"]),
        )
    except PlanError:
        return math.inf  # too small an epsilon to plan at all: treat as not fitting
    after: float = ledger.epsilon_with(plan.records(), delta=dataset.delta)
    return after


def largest_epsilon(
    session: Session, *, dataset: Dataset, quote: Quote, settings: Any, ledger: Any = None
) -> float | None:
    """The largest epsilon (rounded down to 0.01) that fits the dataset's budget now for the
    quote's epochs and batch size; None when not even 0.01 fits."""
    if ledger is None:
        ledger = budget.ledger_for(session, dataset.id, accountant=settings.trading.accountant)
    high = min(dataset.max_epsilon_per_run, dataset.epsilon_total)
    if _after(ledger, dataset, quote, high, settings) <= dataset.epsilon_total:
        return math.floor(high * 100) / 100
    low = 0.0
    for _ in range(STEPS):
        middle = (low + high) / 2
        if _after(ledger, dataset, quote, middle, settings) <= dataset.epsilon_total:
            low = middle
        else:
            high = middle
    found = math.floor(low * 100) / 100
    return found if found > 0 else None


def fit_now(session: Session, *, quote: Quote, settings: Any, search: bool = True) -> Fit:
    """Whether the quote's plan fits the dataset's budget now, and if not the largest epsilon
    that would (with ``search``)."""
    from privacy.training import RunPlan

    dataset = session.get(Dataset, quote.dataset_id)
    assert dataset is not None
    plan = RunPlan.from_dict(quote.plan)
    ledger = budget.ledger_for(session, dataset.id, accountant=settings.trading.accountant)
    after = float(ledger.epsilon_with(plan.records(), delta=dataset.delta))
    fits = after <= dataset.epsilon_total and plan.epsilon <= dataset.max_epsilon_per_run
    largest = None
    if not fits and search:
        largest = largest_epsilon(
            session, dataset=dataset, quote=quote, settings=settings, ledger=ledger
        )
    return Fit(fits=fits, epsilon_after=after, largest_epsilon=largest)
