"""Account rules: creating users, checking passwords, issuing and revoking API tokens.

Functions take the session and collaborators as arguments and never commit: the caller's
``Database.write()`` block is the one transaction of the use case.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from market.accounts.errors import AccountPending, EmailUnverified
from market.accounts.models import ApiToken, Role, User, UserCreate
from market.accounts.policy import check_password
from market.audit import log as audit
from market.db import utcnow
from market.errors import (
    AuthenticationRequired,
    Conflict,
    InvalidCredentials,
    NotFound,
    PermissionDenied,
    ValidationFailed,
    field_errors,
)
from market.interfaces import PasswordHasher

TOKEN_PREFIX = "mkt_"
#: The roles that move data and money: acting in them needs approval and a verified address.
TRADING_ROLES = frozenset({Role.OWNER, Role.RESEARCHER})


def normalise_email(email: str) -> str:
    return email.strip().lower()


def user_by_email(session: Session, email: str) -> User | None:
    """The account with this address (case-insensitive), or None. An address no account can
    have (a NUL character, which PostgreSQL refuses in a query) is simply unknown."""
    if "\x00" in email:
        return None
    return session.exec(select(User).where(User.email == normalise_email(email))).first()


def create_user(
    session: Session,
    *,
    email: str,
    role: Role | str,
    password: str,
    passwords: PasswordHasher,
    actor_id: int | None = None,
    approved: bool = True,
    verified: bool = True,
    kind: str = "user.created",
) -> User:
    """Add an account; e-mails are unique case-insensitively.

    An account an admin (or the command line) makes is approved and its address taken as
    verified; a self sign-up (market.accounts.onboarding) passes ``verified=False`` and,
    when sign-ups wait for approval, ``approved=False``.
    """
    check_password(password, email=normalise_email(email))
    try:
        data = UserCreate.model_validate(
            {"email": normalise_email(email), "role": role, "password": password}
        )
    except ValidationError as exc:
        fields = field_errors(exc)
        raise ValidationFailed(
            "the account details are not valid: "
            + "; ".join(f"{f['field']}: {f['message']}" for f in fields),
            details={"fields": fields},
        ) from exc
    if session.exec(select(User).where(User.email == data.email)).first() is not None:
        raise Conflict(f"an account for {data.email} already exists", details={"email": data.email})
    user = User.model_validate(
        {"email": data.email, "role": data.role},
        update={
            "password_hash": passwords.hash(password),
            "is_approved": approved,
            "email_verified_at": utcnow() if verified else None,
        },
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        # Two sign-ups for one address at once (PostgreSQL lets both pass the check above):
        # the unique index decides, and the loser gets the same answer as a later one.
        raise Conflict(
            f"an account for {data.email} already exists", details={"email": data.email}
        ) from exc
    audit.append(
        session,
        kind=kind,
        subject=user.id or 0,
        actor_id=actor_id,
        data={"email": user.email, "role": user.role.value, "status": user.status.value},
    )
    return user


def set_password(
    session: Session,
    *,
    user: User,
    password: str,
    passwords: PasswordHasher,
    keep_token_id: int | None = None,
) -> int:
    """Give the account a new password (after the policy's check) and end everything that
    was signed in with the old one: every web session and every API token but
    ``keep_token_id`` (the token of the request that changes it, if any). Returns how many
    tokens were revoked."""
    check_password(password, email=user.email, field="new_password")
    user.password_hash = passwords.hash(password)
    end_sessions(session, user=user)
    return revoke_tokens(session, user=user, keep_token_id=keep_token_id)


def revoke_tokens(session: Session, *, user: User, keep_token_id: int | None = None) -> int:
    """Revoke every live API token of ``user`` (but ``keep_token_id``); how many were."""
    now = utcnow()
    live = session.exec(
        select(ApiToken).where(ApiToken.user_id == user.id, col(ApiToken.revoked_at).is_(None))
    ).all()
    revoked = 0
    for token in live:
        if token.id == keep_token_id:
            continue
        token.revoked_at = now
        session.add(token)
        revoked += 1
    return revoked


def end_sessions(session: Session, *, user: User) -> None:
    """Raise the account's session generation: every web session cookie issued before this
    (a copy taken before sign-out included) is refused from the next request on."""
    user.session_generation = (user.session_generation or 0) + 1
    session.add(user)


def set_active(session: Session, *, user: User, active: bool, actor_id: int | None) -> int:
    """Suspend or reactivate an account; return how many live API tokens were revoked.

    Suspension ends every web session and revokes every API token at once (a token of a
    suspended account was already refused; revoking keeps it refused after reactivation).
    """
    revoked = 0
    if user.is_active and not active:
        revoked = revoke_tokens(session, user=user)
    if user.is_active != active:
        user.is_active = active
        end_sessions(session, user=user)
        audit.append(
            session,
            kind="user.activated" if active else "user.suspended",
            subject=user.id or 0,
            actor_id=actor_id,
            data={"email": user.email, "tokens_revoked": revoked},
        )
    return revoked


def set_role(session: Session, *, user: User, role: Role | str, actor_id: int | None) -> None:
    """Give an account another role; its web sessions end (they carried the old role)."""
    new_role = Role(role)
    if user.role != new_role:
        old = user.role
        user.role = new_role
        end_sessions(session, user=user)
        audit.append(
            session,
            kind="user.role_changed",
            subject=user.id or 0,
            actor_id=actor_id,
            data={"email": user.email, "from": old.value, "to": new_role.value},
        )


def find_user(session: Session, email: str) -> User:
    user = session.exec(select(User).where(User.email == normalise_email(email))).first()
    if user is None:
        raise NotFound(f"no account for {normalise_email(email)}", details={"email": email})
    return user


def authenticate(session: Session, *, email: str, password: str, passwords: PasswordHasher) -> User:
    """The active user with this e-mail and password, rehashing if parameters rose.

    Unknown e-mail, wrong password and a disabled account all get the same error and take
    the same time, so the answer reveals nothing about which accounts exist. An account that
    waits for approval is told so (AccountPending), but only to somebody who knows its
    password.
    """
    user = user_by_email(session, email)
    if user is None:
        passwords.verify_dummy(password)
        raise InvalidCredentials("the e-mail or password is wrong")
    if not passwords.verify(user.password_hash, password) or not user.is_active:
        raise InvalidCredentials("the e-mail or password is wrong")
    if not user.is_approved:
        raise AccountPending(
            "this account waits for an administrator's approval; you can sign in once it "
            "is approved"
        )
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    user.last_login_at = utcnow()
    session.add(user)
    return user


def require_role(actor: User, *roles: Role) -> None:
    """Refuse unless ``actor`` holds one of ``roles`` (admins hold every role).

    Owners and researchers list data and buy runs: acting in those roles also needs an
    approved account and a verified e-mail address (403 ``account_pending`` or
    ``email_unverified``), so a sign-up cannot trade before it is vouched for.
    """
    if actor.role == Role.ADMIN:
        return
    if actor.role not in roles:
        wanted = " or ".join(r.value for r in roles)
        raise PermissionDenied(f"this needs the {wanted} role", details={"role": actor.role})
    if actor.role in TRADING_ROLES:
        if not actor.is_approved:
            raise AccountPending("this account waits for an administrator's approval")
        if actor.email_verified_at is None:
            raise EmailUnverified(
                f"verify your e-mail address first: follow the link we sent to {actor.email} "
                "(your account page sends a new one)",
                details={"email": actor.email},
            )


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued token: ``secret`` is shown to the user once and never stored."""

    token: ApiToken
    secret: str


def hash_token(secret: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough (no password stretching).
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(session: Session, *, user: User, ttl: timedelta, name: str = "api") -> IssuedToken:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.model_validate(
        {"name": name},
        update={
            "user_id": user.id,
            "token_hash": hash_token(secret),
            "prefix": secret[: len(TOKEN_PREFIX) + 6],
            "expires_at": utcnow() + ttl,
        },
    )
    session.add(token)
    session.flush()
    return IssuedToken(token=token, secret=secret)


def resolve_token(session: Session, secret: str, *, now: datetime) -> tuple[User, ApiToken]:
    """The active owner of a live token; unknown, expired and revoked tokens are refused alike."""
    # One statement (every API request asks this): the token and its owner joined.
    found = session.exec(
        select(ApiToken, User)
        .join(User, col(User.id) == col(ApiToken.user_id))
        .where(ApiToken.token_hash == hash_token(secret))
    ).first()
    token, user = found if found is not None else (None, None)
    if (
        token is None
        or user is None
        or not user.is_active
        or token.revoked_at is not None
        or token.expires_at <= now
    ):
        raise AuthenticationRequired("the token is unknown, expired or revoked")
    return user, token


def token_id_of(session: Session, secret: str) -> int | None:
    """The id of the token with this secret, if any (no check of its state)."""
    token = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(secret))).first()
    return token.id if token is not None else None


def touch_token(session: Session, *, token_id: int, now: datetime) -> None:
    token = session.get(ApiToken, token_id)
    if token is not None:
        token.last_used_at = now
        session.add(token)


def list_tokens(session: Session, *, actor: User) -> list[ApiToken]:
    """The caller's own tokens, newest first (never anybody else's)."""
    statement = (
        select(ApiToken)
        .where(ApiToken.user_id == actor.id)
        .order_by(col(ApiToken.created_at).desc(), col(ApiToken.id).desc())
    )
    return list(session.exec(statement).all())


def revoke_token(session: Session, *, actor: User, token_id: int) -> ApiToken:
    """Revoke one of the caller's tokens. Another user's token reads as not found."""
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != actor.id:
        raise NotFound(f"no token {token_id}", details={"token_id": token_id})
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.add(token)
    return token
