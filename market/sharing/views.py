"""Model sharing's pages: browse, one model (acquire, download), publish from a run's page.

The dataset page, the run page and the dashboards show sharing through template globals
registered here (``shared_models_for``, ``publish_form_for``, ``sharing_avoided``), so the
catalog, trading and ledger views need no change and import nothing of sharing.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from pydantic import ValidationError
from werkzeug.wrappers import Response
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Regexp

from market.accounts.forms import ConfirmForm
from market.accounts.models import Role, User
from market.accounts.services import require_role
from market.costing.pricing import human_emissions, human_energy
from market.errors import MarketError, field_errors
from market.services import services
from market.sharing import services as sharing
from market.sharing.schemas import AMOUNT_PATTERN, ModelCreate
from market.trading.models import RunStatus

bp = Blueprint("sharing", __name__)

PAGE_SIZE = 20


class PublishForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(), Length(max=200)])
    description = TextAreaField("Description", validators=[Length(max=5000)])
    licence = StringField(
        "Licence", default="CC-BY-4.0", validators=[DataRequired(), Length(max=64)]
    )
    price = StringField(
        "Price",
        default="2.00",
        validators=[DataRequired(), Regexp(AMOUNT_PATTERN, message="a non-negative amount")],
    )


def _user() -> User:
    user: User = current_user
    return user


@bp.get("/models")
@login_required
def models_page() -> str:
    q = request.args.get("q", "")[:200]
    dataset_id = request.args.get("dataset_id", "")[:64]
    page = max(1, min(request.args.get("page", 1, type=int) or 1, 10_000))
    with services().database.read() as session:
        found = sharing.search(
            session, q=q or None, dataset_id=dataset_id or None, page=page, page_size=PAGE_SIZE
        )
        items = [sharing.to_public(session, m, actor=_user()) for m in found.items]
    return render_template(
        "shared_models.html", items=items, total=found.total, q=q, dataset_id=dataset_id
    )


@bp.get("/models/<model_id>")
@login_required
def model_page(model_id: str) -> str:
    user = _user()
    with services().database.read() as session:
        model = sharing.get_model(session, model_id=model_id)
        public = sharing.to_public(session, model, actor=user)
    may_acquire = (
        user.role in (Role.RESEARCHER, Role.ADMIN)
        and not public.can_download
        and model.publisher_id != user.id
    )
    return render_template(
        "shared_model.html",
        model=public,
        may_acquire=may_acquire,
        is_publisher=model.publisher_id == user.id,
        acquire_form=ConfirmForm(),
    )


@bp.post("/models/<model_id>/acquire")
@login_required
def acquire(model_id: str) -> Response:
    require_role(_user(), Role.RESEARCHER)
    form = ConfirmForm()
    if not form.validate_on_submit():
        return redirect(url_for("sharing.model_page", model_id=model_id), code=303)
    market = services()
    try:
        with market.database.write() as session:
            acquisition, _ = sharing.acquire(
                session, market.settings, actor=_user(), model_id=model_id
            )
            receipt = sharing.acquisition_public(acquisition).receipt
    except MarketError as exc:
        if exc.status == 404:
            raise
        flash(exc.message, "error")
        return redirect(url_for("sharing.model_page", model_id=model_id), code=303)
    flash(
        f"Acquired for {receipt.price.amount} {receipt.price.currency}: "
        f"{human_energy(receipt.energy_avoided_kwh)} and "
        f"{human_emissions(receipt.emissions_avoided_kg)} of training avoided, "
        "no privacy budget spent.",
        "info",
    )
    return redirect(url_for("sharing.model_page", model_id=model_id), code=303)


@bp.get("/models/<model_id>/file")
@login_required
def download(model_id: str) -> Response:
    market = services()
    with market.database.read() as session:
        run = sharing.file_run(session, actor=_user(), model_id=model_id)
    blob = (market.settings.models_dir / str(run.model_name)).read_bytes()
    return Response(
        blob,
        mimetype="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="model-{model_id}.safetensors"',
            "Cache-Control": "private, no-store",
        },
    )


@bp.post("/runs/<run_id>/publish")
@login_required
def publish(run_id: str) -> Response:
    require_role(_user(), Role.RESEARCHER)
    form = PublishForm()
    back = url_for("trading.run_page", run_id=run_id)
    if not form.validate_on_submit():
        for name, messages in form.errors.items():
            for message in messages:
                flash(f"{name}: {message}", "error")
        return redirect(back, code=303)
    market = services()
    try:
        body = ModelCreate.model_validate(
            {
                "run_id": run_id,
                "title": form.title.data,
                "description": form.description.data or "",
                "licence": form.licence.data,
                "price": {"amount": form.price.data, "currency": market.settings.costing.currency},
            }
        )
        with market.database.write() as session:
            model_id = sharing.publish(session, market.settings, actor=_user(), body=body).id
    except ValidationError as exc:
        for problem in field_errors(exc):
            flash(f"{problem['field']}: {problem['message']}", "error")
        return redirect(back, code=303)
    except MarketError as exc:
        if exc.status == 404:
            raise
        flash(exc.message, "error")
        return redirect(back, code=303)
    flash("Shared: other researchers can now acquire this model.", "info")
    return redirect(url_for("sharing.model_page", model_id=model_id), code=303)


def shared_models_for(dataset_id: str) -> list[Any]:
    """The dataset page's list of what already exists, shown before its quote form."""
    with services().database.read() as session:
        found = sharing.search(session, dataset_id=dataset_id, page_size=PAGE_SIZE)
        return [sharing.to_public(session, m, actor=_user()) for m in found.items]


def publish_form_for(run: Any) -> dict[str, Any] | None:
    """On a run's page: its buyer's publish form once delivered, or the model it became."""
    if not current_user.is_authenticated:
        return None
    with services().database.read() as session:
        published = sharing.published_for_run(session, run.id)
    if published is not None:
        return {"published": published, "form": None}
    if run.buyer_id != _user().id or run.status is not RunStatus.SUCCEEDED:
        return None
    return {"published": None, "form": PublishForm(formdata=None)}


def sharing_avoided(platform: bool = False) -> sharing.Avoided:
    """Totals of the training that acquisitions avoided, for the dashboards."""
    with services().database.read() as session:
        return sharing.avoided(session, actor=_user(), platform=platform)


def init_views(app: Flask) -> None:
    app.register_blueprint(bp)
    app.add_template_global(shared_models_for, "shared_models_for")
    app.add_template_global(publish_form_for, "publish_form_for")
    app.add_template_global(sharing_avoided, "sharing_avoided")
