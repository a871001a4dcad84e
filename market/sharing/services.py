"""Model sharing's rules: publish a delivered model, browse, acquire, download.

Re-use is post-processing. A delivered model is the output of an accounted DP mechanism
(DP-SGD on the owner's rows); handing the same bytes to another researcher computes nothing
more from the rows, so by the post-processing property it releases nothing new and spends
no budget (docs/privacy.md). Nothing here touches the privacy ledger or reads the data.

Money. The publisher names a price at the currency's minor unit (a finer amount is refused,
never rounded). Each acquisition pays it once, split exactly: the dataset owner's royalty is
``sharing.owner_share`` x price, kept to ``costing.accrual_digits`` places like every accrued
term (``market.money.accrue``), and the publisher receives the exact rest, so the two shares
always add up to the price. The shares accrue to the monthly statements
(``market.statements``), where they are rounded once.

Services receive the session and never commit; each use case's audit entry is written in its
transaction (``model.published``, ``model.acquired``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from market import audit
from market.accounts.models import Role, User
from market.catalog.models import Dataset
from market.config import Settings
from market.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from market.money import accrue, from_minor, money_context, plain, to_minor
from market.sharing.models import Acquisition, SharedModel
from market.sharing.schemas import (
    AcquisitionPublic,
    ModelCreate,
    SharedModelPublic,
)
from market.trading.models import Quote, Run, RunStatus
from market.visibility import is_overseer, may_see_run


class RunNotDelivered(Conflict):
    code = "run_not_delivered"


class AlreadyPublished(Conflict):
    code = "already_published"


class AlreadyAcquired(Conflict):
    code = "already_acquired"


class InvalidPrice(InvalidRequest):
    code = "invalid_price"


def _not_found(model_id: str) -> NotFound:
    return NotFound(f"no shared model {model_id}", details={"model_id": model_id})


def _price_minor(amount: str, currency: str, settings: Settings) -> int:
    if currency != settings.costing.currency:
        raise InvalidPrice(
            f"shared models are priced in {settings.costing.currency}",
            details={"currency": currency},
        )
    try:
        minor = to_minor(Decimal(amount), currency)
    except ValueError as exc:
        raise InvalidPrice(str(exc), details={"amount": amount}) from exc
    if minor > settings.sharing.max_price_minor:
        raise InvalidPrice(
            "the price is above the marketplace's maximum",
            details={"max": str(from_minor(settings.sharing.max_price_minor, currency))},
        )
    return minor


def _measured(run: Run) -> dict[str, Any]:
    receipt = run.cost_receipt or {}
    measured: dict[str, Any] = receipt.get("measured") or {}
    return measured


def publish(session: Session, settings: Settings, *, actor: User, body: ModelCreate) -> SharedModel:
    """Offer a delivered run's model. Only its buyer, only once, only a succeeded run."""
    run = session.get(Run, body.run_id)
    dataset = None if run is None else session.get(Dataset, run.dataset_id)
    if run is None or not may_see_run(actor, run, dataset):
        raise NotFound(f"no run {body.run_id}", details={"run_id": body.run_id})
    assert dataset is not None
    if run.buyer_id != actor.id:
        raise PermissionDenied("only the run's buyer may publish its model")
    if run.status is not RunStatus.SUCCEEDED or run.model_name is None:
        raise RunNotDelivered(
            f"the run is {run.status.value}; only a delivered model can be shared",
            details={"status": run.status.value},
        )
    price_minor = _price_minor(body.price.amount, body.price.currency, settings)
    if session.exec(select(SharedModel.id).where(SharedModel.run_id == run.id)).first():
        raise AlreadyPublished("this run's model is already shared", details={"run_id": run.id})
    measured = _measured(run)
    model = SharedModel.model_validate(
        {
            "id": uuid.uuid4().hex,
            "run_id": run.id,
            "dataset_id": run.dataset_id,
            "publisher_id": actor.id,
            "title": body.title.strip(),
            "description": body.description.strip(),
            "licence": body.licence.strip(),
            "price_minor": price_minor,
            "currency": body.price.currency,
            "energy_kwh": str(measured.get("energy_kwh", "0")),
            "emissions_kg": str(measured.get("emissions_kg", "0")),
        }
    )
    session.add(model)
    session.flush()
    audit.record(
        session,
        settings,
        kind="model.published",
        subject=model.id,
        actor_id=actor.id,
        data={
            "model_id": model.id,
            "run_id": run.id,
            "dataset_id": run.dataset_id,
            "title": model.title,
            "licence": model.licence,
            "price": {
                "amount": str(from_minor(price_minor, model.currency)),
                "currency": model.currency,
            },
        },
    )
    return model


def get_model(session: Session, *, model_id: str) -> SharedModel:
    model = session.get(SharedModel, model_id)
    if model is None:
        raise _not_found(model_id)
    return model


def _has_acquired(session: Session, model_id: str, user_id: int | None) -> bool:
    found = session.exec(
        select(Acquisition.id).where(
            Acquisition.model_id == model_id, Acquisition.buyer_id == user_id
        )
    ).first()
    return found is not None


def may_download(session: Session, actor: User, model: SharedModel) -> bool:
    """Its publisher and the researchers who acquired it; nobody else (not even auditors:
    the weights are what was paid for)."""
    return model.publisher_id == actor.id or _has_acquired(session, model.id, actor.id)


def acquire(
    session: Session, settings: Settings, *, actor: User, model_id: str
) -> tuple[Acquisition, SharedModel]:
    """Buy a shared model: one acquisition per researcher; no privacy budget is spent."""
    model = get_model(session, model_id=model_id)
    if model.publisher_id == actor.id:
        raise AlreadyAcquired("you published this model; it is yours already")
    if _has_acquired(session, model.id, actor.id):
        raise AlreadyAcquired(
            "you have acquired this model already", details={"model_id": model.id}
        )
    dataset = session.get(Dataset, model.dataset_id)
    assert dataset is not None
    ctx = money_context()
    price = from_minor(model.price_minor, model.currency)
    digits = settings.costing.accrual_digits
    owner_amount = accrue(ctx.multiply(price, settings.sharing.owner_share), digits, model.currency)
    publisher_amount = accrue(ctx.subtract(price, owner_amount), digits, model.currency)
    acquisition = Acquisition.model_validate(
        {
            "id": uuid.uuid4().hex,
            "model_id": model.id,
            "buyer_id": actor.id,
            "owner_id": dataset.owner_id,
            "publisher_id": model.publisher_id,
            "price_minor": model.price_minor,
            "currency": model.currency,
            "owner_amount": plain(owner_amount),
            "publisher_amount": plain(publisher_amount),
            "energy_avoided_kwh": model.energy_kwh,
            "emissions_avoided_kg": model.emissions_kg,
        }
    )
    session.add(acquisition)
    session.flush()
    audit.record(
        session,
        settings,
        kind="model.acquired",
        subject=model.id,
        actor_id=actor.id,
        data={
            "acquisition_id": acquisition.id,
            "model_id": model.id,
            "run_id": model.run_id,
            "price": {"amount": str(price), "currency": model.currency},
            "owner_id": dataset.owner_id,
            "owner_royalty": acquisition.owner_amount,
            "publisher_id": model.publisher_id,
            "publisher_share": acquisition.publisher_amount,
            "energy_avoided_kwh": acquisition.energy_avoided_kwh,
            "emissions_avoided_kg": acquisition.emissions_avoided_kg,
        },
    )
    return acquisition, model


def file_run(session: Session, *, actor: User, model_id: str) -> Run:
    """The run whose file a permitted caller downloads (the same bytes the run delivered)."""
    model = get_model(session, model_id=model_id)
    if not may_download(session, actor, model):
        raise PermissionDenied(
            "only the model's publisher and those who acquired it may download it",
            details={"model_id": model.id},
        )
    run = session.get(Run, model.run_id)
    assert run is not None and run.model_name is not None
    return run


@dataclass(frozen=True)
class ModelPage:
    items: list[SharedModel]
    total: int
    page: int
    page_size: int


def search(
    session: Session,
    *,
    q: str | None = None,
    dataset_id: str | None = None,
    page: int = 1,
    page_size: int = 20,
) -> ModelPage:
    """Shared models, newest first; ``q`` matches the title, description or dataset title."""
    statement = select(SharedModel).join(Dataset, col(Dataset.id) == SharedModel.dataset_id)
    if dataset_id:
        statement = statement.where(SharedModel.dataset_id == dataset_id)
    if q:
        like = f"%{q.lower()}%"
        statement = statement.where(
            or_(
                func.lower(SharedModel.title).like(like),
                func.lower(SharedModel.description).like(like),
                func.lower(Dataset.title).like(like),
            )
        )
    total = session.exec(select(func.count()).select_from(statement.subquery())).one()
    items = session.exec(
        statement.order_by(col(SharedModel.created_at).desc(), col(SharedModel.id))
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    return ModelPage(items=list(items), total=int(total), page=page, page_size=page_size)


def to_public(session: Session, model: SharedModel, *, actor: User) -> SharedModelPublic:
    run = session.get(Run, model.run_id)
    dataset = session.get(Dataset, model.dataset_id)
    assert run is not None and dataset is not None
    quote = session.get(Quote, run.quote_id)
    plan: dict[str, Any] = {} if quote is None else quote.plan
    request: dict[str, Any] = {} if quote is None else quote.request
    receipt = run.privacy_receipt or {}
    measurement = (run.cost_receipt or {}).get("measurement") or {}
    measured = _measured(run)
    count = session.exec(
        select(func.count()).select_from(Acquisition).where(Acquisition.model_id == model.id)
    ).one()
    return SharedModelPublic.model_validate(
        {
            "id": model.id,
            "run_id": model.run_id,
            "title": model.title,
            "description": model.description,
            "licence": model.licence,
            "price": {
                "amount": str(from_minor(model.price_minor, model.currency)),
                "currency": model.currency,
            },
            "publisher_id": model.publisher_id,
            "dataset": {"id": dataset.id, "title": dataset.title},
            "spec": request.get("model") or {},
            "privacy": {
                "epsilon": receipt.get("epsilon", plan.get("epsilon", 0.0)),
                "delta": receipt.get("delta", plan.get("delta", dataset.delta)),
                "epsilon_spent": receipt.get("epsilon_spent"),
                "accountant": receipt.get("accountant", plan.get("accountant")),
            },
            "metrics": run.metrics,
            "training": {
                "seconds": None if "seconds" not in measured else str(measured["seconds"]),
                "energy_kwh": model.energy_kwh,
                "emissions_kg": model.emissions_kg,
                "method": measurement.get("method"),
            },
            "acquisitions": int(count),
            "can_download": may_download(session, actor, model),
            "created_at": model.created_at,
        }
    )


def acquisition_public(acquisition: Acquisition) -> AcquisitionPublic:
    currency = acquisition.currency
    return AcquisitionPublic.model_validate(
        {
            "id": acquisition.id,
            "model_id": acquisition.model_id,
            "buyer_id": acquisition.buyer_id,
            "receipt": {
                "price": {
                    "amount": str(from_minor(acquisition.price_minor, currency)),
                    "currency": currency,
                },
                "owner_royalty": {"amount": acquisition.owner_amount, "currency": currency},
                "publisher_share": {"amount": acquisition.publisher_amount, "currency": currency},
                "energy_avoided_kwh": acquisition.energy_avoided_kwh,
                "emissions_avoided_kg": acquisition.emissions_avoided_kg,
            },
            "created_at": acquisition.created_at,
        }
    )


def published_for_run(session: Session, run_id: str) -> SharedModel | None:
    return session.exec(select(SharedModel).where(SharedModel.run_id == run_id)).first()


@dataclass(frozen=True)
class Avoided:
    """What acquisitions avoided: the original runs' measured energy and emissions."""

    acquisitions: int
    energy_kwh: Decimal
    emissions_kg: Decimal


def avoided(session: Session, *, actor: User, platform: bool = False) -> Avoided:
    """Totals of avoided training: the whole platform (``platform`` and an auditor or admin),
    else acquisitions of models on the actor's datasets (owners) or the actor's own (others)."""
    statement = select(Acquisition.energy_avoided_kwh, Acquisition.emissions_avoided_kg)
    if not (platform and is_overseer(actor)):
        if actor.role is Role.OWNER:
            statement = statement.where(Acquisition.owner_id == actor.id)
        else:
            statement = statement.where(
                or_(
                    col(Acquisition.buyer_id) == actor.id,
                    col(Acquisition.publisher_id) == actor.id,
                )
            )
    rows = session.exec(statement).all()
    ctx = money_context()
    energy, emissions = Decimal(0), Decimal(0)
    for kwh, kg in rows:
        energy = ctx.add(energy, Decimal(kwh))
        emissions = ctx.add(emissions, Decimal(kg))
    return Avoided(acquisitions=len(rows), energy_kwh=energy, emissions_kg=emissions)
