"""The statements page, and the template global that puts this month's statement on the
owner dashboard and the cost ledger page (their views need no change)."""

from __future__ import annotations

from flask import Blueprint, Flask, render_template, request
from flask_login import current_user, login_required

from market.accounts.models import User
from market.services import services
from market.statements import services as statements

bp = Blueprint("statements", __name__)


def _user() -> User:
    user: User = current_user
    return user


@bp.get("/statements")
@login_required
def statements_page() -> str:
    month = request.args.get("month", "")[:7] or None
    account_id = request.args.get("account_id", type=int)
    market = services()
    with market.database.read() as session:
        found = statements.statement(
            session,
            actor=_user(),
            currency=market.settings.costing.currency,
            month=month,
            account_id=account_id,
        )
    return render_template("statements.html", statement=found)


def monthly_statement(month: str | None = None) -> statements.Statement:
    """The signed-in account's statement (this month by default)."""
    market = services()
    with market.database.read() as session:
        return statements.statement(
            session, actor=_user(), currency=market.settings.costing.currency, month=month
        )


def init_views(app: Flask) -> None:
    from market.costing.pricing import human_emissions, human_energy

    app.register_blueprint(bp)
    # Every receipt, statement and dashboard shows energy and emissions in the unit that
    # suits their size (23.2 mWh, 9.28 mg CO2e), never as 2.32e-05 kWh.
    app.add_template_filter(human_energy, "energy")
    app.add_template_filter(human_emissions, "emissions")
    app.add_template_global(monthly_statement, "monthly_statement")
