"""The kept budget state equals a full re-derivation from the release rows.

Random (seeded) sequences of purchases (reservations), deliveries (spends of what ran),
failures after the data was touched (spends of the plan) and failures before it (releases),
through the real services, on SQLite and PostgreSQL. After every step the incremental
answer (``ledger_for``: the state row plus the active reservations) must equal the answer
composed from every counted row's records (``rederive_ledger``), curve by curve.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import numpy as np
import pytest
from sqlmodel import select

from market.catalog.models import Dataset
from market.trading import budget, lifecycle
from market.trading import services as trading
from market.trading.models import PrivacyBudgetState, PrivacyRelease, ReleaseState, Run
from privacy.accounting import rdp_curve_of
from privacy.training import RunPlan
from tests.trading.conftest import quote_body

DELTA_TOLERANCE = 1e-9


def _buy(client: Any, headers: dict[str, str], dataset_id: str, rng: random.Random) -> str:
    # Distinct mechanisms: every purchase a different epsilon and length.
    body = quote_body(dataset_id, epsilon=round(rng.uniform(0.2, 0.9), 3), epochs=rng.randint(1, 4))
    quote = client.post("/api/v1/quotes", json=body, headers=headers)
    assert quote.status_code == 201, quote.get_json()
    bought = client.post("/api/v1/runs", json={"quote_id": quote.get_json()["id"]}, headers=headers)
    assert bought.status_code == 202, bought.get_json()
    return str(bought.get_json()["id"])


def _deliver(market: Any, run_id: str, rng: random.Random) -> None:
    """What a delivery writes to the budget: the reservation becomes a spend of what ran
    (here: fewer steps than planned, as when training stops early)."""
    claimed = lifecycle.claim(market, run_id)
    assert claimed is not None
    lifecycle.touch_data(market, claimed.lease)
    records = RunPlan.from_dict(claimed.quote.plan).records()
    records[0] = {**records[0], "steps": max(1, records[0]["steps"] - rng.randint(0, 5))}
    with market.database.write() as session:
        run = lifecycle.fenced(session, claimed.lease)
        release = trading.settle_release(
            session,
            run=run,
            state=ReleaseState.SPENT,
            records=records,
            accountant=market.settings.trading.accountant,
        )
        assert release is not None
        trading.audit_release(
            session, market.settings, release=release, dataset=claimed.dataset, actor_id=None
        )


def _fail(market: Any, run_id: str, *, touched: bool) -> None:
    claimed = lifecycle.claim(market, run_id)
    assert claimed is not None
    if touched:
        lifecycle.touch_data(market, claimed.lease)
    assert lifecycle.fail(
        market, run_id, code="worker_error", message="failed in a test", lease=claimed.lease
    )


def _assert_agree(market: Any, dataset_id: str, *, accountants: tuple[str, ...] = ("rdp",)):
    with market.database.read() as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None
        kept_curve = budget.kept_spent_curve(session, dataset_id)
        spent_rows = session.exec(
            select(PrivacyRelease.records).where(
                PrivacyRelease.dataset_id == dataset_id,
                PrivacyRelease.state == ReleaseState.SPENT,
            )
        ).all()
        answers = {
            accountant: (
                budget.ledger_for(session, dataset_id, accountant=accountant),
                budget.rederive_ledger(session, dataset_id, accountant=accountant),
            )
            for accountant in accountants
        }
        state = session.get(PrivacyBudgetState, dataset_id)
    assert kept_curve is not None, "every write keeps the state"
    derived_curve = rdp_curve_of([r for records in spent_rows for r in records])
    np.testing.assert_allclose(kept_curve, derived_curve, rtol=1e-12, equal_nan=True)
    assert state is not None and state.spent_releases == len(spent_rows)
    for kept, derived in answers.values():
        kept_eps, derived_eps = (
            kept.epsilon(delta=dataset.delta),
            derived.epsilon(delta=dataset.delta),
        )
        assert kept_eps == pytest.approx(derived_eps, rel=DELTA_TOLERANCE)
        plan = [{"mechanism": "gaussian", "sigma": 3.0, "sensitivity": 1.0, "count": 2}]
        assert kept.epsilon_with(plan, delta=dataset.delta) == pytest.approx(
            derived.epsilon_with(plan, delta=dataset.delta), rel=DELTA_TOLERANCE
        )
    return answers


def _roomy(app: Any, dataset_id: str) -> None:
    with app.extensions["market"].database.write() as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None
        dataset.epsilon_total = 1000.0
        dataset.max_epsilon_per_run = 10.0
        session.add(dataset)


@pytest.mark.parametrize("seed", [7, 2026])
def test_kept_state_equals_rederivation_after_random_sequences(
    app, client, listed_cancer, researcher, seed
) -> None:
    _, headers = researcher
    market = app.extensions["market"]
    dataset_id = listed_cancer["id"]
    _roomy(app, dataset_id)
    rng = random.Random(seed)
    pending: list[str] = []
    seen = {"reserve": 0, "deliver": 0, "fail_touched": 0, "fail_untouched": 0}
    settlements = ["deliver", "fail_touched", "fail_untouched"]
    # Every kind of change at least once (in a random order), then random ones.
    schedule = ["reserve"] * 4 + rng.sample(settlements, 3) + [None] * 8
    for planned in schedule:
        action = planned or ("reserve" if len(pending) < 2 else rng.choice(list(seen)))
        if action == "reserve":
            pending.append(_buy(client, headers, dataset_id, rng))
        else:
            run_id = pending.pop(rng.randrange(len(pending)))
            if action == "deliver":
                _deliver(market, run_id, rng)
            else:
                _fail(market, run_id, touched=action == "fail_touched")
        seen[action] += 1
        _assert_agree(market, dataset_id)
    assert pending, "reservations still pending count against the budget"
    assert all(seen.values()), seen  # every kind of change happened
    answers = _assert_agree(market, dataset_id, accountants=("rdp", "prv"))
    kept, _ = answers["rdp"]
    assert kept.epsilon(delta=1e-5) > 0
    # The catalog's figure is the kept one.
    body = client.get(f"/api/v1/datasets/{dataset_id}", headers=headers).get_json()
    assert body["budget"]["epsilon_spent"] == pytest.approx(
        kept.epsilon(delta=listed_cancer["budget"]["delta"]), rel=DELTA_TOLERANCE
    )


def test_concurrent_settlements_on_one_dataset_lose_no_spend(
    app, client, listed_cancer, researcher
) -> None:
    """Failures settled at the same time (each under its own run's lock) all reach the
    state: the state row is locked, so no increment overwrites another."""
    _, headers = researcher
    market = app.extensions["market"]
    dataset_id = listed_cancer["id"]
    _roomy(app, dataset_id)
    rng = random.Random(3)
    runs = [_buy(client, headers, dataset_id, rng) for _ in range(6)]
    leases = []
    for run_id in runs:
        claimed = lifecycle.claim(market, run_id)
        assert claimed is not None
        lifecycle.touch_data(market, claimed.lease)
        leases.append(claimed.lease)
    barrier = threading.Barrier(len(runs))
    errors: list[BaseException] = []

    def settle(lease: lifecycle.Lease) -> None:
        barrier.wait()
        try:
            assert lifecycle.fail(
                market, lease.run_id, code="worker_error", message="x", lease=lease
            )
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=settle, args=(lease,)) for lease in leases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    _assert_agree(market, dataset_id)
    with market.database.read() as session:
        state = session.get(PrivacyBudgetState, dataset_id)
    assert state is not None and state.spent_releases == len(runs)


def test_a_rewritten_spend_is_derived_again_not_guessed(
    app, client, listed_cancer, researcher
) -> None:
    """A spent row changed outside the ordinary path cannot be expressed as an increment:
    the state is marked for re-derivation, reads fall back to the rows, and the next write
    derives it again."""
    _, headers = researcher
    market = app.extensions["market"]
    dataset_id = listed_cancer["id"]
    _roomy(app, dataset_id)
    rng = random.Random(5)
    first = _buy(client, headers, dataset_id, rng)
    _fail(market, first, touched=True)
    with market.database.write() as session:
        release = session.exec(select(PrivacyRelease).where(PrivacyRelease.run_id == first)).one()
        release.records = [{"mechanism": "laplace", "scale": 2.0, "sensitivity": 1.0, "count": 3}]
        session.add(release)
    with market.database.read() as session:
        assert budget.kept_spent_curve(session, dataset_id) is None
        kept = budget.ledger_for(session, dataset_id, accountant="rdp")
        derived = budget.rederive_ledger(session, dataset_id, accountant="rdp")
    assert kept.epsilon(delta=1e-5) == pytest.approx(derived.epsilon(delta=1e-5))
    second = _buy(client, headers, dataset_id, rng)  # a write: the state is derived again
    _assert_agree(market, dataset_id)
    _fail(market, second, touched=False)
    _assert_agree(market, dataset_id)


def test_rows_written_directly_keep_the_state_too(app, listed_cancer) -> None:
    """The state is kept at flush time, whatever wrote the release (here a bulk insert, as
    a seed script or the benchmark writes them), in the same transaction."""
    market = app.extensions["market"]
    dataset_id = listed_cancer["id"]
    records = [
        {"mechanism": "subsampled_gaussian", "noise_multiplier": 1.0 + i / 10, "sample_rate": 0.01,
         "steps": 100}
        for i in range(5)
    ]  # fmt: skip
    with market.database.write() as session:
        session.add_all(
            PrivacyRelease.model_validate(
                {"dataset_id": dataset_id, "state": state, "records": [record],
                 "epsilon": 0.0, "epsilon_after": 0.0}
            )
            for record, state in zip(
                records, [ReleaseState.SPENT] * 3 + [ReleaseState.RESERVED] * 2, strict=True
            )
        )  # fmt: skip
    answers = _assert_agree(market, dataset_id)
    with market.database.read() as session:
        curves = session.exec(select(PrivacyRelease.rdp_curve)).all()
        assert session.exec(select(Run)).first() is None
    assert all(curve is not None for curve in curves)
    kept, _ = answers["rdp"]
    assert kept.epsilon(delta=1e-5) > 0
