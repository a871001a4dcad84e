"""Web pages of accounts: sign in, sign out, and the account page with API tokens."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.wrappers import Response

from market.accounts import services as accounts
from market.accounts.forms import ConfirmForm, LoginForm, NewTokenForm
from market.accounts.models import User
from market.accounts.sessions import SESSION_GENERATION_KEY
from market.errors import InvalidCredentials, NotFound
from market.extensions import limiter
from market.security import login_failed, login_rate_limit, mark_login_failed
from market.services import services

bp = Blueprint("accounts", __name__)


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths: an open redirect would help phishing."""
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("web.home")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(login_rate_limit, methods=["POST"], deduct_when=login_failed)
def login() -> str | Response | tuple[str, int]:
    form = LoginForm()
    if form.validate_on_submit():
        market = services()
        try:
            with market.database.write() as db:
                user = accounts.authenticate(
                    db,
                    email=form.email.data or "",
                    password=form.password.data or "",
                    passwords=market.passwords,
                )
        except InvalidCredentials as exc:
            mark_login_failed()
            form.form_errors.append(exc.message)
            return render_template("login.html", form=form), 401
        # Session rotation: nothing from the anonymous session survives sign-in.
        session.clear()
        session.permanent = True
        login_user(user)
        session[SESSION_GENERATION_KEY] = user.session_generation
        return redirect(_safe_next(request.args.get("next")))
    status = 400 if request.method == "POST" else 200
    return render_template("login.html", form=form), status


@bp.post("/logout")
def logout() -> Response:
    form = ConfirmForm()
    if form.validate_on_submit():
        if current_user.is_authenticated:
            # Server-side end: every copy of this account's session cookie stops working.
            with services().database.write() as db:
                user = db.get(User, current_user.id)
                if user is not None:
                    accounts.end_sessions(db, user=user)
        logout_user()
        session.clear()
    return redirect(url_for("web.home"))


@bp.get("/account")
@login_required
def account() -> str:
    user: User = current_user
    with services().database.read() as db:
        tokens = accounts.list_tokens(db, actor=user)
    return render_template(
        "account.html",
        tokens=tokens,
        new_token_form=NewTokenForm(),
        confirm_form=ConfirmForm(),
        new_secret=session.pop("new_token_secret", None),
    )


@bp.post("/account/tokens")
@login_required
def create_token() -> Response | tuple[str, int]:
    form = NewTokenForm()
    user: User = current_user
    if not form.validate_on_submit():
        flash("Give the token a name of at most 80 characters.", "error")
        return redirect(url_for("accounts.account"))
    market = services()
    with market.database.write() as db:
        issued = accounts.issue_token(
            db,
            user=user,
            ttl=timedelta(hours=market.settings.security.token_ttl_hours),
            name=form.name.data or "api",
        )
    # Shown once on the next page (the session cookie is signed and HttpOnly).
    session["new_token_secret"] = issued.secret
    return redirect(url_for("accounts.account"))


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int) -> Response:
    form = ConfirmForm()
    user: User = current_user
    if form.validate_on_submit():
        try:
            with services().database.write() as db:
                accounts.revoke_token(db, actor=user, token_id=token_id)
            flash("Token revoked.", "info")
        except NotFound:
            flash("No such token.", "error")
    return redirect(url_for("accounts.account"))
