"""Trading pages: the quote form's answer, buying, a run's page with live progress, run lists.

Visibility is the services': a run is seen by its buyer, the dataset's owner, auditors and
admins (anyone else gets 404), and only the buyer downloads the model. The run page polls
``/runs/<id>/progress.json`` from a static script (the CSP forbids inline script); without
script it has a plain "Refresh" link.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from flask import (
    Blueprint,
    Flask,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from pydantic import ValidationError
from sqlmodel import Session, col, select
from werkzeug.wrappers import Response

from market.accounts.forms import ConfirmForm
from market.accounts.models import Role, User
from market.accounts.services import require_role
from market.catalog import services as catalog
from market.catalog.models import Dataset
from market.catalog.schemas import DatasetPublic
from market.db import utcnow
from market.errors import MarketError, field_errors
from market.money import plain
from market.services import services
from market.trading import guidance, lifecycle, purchases
from market.trading import services as trading
from market.trading.forms import QuoteForm, SpecInvalid
from market.trading.models import Quote, Run, RunStatus
from market.trading.presenters import quote_public, run_public

bp = Blueprint("trading", __name__)

FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED)


def _user() -> User:
    user: User = current_user
    return user


def new_quote_form(dataset: DatasetPublic) -> QuoteForm:
    """The dataset page's quote form (a template global, so catalog's view needs no change)."""
    return QuoteForm(
        dataset=dataset, worker_classes=list(services().settings.costing.worker_classes)
    )


def _run_rows(session: Session, runs: list[Run]) -> list[dict[str, Any]]:
    """Runs for a table: with the dataset's title and the epsilon that was bought."""
    titles = dict(
        session.exec(
            select(Dataset.id, Dataset.title).where(
                col(Dataset.id).in_({r.dataset_id for r in runs})
            )
        ).all()
    )
    plans = dict(
        session.exec(
            select(Quote.id, Quote.plan).where(col(Quote.id).in_({r.quote_id for r in runs}))
        ).all()
    )
    return [
        {
            "run": run_public(r),
            "title": titles.get(r.dataset_id, r.dataset_id),
            "epsilon": plans.get(r.quote_id, {}).get("epsilon"),
        }
        for r in runs
    ]


# The request's and the planner's field names, as the form's fields (the id the error links
# to) and in words: an error message never names an internal setting.
_FORM_FIELD = {
    "epsilon": "epsilon",
    "delta": "epsilon",
    "metrics_fraction": "epsilon",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "worker_class": "worker_class",
    "deadline": "deadline",
}
_WORDS = {
    "metrics_fraction": "the share of epsilon kept for the noisy metrics",
    "holdout_fraction": "the share of rows held out for the metrics",
    "max_grad_norm": "the clipping norm",
    "batch_size": "batch size",
    "learning_rate": "learning rate",
    "worker_class": "worker class",
}


def _in_words(message: str) -> str:
    for name, words in _WORDS.items():
        message = message.replace(name, words)
    return message[:1].upper() + message[1:]


def _form_field(name: str | None, form: QuoteForm) -> str | None:
    """The id of the form field an error is about (None: about the request as a whole)."""
    if not name:
        return None
    if name.startswith("model") or name.startswith("layers"):
        kind = form.model_kind.data
        return "hidden" if kind == "mlp" else "layers" if kind == "layers" else "model_kind"
    return _FORM_FIELD.get(name.split(".")[0])


@bp.get("/datasets/<dataset_id>/quote")
@login_required
def quote_form_page(dataset_id: str) -> Response:
    """Reloading or revisiting the form's address shows the form (never a 405)."""
    return redirect(url_for("catalog.dataset_page", dataset_id=dataset_id) + "#quote-heading")


@bp.post("/datasets/<dataset_id>/quote")
@login_required
def ask_quote(dataset_id: str) -> Response | tuple[str, int]:
    """Plan and price the run in the form; show the quote (nothing is stored on error).

    Errors are listed at the top of the page (the form posts to ``#errors``, so the browser
    shows the list) with links to their fields, and repeated under each field.
    """
    market = services()
    with market.database.read() as session:
        dataset = catalog.get_dataset(session, actor=_user(), dataset_id=dataset_id)
        public = catalog.to_public(session, dataset)
        is_owner = dataset.owner_id == _user().id
    form = QuoteForm(dataset=public, worker_classes=list(market.settings.costing.worker_classes))
    errors: list[tuple[str | None, str]] = []
    status = 422
    if form.validate_on_submit():
        try:
            quote_request = form.to_request()
            quote = trading.store_quote(
                market.database, actor=_user(), request=quote_request, settings=market.settings
            )
            return redirect(url_for("trading.quote_page", quote_id=quote.id), code=303)
        except SpecInvalid as exc:
            errors.append((_form_field("model", form), _in_words(str(exc))))
        except ValidationError as exc:
            errors.extend(
                (_form_field(e["field"], form), _in_words(f"{e['field']}: {e['message']}"))
                for e in field_errors(exc)
            )
        except MarketError as exc:
            errors.append((_form_field(exc.details.get("field"), form), _in_words(exc.message)))
            status = exc.status
    else:
        errors.extend(
            (name, f"{form[name].label.text}: {message}")
            for name, messages in form.errors.items()
            for message in messages
        )
    by_field: dict[str, list[str]] = {}
    for field_id, message in errors:
        if field_id:
            by_field.setdefault(field_id, []).append(message)
    page = render_template(
        "dataset.html",
        dataset=public,
        is_owner=is_owner,
        confirm_form=ConfirmForm(),
        quote_form=form,
        quote_errors=[message for _, message in errors],
        quote_field_errors=by_field,
        page_errors=errors,
    )
    return page, status


@bp.get("/quotes/<quote_id>")
@login_required
def quote_page(quote_id: str) -> str:
    """The quote, with its fit asked again of the ledger: a purchase since may have used the
    budget, and a quote that no longer fits offers no Buy button but the largest epsilon
    that would fit now."""
    market = services()
    with market.database.read() as session:
        quote = trading.get_quote(session, actor=_user(), quote_id=quote_id)
        dataset = session.get(Dataset, quote.dataset_id)
        assert dataset is not None
        public = quote_public(quote, epsilon_total=dataset.epsilon_total)
        terms = dict(quote.request)
        expired = quote.expires_at <= utcnow()
        used = quote.used_at is not None
        title = dataset.title
        fit = None
        if not used and not expired:
            fit = guidance.fit_now(session, quote=quote, settings=market.settings)
    return render_template(
        "quote.html",
        quote=public,
        terms=terms,
        title=title,
        expired=expired,
        used=used,
        fit=fit,
        buy_form=ConfirmForm(),
    )


@bp.post("/quotes/<quote_id>/buy")
@login_required
def buy(quote_id: str) -> Response:
    """Reserve the budget and create the run (one transaction), then queue it."""
    form = ConfirmForm()
    if not form.validate_on_submit():  # the global CSRF check answers 400 before this
        return redirect(url_for("trading.quote_page", quote_id=quote_id), code=303)
    try:
        run_id = purchases.buy(
            services(),
            actor=_user(),
            quote_id=quote_id,
            start_greenest=request.form.get("start", "greenest") != "now",
        ).id
    except MarketError as exc:
        if exc.status == 404:
            raise
        flash(exc.message, "error")
        return redirect(url_for("trading.quote_page", quote_id=quote_id), code=303)
    flash("Bought: the run is queued and its budget reserved.", "info")
    return redirect(url_for("trading.run_page", run_id=run_id), code=303)


@bp.post("/runs/<run_id>/cancel")
@login_required
def cancel_run(run_id: str) -> Response:
    """The buyer ends a queued or running run (charged as ``lifecycle.cancel`` says)."""
    form = ConfirmForm()
    if not form.validate_on_submit():  # the global CSRF check answers 400 before this
        return redirect(url_for("trading.run_page", run_id=run_id), code=303)
    try:
        run = lifecycle.cancel(services(), actor=_user(), run_id=run_id)
    except MarketError as exc:
        if exc.status == 404:
            raise
        flash(exc.message, "error")
    else:
        flash(f"Run cancelled: {run.error_message}.", "info")
    return redirect(url_for("trading.run_page", run_id=run_id), code=303)


@bp.get("/runs/<run_id>")
@login_required
def run_page(run_id: str) -> str:
    with services().database.read() as session:
        run = trading.get_run(session, actor=_user(), run_id=run_id)
        rows = _run_rows(session, [run])
    return render_template(
        "run.html",
        run=rows[0]["run"],
        title=rows[0]["title"],
        epsilon=rows[0]["epsilon"],
        is_buyer=run.buyer_id == _user().id,
        finished=run.status in FINISHED,
        cancel_form=ConfirmForm(),
    )


@bp.get("/runs/<run_id>/progress.json")
@login_required
def run_progress(run_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """What the run page's script polls: status and progress only."""
    with services().database.read() as session:
        run = trading.get_run(session, actor=_user(), run_id=run_id)
    steps = run.progress_steps
    done = run.status is RunStatus.SUCCEEDED
    percent = 100 if done else (int(100 * run.progress_step / steps) if steps else 0)
    return (
        {
            "status": run.status.value,
            "step": run.progress_step,
            "steps": steps,
            "epsilon_spent": run.progress_epsilon,
            "percent": percent,
            "finished": run.status in FINISHED,
        },
        200,
        {"Cache-Control": "no-store"},
    )


@bp.get("/runs/<run_id>/model")
@login_required
def download_model(run_id: str) -> Response:
    market = services()
    with market.database.read() as session:
        run = trading.model_for_buyer(session, actor=_user(), run_id=run_id)
    # Read whole, as the API does: models are bounded by trading.max_parameters.
    blob = (market.settings.models_dir / str(run.model_name)).read_bytes()
    return Response(
        blob,
        mimetype="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="run-{run.id}.safetensors"',
            "Cache-Control": "private, no-store",
        },
    )


def _runs_page(heading: str, empty: str) -> str:
    dataset_id = request.args.get("dataset_id", "")[:64] or None
    with services().database.read() as session:
        runs = trading.list_runs(session, actor=_user(), dataset_id=dataset_id)
        rows = _run_rows(session, runs)
    return render_template("runs.html", heading=heading, empty=empty, rows=rows)


@bp.get("/my/runs")
@login_required
def my_runs() -> str:
    require_role(_user(), Role.RESEARCHER)
    return _runs_page("My runs", "You have not bought a run yet: ask for a quote on a dataset.")


@bp.get("/my/data-runs")
@login_required
def data_runs() -> str:
    require_role(_user(), Role.OWNER)
    return _runs_page("Runs on my data", "Nobody has bought a run on your datasets yet.")


@bp.get("/runs")
@login_required
def all_runs() -> str:
    require_role(_user(), Role.AUDITOR)
    return _runs_page("All runs", "No run has been bought yet.")


def _significant(value: Any, digits: int = 3) -> str:
    """A physical quantity for people: 3 significant digits, scientific when tiny."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "—"
    return f"{number:.{digits}g}"


def _duration(value: Any) -> str:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return "—"
    if seconds < 1:
        return f"{seconds:.2g} s"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _amount(value: Any) -> str:
    """A money term as stored ({amount, currency}) or a plain amount string."""
    if isinstance(value, dict):
        return f"{_positional(value.get('amount'))} {value.get('currency', '')}".strip()
    return "—" if value is None else _positional(value)


def _positional(amount: Any) -> str:
    """A stored amount in positional notation (receipts stored before ``plain`` may hold
    ``9.6E-8``); anything that is not a number is shown as it is."""
    try:
        return plain(Decimal(str(amount)))
    except (InvalidOperation, ValueError):
        return str(amount)


def init_views(app: Flask) -> None:
    app.register_blueprint(bp)
    app.add_template_global(new_quote_form, "new_quote_form")
    app.add_template_filter(_significant, "sig")
    app.add_template_filter(_duration, "duration")
    app.add_template_filter(_amount, "amount")
