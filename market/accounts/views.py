"""Web pages of accounts: sign up, verify, sign in and out, forgotten and changed passwords,
and the account page with API tokens."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from market.accounts import onboarding
from market.accounts import services as accounts
from market.accounts.errors import AccountPending, SignupClosed
from market.accounts.forms import (
    ChangePasswordForm,
    ConfirmForm,
    EmailForm,
    LoginForm,
    NewPasswordForm,
    NewTokenForm,
    SignupForm,
)
from market.accounts.limits import mail_link_limit, mail_link_scope, signup_limit, signup_scope
from market.accounts.mail import current_mailer
from market.accounts.models import User
from market.accounts.sessions import SESSION_GENERATION_KEY
from market.errors import Conflict, InvalidCredentials, MarketError, NotFound, ValidationFailed
from market.extensions import limiter
from market.security import login_failed, login_rate_limit, mark_login_failed
from market.services import services

bp = Blueprint("accounts", __name__)


@bp.after_request
def _no_store(response: Response) -> Response:
    """Pages with one-time links, passwords and tokens are never cached (a shared
    computer's back button must not show them)."""
    response.headers["Cache-Control"] = "no-store"
    return response


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
        except AccountPending as exc:
            form.form_errors.append(exc.message[0].upper() + exc.message[1:] + ".")
            return render_template("login.html", form=form), 403
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
        password_form=ChangePasswordForm(),
        new_secret=session.pop("new_token_secret", None),
    )


def _form_error(form: FlaskForm, exc: MarketError) -> None:
    """A service's refusal on the form: field messages where it names fields."""
    form.form_errors.append(exc.message)


@bp.route("/signup", methods=["GET", "POST"])
@limiter.shared_limit(signup_limit, scope=signup_scope, methods=["POST"])
def signup() -> str | Response | tuple[str, int]:
    market = services()
    closed = market.settings.accounts.signup == onboarding.CLOSED
    form = SignupForm()
    if closed:
        return render_template("signup.html", form=form, closed=True), 403
    if form.validate_on_submit():
        try:
            created = onboarding.sign_up_use_case(
                market,
                current_mailer(),
                email=form.email.data or "",
                password=form.password.data or "",
                role=form.role.data or "",
            )
        except SignupClosed:
            return render_template("signup.html", form=form, closed=True), 403
        except (ValidationFailed, Conflict) as exc:
            _form_error(form, exc)
            return render_template("signup.html", form=form, closed=False), exc.status
        if created.status == "pending":
            flash(
                f"Account created. We sent a link to {created.email} to confirm the address; "
                "an administrator approves new accounts, and you can sign in once they have.",
                "info",
            )
        else:
            flash(
                f"Account created. We sent a link to {created.email} to confirm the address; "
                "sign in now (listing and buying wait for the confirmation).",
                "info",
            )
        return redirect(url_for("accounts.login"))
    status = 422 if request.method == "POST" else 200
    return render_template("signup.html", form=form, closed=False), status


@bp.get("/verify-email/<secret>")
def verify_email(secret: str) -> tuple[str, int]:
    try:
        with services().database.write() as db:
            user = onboarding.verify_email(db, secret=secret[:200])
            email, pending = user.email, not user.is_approved
    except MarketError as exc:
        return render_template("verify_email.html", error=exc.message, code=exc.code), exc.status
    return render_template("verify_email.html", error=None, email=email, pending=pending), 200


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.shared_limit(mail_link_limit, scope=mail_link_scope, methods=["POST"])
def password_forgot() -> str | tuple[str, int]:
    form = EmailForm()
    if form.validate_on_submit():
        onboarding.request_reset_use_case(services(), current_mailer(), email=form.email.data or "")
        return render_template("password_forgot.html", form=form, sent=True)
    status = 422 if request.method == "POST" else 200
    return render_template("password_forgot.html", form=form, sent=False), status


@bp.route("/password/reset/<secret>", methods=["GET", "POST"])
def password_reset(secret: str) -> str | Response | tuple[str, int]:
    market = services()
    secret = secret[:200]
    form = NewPasswordForm()
    try:
        with market.database.read() as db:
            onboarding.check_reset_link(db, secret=secret)
    except MarketError as exc:
        return render_template("password_reset.html", form=None, error=exc.message), exc.status
    if form.validate_on_submit():
        try:
            with market.database.write() as db:
                onboarding.finish_reset(
                    db,
                    secret=secret,
                    new_password=form.password.data or "",
                    passwords=market.passwords,
                )
        except ValidationFailed as exc:
            _form_error(form, exc)
            return render_template("password_reset.html", form=form, error=None), exc.status
        except MarketError as exc:
            return render_template("password_reset.html", form=None, error=exc.message), exc.status
        if current_user.is_authenticated:
            logout_user()
        session.clear()
        flash("Your password is changed, and every session of the account ended: sign in.", "info")
        return redirect(url_for("accounts.login"))
    status = 422 if request.method == "POST" else 200
    return render_template("password_reset.html", form=form, error=None), status


@bp.post("/account/password")
@login_required
def change_password() -> Response | tuple[str, int]:
    form = ChangePasswordForm()
    user: User = current_user
    market = services()
    if form.validate_on_submit():
        try:
            with market.database.write() as db:
                onboarding.change_password(
                    db,
                    user=user,
                    current_password=form.current_password.data or "",
                    new_password=form.new_password.data or "",
                    passwords=market.passwords,
                )
        except (ValidationFailed, InvalidCredentials) as exc:
            _form_error(form, exc)
        else:
            # This browser stays signed in under the new generation; every other ends.
            session[SESSION_GENERATION_KEY] = user.session_generation
            flash("Password changed: every other session and every API token ended.", "info")
            return redirect(url_for("accounts.account"))
    with market.database.read() as db:
        tokens = accounts.list_tokens(db, actor=user)
    page = render_template(
        "account.html",
        tokens=tokens,
        new_token_form=NewTokenForm(),
        confirm_form=ConfirmForm(),
        password_form=form,
        new_secret=None,
    )
    return page, 422


@bp.post("/account/verify-email")
@login_required
@limiter.shared_limit(mail_link_limit, scope=mail_link_scope)
def resend_verification() -> Response:
    form = ConfirmForm()
    user: User = current_user
    if form.validate_on_submit():
        onboarding.request_verification_use_case(services(), current_mailer(), email=user.email)
        flash(f"A new confirmation link is on its way to {user.email}.", "info")
    return redirect(url_for("accounts.account"))


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
