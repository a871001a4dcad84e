"""Trading rules: quotes, purchases with an atomic budget reservation, run state, visibility.

Who sees a run: its buyer, the dataset's owner, auditors and admins. Only the buyer
downloads the model. A run or quote a caller may not see reads as not found. The rules are
market.visibility's; this module raises the errors.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from market import audit
from market.accounts.models import Role, User
from market.accounts.services import require_role
from market.catalog import services as catalog
from market.catalog.models import Dataset, DatasetStatus
from market.config import Settings
from market.costing import Money, quote_costs
from market.db import Database, utcnow
from market.errors import Conflict, NotFound, ValidationFailed
from market.money import from_minor, round_to_minor, to_minor
from market.trading import budget, calibration
from market.trading.models import PrivacyRelease, Quote, ReleaseState, Run, RunStatus
from market.trading.schemas import QuoteRequest
from market.visibility import (
    may_buy_quote,
    may_download_model,
    may_see_quote,
    may_see_run,
    runs_visible_to,
)
from privacy.errors import PlanError, SpecError
from privacy.preprocessing import Description, for_model, input_shape, num_classes, vocabulary
from privacy.records import MechanismRecord

if TYPE_CHECKING:
    from privacy.training import RunPlan

# torch and Opacus (privacy.specs, privacy.training, privacy.accounting) are imported inside
# the functions that need them: they take seconds to import, which every CLI command and web
# worker would otherwise pay at start-up.


@functools.cache
def reference_work_per_sample() -> float:
    """Work per sample of the reference workload: the parameters of the seed MLP
    (``privacy.specs.SEED_MLP`` on 28x28 images), the model the worker classes' configured
    throughput was measured on (``market.trading.calibration``)."""
    from privacy.specs import seed_mlp_parameters

    return float(seed_mlp_parameters())


class BudgetExceeded(Conflict):
    code = "budget_exceeded"


class QuoteUnavailable(Conflict):
    code = "quote_unavailable"


def _not_found(kind: str, ident: str) -> NotFound:
    return NotFound(f"no {kind} {ident}", details={f"{kind}_id": ident})


def _royalty(dataset: Dataset, epsilon: float) -> Decimal:
    per_run = from_minor(dataset.price_per_run_minor, dataset.currency)
    per_epsilon = from_minor(dataset.price_per_epsilon_minor, dataset.currency)
    return round_to_minor(per_run + per_epsilon * Decimal(str(epsilon)), dataset.currency)


def model_input(dataset: Dataset, spec: Any) -> Description:
    """The preprocessing a spec reads on this dataset (integer codes for an embedding)."""
    from privacy.specs import uses_embedding

    return for_model(catalog.preprocessing_of(dataset), embedding=uses_embedding(spec))


def recipe_for(dataset: Dataset, spec: Any, epsilon: float) -> dict[str, Any]:
    """The settings a run uses where the request leaves them out: the measured recipe for
    this template, kind of data and epsilon (``privacy.specs.RECIPES``), else the
    template's defaults."""
    from privacy.specs import template_defaults

    data_kind = "image" if dataset.format.value == "npz" else "tabular"
    return template_defaults(spec, data_kind, epsilon)


def _plan(
    dataset: Dataset, request: QuoteRequest, settings: Settings
) -> tuple[RunPlan, Any, int, calibration.ModelWork]:
    """Validate the model against the schema and plan the mechanism; 422 on any problem.
    Also the model's family and work per sample, for the time estimate."""
    from privacy.specs import build_model, parse_model_spec
    from privacy.training import plan_run

    try:
        spec = parse_model_spec(request.model)
        defaults = recipe_for(dataset, spec, request.epsilon)
        description = model_input(dataset, spec)
        model = build_model(
            spec,
            input_shape=input_shape(description),
            num_classes=num_classes(description),
            max_parameters=settings.trading.max_parameters,
            vocabulary=vocabulary(description),
        )
        delta = request.delta if request.delta is not None else dataset.delta
        if delta > dataset.delta:
            raise ValidationFailed(
                f"delta cannot exceed the dataset's delta {dataset.delta:g}",
                details={"field": "delta"},
            )
        plan = plan_run(
            rows=int(dataset.rows or 0),
            epsilon=request.epsilon,
            delta=delta,
            epochs=request.epochs,
            batch_size=request.batch_size,
            max_grad_norm=request.max_grad_norm or float(defaults.get("max_grad_norm", 1.0)),
            accountant=settings.trading.accountant,
            **settings.trading.holdout(),
        )
    except (SpecError, PlanError) as exc:
        raise ValidationFailed(str(exc), details=exc.details) from exc
    parameters = sum(p.numel() for p in model.parameters())
    return plan, spec, parameters, calibration.model_work(model, input_shape(description))


def create_quote(
    session: Session, *, actor: User, request: QuoteRequest, settings: Settings
) -> Quote:
    """A priced quote, not yet stored (``store_quote`` is the use case)."""
    require_role(actor, Role.RESEARCHER)
    dataset = catalog.get_dataset(session, actor=actor, dataset_id=request.dataset_id)
    if dataset.status is not DatasetStatus.LISTED:
        raise Conflict(f"dataset {dataset.id} is not listed", details={"status": dataset.status})
    if request.worker_class not in settings.costing.worker_classes:
        raise ValidationFailed(
            f"unknown worker class {request.worker_class!r}",
            details={"field": "worker_class", "allowed": sorted(settings.costing.worker_classes)},
        )
    from privacy.specs import spec_to_dict

    plan, spec, parameters, work = _plan(dataset, request, settings)
    ledger = budget.ledger_for(session, dataset.id, accountant=settings.trading.accountant)
    epsilon_after = ledger.epsilon_with(plan.records(), delta=dataset.delta)
    reason = None
    if plan.epsilon > dataset.max_epsilon_per_run:
        cap = dataset.max_epsilon_per_run
        reason = f"epsilon {plan.epsilon:g} exceeds the owner's cap of {cap:g} per run"
    elif epsilon_after > dataset.epsilon_total:
        left = ledger.remaining(cap_epsilon=dataset.epsilon_total, delta=dataset.delta)
        reason = (
            f"the dataset's composed epsilon would reach {epsilon_after:.3f}, over its budget of "
            f"{dataset.epsilon_total:g}; {left:.3f} remains"
        )
    # The measured recipe for this kind of data at this epsilon, where there is one.
    defaults = recipe_for(dataset, spec, plan.epsilon)
    learning_rate = request.learning_rate or float(defaults["learning_rate"])
    now = utcnow()
    costs = quote_costs(
        settings.costing,
        worker_class=request.worker_class,
        samples=plan.train_rows,
        epochs=plan.epochs,
        work_per_sample=float(parameters),
        reference_work_per_sample=reference_work_per_sample(),
        clipping_mode="bk",  # what the planner picks first (privacy.bookkeeping)
        royalty=Money(_royalty(dataset, plan.epsilon), dataset.currency),
        now=now,
        deadline=request.deadline,
        steps=plan.steps,
        throughput_samples_per_s=calibration.throughput_for(session, request.worker_class),
        # Workers train with one torch thread (docs/pitfalls.md): one core of the class busy.
        cpu_utilisation=1.0 / settings.costing.worker_classes[request.worker_class].cores,
        # The class's own calibration (docs/costs.md) and whether a worker of it is alive.
        fit=calibration.fit_for(session, request.worker_class),
        family=work.family,
        batch=plan.sample_rate * plan.rows,
        macs=work.macs,
        rows=plan.rows,
        live_workers=calibration.live_workers(
            session, request.worker_class, stale_after_s=settings.ops.worker_stale_s
        ),
    )
    stored_request = request.model_dump(mode="json")
    stored_request.update(
        model=spec_to_dict(spec),
        learning_rate=learning_rate,
        optimizer=defaults.get("optimizer", "adam"),
        lr_schedule=defaults.get("lr_schedule", "constant"),
        max_grad_norm=plan.max_grad_norm,
        parameters=parameters,
        reason=reason,
    )
    quote = Quote.model_validate(
        {
            "id": uuid.uuid4().hex,
            "dataset_id": dataset.id,
            "researcher_id": actor.id,
            "request": stored_request,
            "plan": plan.to_dict(),
            "estimate": costs.to_dict(),
            # The quote's price, rounded once to the minor unit (its terms stay exact).
            "price_total_minor": to_minor(
                round_to_minor(costs.now.total.amount, dataset.currency), dataset.currency
            ),
            "currency": dataset.currency,
            "fits_budget": reason is None,
            "epsilon_after": epsilon_after,
            "expires_at": now + timedelta(minutes=settings.trading.quote_ttl_minutes),
        }
    )
    return quote


def store_quote(
    database: Database, *, actor: User, request: QuoteRequest, settings: Settings
) -> Quote:
    """Plan and price in a read transaction, then store the quote in a short write.

    Planning calibrates the noise with the accountant (up to seconds of CPU); inside a
    write transaction that would hold SQLite's single write lock and queue every other
    writer behind it (measured: quotes under 16 clients hit the 5 s busy timeout). A quote
    reserves nothing, and the purchase re-checks the budget under the dataset's lock.
    """
    with database.read() as session:
        quote = create_quote(session, actor=actor, request=request, settings=settings)
    with database.write() as session:
        session.add(quote)
    return quote


def get_quote(session: Session, *, actor: User, quote_id: str) -> Quote:
    quote = session.get(Quote, quote_id)
    if quote is None or not may_see_quote(actor, quote):
        raise _not_found("quote", quote_id)
    return quote


def purchase(session: Session, *, actor: User, quote_id: str, settings: Settings) -> Run:
    """Re-check the fit under the dataset's lock, reserve the budget, create the run.

    Runs inside the caller's single write transaction; the caller enqueues after commit.
    """
    from privacy.accounting import compose_epsilon
    from privacy.training import RunPlan

    require_role(actor, Role.RESEARCHER)
    quote = session.exec(select(Quote).where(Quote.id == quote_id).with_for_update()).first()
    if quote is None or not may_buy_quote(actor, quote):
        raise _not_found("quote", quote_id)
    now = utcnow()
    if quote.used_at is not None:
        raise QuoteUnavailable("this quote was already used; ask for a new one")
    if quote.expires_at <= now:
        raise QuoteUnavailable("this quote has expired; ask for a new one")
    dataset = budget.lock_dataset(session, quote.dataset_id)
    if dataset.status is not DatasetStatus.LISTED:
        raise Conflict("the dataset is no longer listed")
    plan = RunPlan.from_dict(quote.plan)
    if plan.epsilon > dataset.max_epsilon_per_run:
        raise BudgetExceeded(
            f"epsilon {plan.epsilon:g} exceeds the owner's cap of {dataset.max_epsilon_per_run:g}",
            details={"max_epsilon_per_run": dataset.max_epsilon_per_run},
        )
    ledger = budget.ledger_for(session, dataset.id, accountant=settings.trading.accountant)
    after = ledger.epsilon_with(plan.records(), delta=dataset.delta)
    if after > dataset.epsilon_total:
        raise BudgetExceeded(
            f"the dataset's budget cannot hold this run: its composed epsilon would reach "
            f"{after:.3f}, over {dataset.epsilon_total:g}",
            details={
                "epsilon_total": dataset.epsilon_total,
                "epsilon_committed": ledger.epsilon(delta=dataset.delta),
                "epsilon_after": after,
            },
        )
    quote.used_at = now
    session.add(quote)
    run = Run.model_validate(
        {
            "id": uuid.uuid4().hex,
            "quote_id": quote.id,
            "dataset_id": dataset.id,
            "buyer_id": actor.id,
            "price_total_minor": quote.price_total_minor,
            "currency": quote.currency,
            "progress_steps": plan.steps,
        }
    )
    session.add(run)
    session.flush()
    release = PrivacyRelease.model_validate(
        {
            "dataset_id": dataset.id,
            "run_id": run.id,
            "state": ReleaseState.RESERVED,
            "records": plan.records(),
            "epsilon": compose_epsilon(plan.records(), delta=dataset.delta),
            "epsilon_after": after,
        }
    )
    session.add(release)
    session.flush()
    audit.record(
        session,
        settings,
        kind="run.purchased",
        subject=run.id,
        actor_id=actor.id,
        data={
            "quote_id": quote.id,
            "dataset_id": dataset.id,
            "price_minor": quote.price_total_minor,
            "currency": quote.currency,
            "mechanism": {
                "noise_multiplier": plan.noise_multiplier,
                "sample_rate": plan.sample_rate,
                "steps": plan.steps,
                "epsilon": plan.epsilon,
                "delta": plan.delta,
            },
        },
    )
    audit_release(session, settings, release=release, dataset=dataset, actor_id=actor.id)
    audit.checkpoint(session, settings)  # every purchase is covered by a signed checkpoint
    return run


def audit_release(
    session: Session,
    settings: Settings,
    *,
    release: PrivacyRelease,
    dataset: Dataset,
    actor_id: int | None,
) -> None:
    """Record a reservation, spend or release with the dataset's composed epsilon after it."""
    after = budget.committed_epsilon(session, dataset, accountant=settings.trading.accountant)
    audit.record(
        session,
        settings,
        kind=f"privacy.{release.state.value}",
        subject=release.run_id or dataset.id,
        actor_id=actor_id,
        data=audit.privacy_entry_data(
            dataset_id=dataset.id,
            release_id=release.id or 0,
            run_id=release.run_id,
            records=release.records,
            delta=dataset.delta,
            epsilon_after=after,
            epsilon_total=dataset.epsilon_total,
            accountant=settings.trading.accountant,
        ),
    )


def get_run(session: Session, *, actor: User, run_id: str) -> Run:
    run = session.get(Run, run_id)
    if run is None or not may_see_run(actor, run, session.get(Dataset, run.dataset_id)):
        raise _not_found("run", run_id)
    return run


def model_for_buyer(session: Session, *, actor: User, run_id: str) -> Run:
    """The run whose model the caller may download: only its buyer, only once trained."""
    run = get_run(session, actor=actor, run_id=run_id)
    if not may_download_model(actor, run):
        from market.errors import PermissionDenied

        raise PermissionDenied("only the run's buyer may download its model")
    if run.status is not RunStatus.SUCCEEDED or run.model_name is None:
        raise Conflict(f"the run is {run.status.value}; the model is ready when it succeeds")
    return run


def list_runs(session: Session, *, actor: User, dataset_id: str | None = None) -> list[Run]:
    """Researchers: their purchases. Owners: runs on their datasets. Auditors/admins: all."""
    statement = runs_visible_to(select(Run), actor)
    if dataset_id:
        statement = statement.where(Run.dataset_id == dataset_id)
    return list(session.exec(statement.order_by(col(Run.created_at).desc())).all())


def settle_release(
    session: Session,
    *,
    run: Run,
    state: ReleaseState,
    records: list[MechanismRecord] | None,
    accountant: str,
) -> PrivacyRelease | None:
    """Turn the run's reservation into a spend (with what was released) or release it.

    Returns the settled release, or None when there was nothing left to settle."""
    from privacy.accounting import compose_epsilon

    release = session.exec(
        select(PrivacyRelease).where(
            PrivacyRelease.run_id == run.id, PrivacyRelease.state == ReleaseState.RESERVED
        )
    ).first()
    if release is None:  # already settled: never charge twice
        return None
    dataset = session.get(Dataset, run.dataset_id)
    assert dataset is not None
    release.state = state
    release.updated_at = utcnow()
    if records is not None:
        release.records = records
        release.epsilon = compose_epsilon(records, delta=dataset.delta) if records else 0.0
    session.add(release)
    session.flush()
    if state is ReleaseState.SPENT:
        # "After" this release: everything counted up to and including it, in ledger order.
        earlier = session.exec(
            select(PrivacyRelease.records).where(
                PrivacyRelease.dataset_id == dataset.id,
                col(PrivacyRelease.id) <= release.id,
                col(PrivacyRelease.state).in_(budget.COUNTED),
            )
        ).all()
        release.epsilon_after = compose_epsilon(
            [record for records in earlier for record in records],
            delta=dataset.delta,
            accountant=accountant,
        )
        session.add(release)
    return release


def scheduled_start(quote: Quote) -> datetime | None:
    """The greenest start the quote found before its deadline (None: start now)."""
    schedule = (quote.estimate or {}).get("schedule")
    if not schedule or not quote.request.get("deadline"):
        return None
    return datetime.fromisoformat(schedule["start"])
