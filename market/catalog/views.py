"""Catalog pages: search, a dataset's page, an owner's datasets and the upload form.

The upload form is read as a stream (market.catalog.streams.StreamingForm), never through
``request.form``/``request.files``, so the file's plaintext is never spooled to disk. For the
same reason it is exempt from the global CSRF check (which would parse the whole form) and
checks the form's CSRF token itself before reading the file.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf.csrf import validate_csrf
from pydantic import ValidationError
from werkzeug.wrappers import Response
from wtforms import ValidationError as CsrfInvalid

from market.accounts.forms import ConfirmForm
from market.accounts.models import Role, User
from market.accounts.services import require_role
from market.catalog import drafts, editing, limits, profile, wizard
from market.catalog import services as catalog
from market.catalog.editing import ListingEdit
from market.catalog.schemas import DatasetCreate
from market.catalog.streams import StreamingForm, discard_rest
from market.catalog.uploads import delist_dataset, list_staged_upload, upload_dataset_file
from market.errors import MarketError, ValidationFailed, field_errors
from market.extensions import csrf
from market.money import from_minor
from market.services import services

bp = Blueprint("catalog", __name__)


@bp.after_request
def _finish_upload_body(response: Response) -> Response:
    """The upload form refused mid-body (or before it) leaves bytes unread: drain them up
    to a bound so a keep-alive connection stays usable, else ask for it to be closed."""
    if request.endpoint in ("catalog.new_dataset", "catalog.inspect_file"):
        limit = services().settings.catalog.max_upload_bytes + (2 << 20)
        if not discard_rest(request.stream, max_bytes=limit):
            response.headers["Connection"] = "close"
    return response


EXAMPLE_METADATA = {
    "title": "Breast cancer diagnoses",
    "description": "Cell nucleus measurements with benign/malignant labels.",
    "licence": "CC-BY-4.0",
    "tags": ["health"],
    "format": "csv",
    "label": "diagnosis",
    "columns": [
        {"name": "radius", "type": "numeric", "min": 0, "max": 40},
        {"name": "texture", "type": "numeric", "min": 0, "max": 50},
        {"name": "diagnosis", "type": "categorical", "categories": ["benign", "malignant"]},
    ],
    "privacy": {"epsilon_total": 10.0, "delta": 1e-6, "max_epsilon_per_run": 2.0},
    "price": {"per_run": "5.00", "per_epsilon": "2.00", "currency": "EUR"},
}


def _user() -> User:
    user: User = current_user
    return user


@bp.get("/datasets")
@login_required
def catalog_page() -> str:
    q = request.args.get("q", "")[:200]
    tag = request.args.get("tag", "")[:40]
    page = max(1, min(request.args.get("page", 1, type=int) or 1, 10_000))
    market = services()
    with market.database.read() as session:
        found = catalog.search(
            session,
            actor=_user(),
            q=q,
            tag=tag,
            page=page,
            page_size=market.settings.catalog.page_size,
        )
        items = catalog.summaries(session, found.items)
    return render_template("catalog.html", items=items, found=found, q=q, tag=tag)


@bp.get("/datasets/<dataset_id>")
@login_required
def dataset_page(dataset_id: str) -> str:
    with services().database.read() as session:
        dataset = catalog.get_dataset(session, actor=_user(), dataset_id=dataset_id)
        public = catalog.to_public(session, dataset)
    return render_template(
        "dataset.html",
        dataset=public,
        is_owner=dataset.owner_id == _user().id,
        confirm_form=ConfirmForm(),
    )


@bp.get("/my/datasets")
@login_required
def my_datasets() -> str:
    require_role(_user(), Role.OWNER)
    with services().database.read() as session:
        found = catalog.search(session, actor=_user(), mine=True, page_size=200)
        items = catalog.summaries(session, found.items)
    return render_template("my_datasets.html", items=items, confirm_form=ConfirmForm())


@bp.get("/datasets/new")
@login_required
def new_dataset_form() -> str:
    require_role(_user(), Role.OWNER)
    return render_template(
        "new_dataset.html", metadata=json.dumps(EXAMPLE_METADATA, indent=2), errors=[]
    )


def _again(message: str, status: int) -> tuple[str, int]:
    """Step 1 again, with the file's problem at the top and on the file field."""
    page = render_template(
        "new_dataset.html",
        metadata=json.dumps(EXAMPLE_METADATA, indent=2),
        errors=[],
        page_errors=[("file", message)],
    )
    return page, status


def _sentence(message: str) -> str:
    message = message.strip()
    message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


def _profile_of(staged: drafts.StagedUpload, head: bytes, cap: int) -> profile.FileProfile:
    """The profile of the upload's first ``cap`` bytes (a CSV cut at its last whole line)."""
    if staged.plaintext_bytes > cap:
        if staged.format != "csv":
            raise drafts.too_large_to_profile(staged, cap)
        head = head[: head.rfind(b"\n") + 1]
    return profile.profile_file(staged.format, head)


def _wizard_page(
    form: wizard.WizardForm,
    staged: drafts.StagedUpload,
    key: str,
    found: profile.FileProfile,
    page_errors: list[tuple[str, str]] | None = None,
    metadata_text: str | None = None,
) -> str:
    return render_template(
        "new_dataset.html",
        metadata=metadata_text or json.dumps(wizard.metadata_of(form), indent=2),
        errors=[],
        profile=found,
        filename=staged.filename,
        form=form,
        draft=staged,
        draft_key=key,
        partial=staged.plaintext_bytes > services().settings.catalog.max_in_memory_bytes,
        page_errors=page_errors or [],
        field_errors=dict(page_errors or []),
        rare_rows=wizard.RARE_ROWS,
    )


def _private(page: str, status: int = 200) -> Response:
    """The wizard's pages carry the owner's profile and key: never cached anywhere."""
    return Response(
        page, status=status, mimetype="text/html", headers={"Cache-Control": "private, no-store"}
    )


@bp.post("/datasets/new/inspect")
@csrf.exempt
@login_required
def inspect_file() -> Response | tuple[str, int]:
    """The wizard's first step: the owner's file is encrypted as it arrives (the one upload;
    market.catalog.drafts) while its first part is profiled in memory; the profile and the
    form of suggested choices are shown to that owner only, with the file's key."""
    require_role(_user(), Role.OWNER)
    market = services()
    boundary = request.mimetype_params.get("boundary")
    if request.mimetype != "multipart/form-data" or not boundary:
        abort(400, "the inspection form must be sent as multipart/form-data")
    settings = market.settings.catalog
    form = StreamingForm(request.stream, boundary, max_bytes=settings.max_upload_bytes + (1 << 20))
    try:
        validate_csrf(form.read_fields().get("csrf_token"))
    except CsrfInvalid:
        abort(400, "the form's CSRF token is missing or expired; reload the page")
    drafts.reap_drafts(market)
    if not form.filename:
        return _again("Choose the file to inspect.", 422)
    cap = settings.max_in_memory_bytes
    try:
        staged, key, head = drafts.stage_upload(
            market, owner=_user(), filename=form.filename, chunks=form.file_chunks(), keep_bytes=cap
        )
    except MarketError as exc:
        return _again(_sentence(exc.message), exc.status)
    name = form.filename.lower()
    fmt = limits.sniff(head[:8]) or ("npz" if name.endswith(".npz") else "csv")
    staged = dataclasses.replace(staged, format=fmt)
    try:
        if name.endswith((".parquet", ".pq")) and fmt != "parquet":  # not read as CSV
            raise ValidationFailed(
                "the file is named as Parquet but is not a Parquet file (it does not start "
                "with PAR1)",
                details={"field": "file"},
            )
        found = _profile_of(staged, head, cap)
        drafts.save_record(market, staged)
    except BaseException as exc:
        drafts.discard(market, staged)  # a file that cannot be profiled is not kept
        if isinstance(exc, MarketError):
            return _again(_sentence(exc.message), exc.status)
        raise
    finally:
        head = b""  # the plaintext leaves memory with the request
    title = form.filename.rsplit("/", 1)[-1].rsplit(".", 1)[0][:200] or "My dataset"
    start = wizard.initial_form(found, title=title, currency=market.settings.costing.currency)
    return _private(_wizard_page(start, staged, key, found))


@bp.post("/datasets/new/list")
@login_required
def list_upload() -> Response | tuple[str, int]:
    """The wizard's last step: no second upload. The file encrypted at step 1 is decrypted
    in memory with the key the owner's page sends back, checked against the chosen
    description and listed; any problem is shown on the form (the upload waits)."""
    require_role(_user(), Role.OWNER)
    market = services()
    settings = market.settings.catalog
    try:
        staged, data_key = drafts.open_staged(
            market,
            owner=_user(),
            draft_id=request.form.get("draft", ""),
            key_text=request.form.get("draft_key", ""),
        )
        head = drafts.head(market, staged, data_key, max_bytes=settings.max_in_memory_bytes)
        found = _profile_of(staged, head, settings.max_in_memory_bytes)
    except MarketError as exc:
        return _again(_sentence(exc.message), exc.status)
    finally:
        head = b""
    key = request.form.get("draft_key", "")
    currency = market.settings.costing.currency
    use = request.form.get("use", "form")
    if use == "json":  # the JSON form carries no choices: the form shows the suggestions
        title = staged.filename.rsplit("/", 1)[-1].rsplit(".", 1)[0][:200] or "My dataset"
        form = wizard.initial_form(found, title=title, currency=currency)
    else:
        form = wizard.read_form(found, request.form, currency=currency)
    metadata_text = request.form.get("metadata") if use == "json" else None
    if use == "refresh":
        return _private(_wizard_page(form, staged, key, found))
    if use == "json":
        try:
            data: DatasetCreate | None = DatasetCreate.model_validate_json(metadata_text or "{}")
            errors: list[tuple[str, str]] = []
        except ValidationError as exc:
            data = None
            errors = [("metadata", f"{e['field']}: {e['message']}") for e in field_errors(exc)]
    else:
        data, errors = wizard.validate(form)
    if data is not None:
        try:
            keep = wizard.kept_columns(form) if use != "json" else None
            dataset = list_staged_upload(
                market, actor=_user(), staged=staged, data_key=data_key, data=data, keep=keep
            )
        except MarketError as exc:
            if exc.status in (403, 404):
                raise
            target = "metadata" if use == "json" else wizard.problem_field(form, exc.details)
            errors = [(target, _sentence(exc.message))]
        else:
            del data_key  # forgotten: the listing is readable by the workers only
            flash(f"Listed “{dataset.title}” with {dataset.rows:,} rows.", "info")
            return redirect(url_for("catalog.dataset_page", dataset_id=dataset.id), code=303)
    page = _wizard_page(form, staged, key, found, errors, metadata_text)
    return _private(page, 422)


@bp.post("/datasets/new")
@csrf.exempt
@login_required
def new_dataset() -> Response | tuple[str, int]:
    require_role(_user(), Role.OWNER)
    market = services()
    mimetype = request.mimetype
    boundary = request.mimetype_params.get("boundary")
    if mimetype != "multipart/form-data" or not boundary:
        abort(400, "the upload form must be sent as multipart/form-data")
    form = StreamingForm(
        request.stream, boundary, max_bytes=market.settings.catalog.max_upload_bytes + (1 << 20)
    )
    try:
        fields = form.read_fields()
        validate_csrf(fields.get("csrf_token"))
    except CsrfInvalid:
        abort(400, "the form's CSRF token is missing or expired; reload the page")
    metadata_text = fields.get("metadata", "")

    def form_error(messages: list[str], status: int) -> tuple[str, int]:
        return render_template("new_dataset.html", metadata=metadata_text, errors=messages), status

    try:
        data = DatasetCreate.model_validate_json(metadata_text or "{}")
    except ValidationError as exc:
        return form_error([f"{e['field']}: {e['message']}" for e in field_errors(exc)], 422)
    if form.filename is None:
        return form_error(["choose the dataset's file"], 422)
    try:
        with market.database.write() as session:
            draft = catalog.create_draft(
                session,
                owner=_user(),
                data=data,
                currency=market.settings.costing.currency,
                limits=market.settings.catalog,
            )
        content_type = catalog.MEDIA_TYPE_OF[draft.format]
    except MarketError as exc:
        return form_error([exc.message], exc.status)
    try:
        dataset = upload_dataset_file(
            market,
            actor=_user(),
            dataset_id=draft.id,
            content_type=content_type,
            chunks=form.file_chunks(),
        )
    except BaseException as exc:
        with market.database.write() as session:
            catalog.discard_draft(session, actor=_user(), dataset_id=draft.id)
        if isinstance(exc, MarketError):
            return form_error([exc.message], exc.status)
        raise
    flash(f"Listed “{dataset.title}” with {dataset.rows:,} rows.", "info")
    return redirect(url_for("catalog.dataset_page", dataset_id=dataset.id))


def _edit_values(dataset_id: str) -> dict[str, Any]:
    with services().database.read() as session:
        dataset = catalog.get_own_dataset(session, actor=_user(), dataset_id=dataset_id)
        tags = catalog.tags_of(session, [dataset.id]).get(dataset.id, [])
        return {
            "id": dataset.id,
            "title": dataset.title,
            "description": dataset.description,
            "licence": dataset.licence,
            "tags": ", ".join(sorted(tags)),
            "per_run": str(from_minor(dataset.price_per_run_minor, dataset.currency)),
            "per_epsilon": str(from_minor(dataset.price_per_epsilon_minor, dataset.currency)),
            "epsilon_total": f"{dataset.epsilon_total:g}",
            "currency": dataset.currency,
            "status": dataset.status.value,
        }


@bp.get("/datasets/<dataset_id>/edit")
@login_required
def edit_dataset_form(dataset_id: str) -> str:
    return render_template("edit_dataset.html", values=_edit_values(dataset_id))


@bp.post("/datasets/<dataset_id>/edit")
@login_required
def edit_dataset(dataset_id: str) -> Response | tuple[str, int]:
    """The owner edits the listing's words, tags, licence and prices, or raises its budget."""
    market = services()
    values = _edit_values(dataset_id)  # 404/403 before anything is parsed
    form = {name: (request.form.get(name) or "") for name in ListingEdit.model_fields}
    errors: list[tuple[str | None, str]] = []
    raw = dict(form, tags=[t.strip() for t in form["tags"].split(",") if t.strip()])
    try:
        edit = ListingEdit.model_validate(raw)
        with market.database.write() as session:
            changes = editing.edit_listing(
                session, actor=_user(), dataset_id=dataset_id, edit=edit, settings=market.settings
            )
    except ValidationError as exc:
        errors = [
            (e["field"].split(".")[0], f"{e['field']}: {e['message']}") for e in field_errors(exc)
        ]
    except MarketError as exc:
        if exc.status in (403, 404):
            raise
        errors = [(str(exc.details.get("field", "")) or None, exc.message)]
    else:
        flash("Saved." if changes else "Nothing changed.", "info")
        return redirect(url_for("catalog.dataset_page", dataset_id=dataset_id), code=303)
    values.update(form)
    page = render_template("edit_dataset.html", values=values, page_errors=errors)
    return page, 422


@bp.post("/datasets/<dataset_id>/delete")
@login_required
def delete_dataset(dataset_id: str) -> Response:
    """Delist (destroying the data key) once the owner has typed the dataset's title."""
    form = ConfirmForm()
    if form.validate_on_submit():
        with services().database.read() as session:
            title = catalog.get_dataset(session, actor=_user(), dataset_id=dataset_id).title
        typed = (request.form.get("confirm_title") or "").strip()
        if typed != title.strip():
            flash("Nothing was delisted: type the dataset's title exactly to confirm.", "error")
            return redirect(url_for("catalog.dataset_page", dataset_id=dataset_id) + "#delist")
        dataset = delist_dataset(services(), actor=_user(), dataset_id=dataset_id)
        flash(f"Delisted “{dataset.title}”; its data key is destroyed.", "info")
    return redirect(url_for("catalog.my_datasets"))
