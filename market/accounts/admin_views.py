"""The admin's accounts page: search, approve, change roles, suspend and reactivate.

Each button is a small POST form with its CSRF token; every change goes through
market.accounts.admin (one transaction, one audit entry per change) and comes back to the
list with the search kept.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from market.accounts import admin
from market.accounts.forms import ConfirmForm, RoleForm, UserFilterForm
from market.accounts.models import AccountStatus, Role, User
from market.accounts.services import require_role
from market.errors import MarketError
from market.services import services

admin_bp = Blueprint("accounts_admin", __name__)


@admin_bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


PAGE_SIZE = 100


def _admin() -> User:
    user: User = current_user
    require_role(user, Role.ADMIN)
    return user


@admin_bp.get("/admin/users")
@login_required
def users_page() -> str:
    actor = _admin()
    form = UserFilterForm(request.args)
    form.validate()
    role = Role(form.role.data) if form.role.data in set(Role) else None
    status = AccountStatus(form.status.data) if form.status.data in set(AccountStatus) else None
    with services().database.read() as db:
        page = admin.search_users(
            db, actor=actor, q=form.q.data or "", role=role, status=status, limit=PAGE_SIZE
        )
    return render_template(
        "admin_users.html",
        form=form,
        page=page,
        confirm_form=ConfirmForm(),
        role_form=RoleForm(),
        roles=[r.value for r in Role],
        query=request.query_string.decode(errors="replace"),
    )


def _back() -> Response:
    query = {k: v for k, v in request.args.items() if k in {"q", "role", "status"} and v}
    target = url_for("accounts_admin.users_page")
    return redirect(target + ("?" + urlencode(query) if query else ""))


def _change(user_id: int, *, role: Role | None = None, status: AccountStatus | None = None) -> None:
    actor = _admin()
    try:
        with services().database.write() as db:
            user = admin.update_user(db, actor=actor, user_id=user_id, role=role, status=status)
            email = user.email
    except MarketError as exc:
        flash(exc.message[0].upper() + exc.message[1:] + ".", "error")
        return
    if role is not None:
        flash(f"{email} is now {role.value}; their web sessions ended.", "info")
    elif status is AccountStatus.SUSPENDED:
        flash(f"{email} is suspended: their sessions and API tokens stopped.", "info")
    else:
        flash(f"{email} is active.", "info")


@admin_bp.post("/admin/users/<int:user_id>/status/<status>")
@login_required
def set_status(user_id: int, status: str) -> Response:
    _admin()
    if ConfirmForm().validate_on_submit() and status in {"active", "suspended"}:
        _change(user_id, status=AccountStatus(status))
    return _back()


@admin_bp.post("/admin/users/<int:user_id>/role")
@login_required
def set_role(user_id: int) -> Response:
    _admin()
    form = RoleForm()
    if form.validate_on_submit():
        _change(user_id, role=Role(form.role.data))
    else:
        flash("Choose one of the four roles.", "error")
    return _back()
