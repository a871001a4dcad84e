"""Ledger pages: the privacy ledger, the cost ledger, the owner's dashboard, the audit page.

Scoping is market.visibility's, applied by the ledgers (market.trading.ledgers): auditors
and admins read everything, owners their datasets' releases and the costs of runs on their
data, researchers the costs of their own runs. The downloads are the JSON API's content
under the session login (the API wants a bearer token a browser does not have).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, render_template, request, stream_with_context
from flask_login import current_user, login_required
from markupsafe import Markup

from market import audit
from market.accounts.models import Role, User
from market.accounts.services import require_role
from market.audit import export, log, signing
from market.ledgers_web import entries, summary
from market.services import services
from market.trading import ledgers


def _charts() -> Any:
    """matplotlib takes about a second to import: load it on the first chart, not at start."""
    from market.ledgers_web import charts

    return charts


bp = Blueprint("ledgers_web", __name__)


def _user() -> User:
    user: User = current_user
    return user


def _download(body: str, mimetype: str, filename: str) -> Response:
    return Response(
        body,
        mimetype=mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "private, no-store",
        },
    )


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


# --- privacy ledger --------------------------------------------------------------------


@bp.get("/ledger/privacy")
@login_required
def privacy_index() -> str:
    market = services()
    with market.database.read() as session:
        datasets = summary.privacy_datasets(
            session, actor=_user(), accountant=market.settings.trading.accountant
        )
    return render_template("ledger_privacy.html", datasets=datasets, dataset=None)


@bp.get("/ledger/privacy/<dataset_id>")
@login_required
def privacy_page(dataset_id: str) -> str:
    market = services()
    with market.database.read() as session:
        dataset, releases = ledgers.privacy_ledger(session, actor=_user(), dataset_id=dataset_id)
        rows = summary.release_rows(releases)
        epsilons = summary.counted_epsilons(releases)
    return render_template(
        "ledger_privacy.html",
        dataset=dataset,
        rows=rows,
        chart=_charts().epsilon_steps(epsilons, cap=dataset.epsilon_total),
        committed=epsilons[-1] if epsilons else 0.0,
        accountant=market.settings.trading.accountant,
    )


@bp.get("/ledger/privacy/<dataset_id>.csv")
@login_required
def privacy_csv(dataset_id: str) -> Response:
    with services().database.read() as session:
        _, releases = ledgers.privacy_ledger(session, actor=_user(), dataset_id=dataset_id)
        body = summary.privacy_csv(releases)
    return _download(body, "text/csv", f"privacy-ledger-{dataset_id}.csv")


@bp.get("/ledger/privacy/<dataset_id>.json")
@login_required
def privacy_json(dataset_id: str) -> Response:
    market = services()
    with market.database.read() as session:
        dataset, releases = ledgers.privacy_ledger(session, actor=_user(), dataset_id=dataset_id)
        body = summary.privacy_json(dataset, releases, market.settings.trading.accountant)
    return _download(_json(body), "application/json", f"privacy-ledger-{dataset_id}.json")


# --- cost ledger -----------------------------------------------------------------------


@bp.get("/ledger/costs")
@login_required
def costs_page() -> str:
    with services().database.read() as session:
        rows = ledgers.cost_rows(session, actor=_user())
        titles = summary.dataset_titles(session, {r["dataset_id"] for r in rows})
    times, series = summary.cost_series(rows)
    return render_template(
        "ledger_costs.html",
        rows=rows,
        titles=titles,
        totals=summary.cost_summary(rows),
        chart=_charts().over_time(times, series) if times else None,
    )


@bp.get("/ledger/costs.csv")
@login_required
def costs_csv() -> Response:
    with services().database.read() as session:
        rows = ledgers.cost_rows(session, actor=_user())
    return _download(summary.cost_csv(rows), "text/csv", "cost-ledger.csv")


@bp.get("/ledger/costs.json")
@login_required
def costs_json() -> Response:
    with services().database.read() as session:
        rows = ledgers.cost_rows(session, actor=_user())
    return _download(_json(summary.cost_json(rows)), "application/json", "cost-ledger.json")


# --- owner dashboard -------------------------------------------------------------------


@bp.get("/dashboard")
@login_required
def dashboard() -> str:
    require_role(_user(), Role.OWNER)
    market = services()
    with market.database.read() as session:
        rows = ledgers.cost_rows(session, actor=_user())
        datasets = summary.owner_dashboard(
            session, actor=_user(), rows=rows, accountant=market.settings.trading.accountant
        )
    times, series = summary.cost_series(rows)
    budgets = [(d["title"][:32], d["epsilon_committed"], d["epsilon_total"]) for d in datasets]
    return render_template(
        "owner_dashboard.html",
        datasets=datasets,
        overall=summary.cost_summary(rows)["overall"],
        budget_chart=_charts().budget_bars(budgets) if budgets else None,
        chart=_charts().over_time(times, series, prefix="owner-costs") if times else None,
    )


# --- audit -------------------------------------------------------------------------------


def _latest_checkpoint() -> Any:
    """The newest signed checkpoint; like the API, sign a first one if none exists yet."""
    market = services()
    with market.database.read() as session:
        row = log.latest_checkpoint(session)
        size = log.tree_size(session)
    if row is None:
        with market.database.write() as session:
            row = log.checkpoint(session, market.settings)
    return audit.checkpoint_json(row), size


@bp.get("/audit")
@login_required
def audit_page() -> str:
    require_role(_user(), Role.AUDITOR)
    checkpoint, size = _latest_checkpoint()
    from market.audit.api import latest_privacy_reports

    with services().database.read() as session:
        reports = latest_privacy_reports(session)
    return render_template("audit.html", checkpoint=checkpoint, tree_size=size, reports=reports)


@bp.get("/audit/log.jsonl")
@login_required
def audit_log_download() -> Response:
    """The signed log as ``market audit export`` writes it, streamed: a checkpoint of the
    current size is signed first, so the file is covered by a signature it contains."""
    require_role(_user(), Role.AUDITOR)
    market = services()
    size = export.sign_for_export(market.database, market.settings)
    lines = export.export_lines(market.database, market.settings, size)
    return Response(
        stream_with_context(lines),
        mimetype="application/jsonl",
        headers={
            "Content-Disposition": f'attachment; filename="audit-log-{size}.jsonl"',
            "Cache-Control": "private, no-store",
        },
    )


@bp.get("/audit/entries")
@login_required
def audit_entries_page() -> str:
    """Browse the log: filter by kind, subject and date (UTC days), newest first, paged."""
    require_role(_user(), Role.AUDITOR)
    filters = entries.EntryFilters.from_args(request.args)
    with services().database.read() as session:
        found = entries.browse(session, filters)
        kinds = entries.kinds(session)
    return render_template("audit_entries.html", found=found, filters=filters, kinds=kinds)


@bp.get("/audit/public-key.pem")
@login_required
def audit_public_key() -> Response:
    require_role(_user(), Role.AUDITOR)
    settings = services().settings
    try:
        pem = signing.public_key_path(settings).read_text()
    except FileNotFoundError:
        pem = signing.public_key_pem(signing.load_signing_key(settings).public_key())
    return _download(pem, "application/x-pem-file", "signing.pub")


@bp.get("/audit/checkpoint.txt")
@login_required
def audit_checkpoint_note() -> Response:
    require_role(_user(), Role.AUDITOR)
    checkpoint, _ = _latest_checkpoint()
    return _download(checkpoint["note"], "text/plain", "kept.txt")


# --- the run page's receipt chart ----------------------------------------------------------


def cost_breakdown_chart(receipt: dict[str, Any] | None, run_id: str = "run") -> Markup | None:
    """Template global for run.html: the measured terms as bars (None without a receipt)."""
    found = summary.receipt_terms(receipt)
    if found is None:
        return None
    terms, currency = found
    return _charts().cost_breakdown(terms, currency=currency, prefix=f"receipt-{run_id[:12]}")
