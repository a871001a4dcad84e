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
from sqlmodel import Session, col, select

from market.accounts.models import ApiToken, Role, User, UserCreate
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


def normalise_email(email: str) -> str:
    return email.strip().lower()


def create_user(
    session: Session,
    *,
    email: str,
    role: Role | str,
    password: str,
    passwords: PasswordHasher,
) -> User:
    """Add an account; e-mails are unique case-insensitively."""
    try:
        data = UserCreate.model_validate(
            {"email": normalise_email(email), "role": role, "password": password}
        )
    except ValidationError as exc:
        raise ValidationFailed(
            "the account details are not valid",
            details={"fields": field_errors(exc)},
        ) from exc
    if session.exec(select(User).where(User.email == data.email)).first() is not None:
        raise Conflict(f"an account for {data.email} already exists", details={"email": data.email})
    user = User.model_validate(
        {"email": data.email, "role": data.role}, update={"password_hash": passwords.hash(password)}
    )
    session.add(user)
    session.flush()
    audit.append(
        session,
        kind="user.created",
        subject=user.id or 0,
        actor_id=None,
        data={"email": user.email, "role": user.role.value},
    )
    return user


def set_password(session: Session, *, user: User, password: str, passwords: PasswordHasher) -> None:
    if len(password) < 12:
        raise ValidationFailed("a password needs at least 12 characters")
    user.password_hash = passwords.hash(password)
    end_sessions(session, user=user)


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
        now = utcnow()
        live = session.exec(
            select(ApiToken).where(ApiToken.user_id == user.id, col(ApiToken.revoked_at).is_(None))
        ).all()
        for token in live:
            token.revoked_at = now
            session.add(token)
        revoked = len(live)
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
    the same time, so the answer reveals nothing about which accounts exist.
    """
    user = session.exec(select(User).where(User.email == normalise_email(email))).first()
    if user is None:
        passwords.verify_dummy(password)
        raise InvalidCredentials("the e-mail or password is wrong")
    if not passwords.verify(user.password_hash, password) or not user.is_active:
        raise InvalidCredentials("the e-mail or password is wrong")
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)
    user.last_login_at = utcnow()
    session.add(user)
    return user


def list_users(session: Session, *, actor: User) -> list[User]:
    require_role(actor, Role.ADMIN)
    return list(session.exec(select(User).order_by(col(User.id))).all())


def require_role(actor: User, *roles: Role) -> None:
    """Refuse unless ``actor`` holds one of ``roles`` (admins hold every role)."""
    if actor.role == Role.ADMIN or actor.role in roles:
        return
    wanted = " or ".join(r.value for r in roles)
    raise PermissionDenied(f"this needs the {wanted} role", details={"role": actor.role})


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
    token = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(secret))).first()
    user = session.get(User, token.user_id) if token is not None else None
    if (
        token is None
        or user is None
        or not user.is_active
        or token.revoked_at is not None
        or token.expires_at <= now
    ):
        raise AuthenticationRequired("the token is unknown, expired or revoked")
    return user, token


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
