"""Joining and getting back in: sign-up, e-mail verification, password reset and change.

Two layers, as elsewhere (docs/architecture.md):

* services take the caller's session and never commit: ``sign_up``, ``issue_link``,
  ``consume_link``, ``verify_email``, ``start_reset``, ``finish_reset``, ``change_password``;
* use cases (``*_use_case``) open the one write transaction and, only after it has
  committed, send the mail: a rolled-back sign-up never mails a link, and no transaction
  waits on a mail server.

One-time links are 256 random bits; only their SHA-256 is stored (``MailToken``), as for API
tokens. A link works once, until it expires, and issuing a new link of the same kind retires
the older ones. A password reset ends every web session and revokes every API token of the
account: whoever had the old password, or a session made with it, is out.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlmodel import Session, col, select

from market.accounts import messages
from market.accounts.errors import LinkExpired, LinkUnknown, LinkUsed, SignupClosed
from market.accounts.mail import MailBackend, send_in_background
from market.accounts.models import MailToken, MailTokenPurpose, Role, User
from market.accounts.services import (
    TRADING_ROLES,
    create_user,
    set_password,
    user_by_email,
)
from market.audit import log as audit
from market.db import utcnow
from market.errors import InvalidCredentials, ValidationFailed
from market.interfaces import PasswordHasher
from market.services import Services

#: Sign-up modes of ``accounts.signup``.
OPEN, APPROVAL, CLOSED = "open", "approval", "closed"


def hash_link(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_link(session: Session, *, user: User, purpose: MailTokenPurpose, ttl: timedelta) -> str:
    """A new one-time link secret for ``user``; older unused links of that kind retire."""
    now = utcnow()
    older = session.exec(
        select(MailToken).where(
            MailToken.user_id == user.id,
            MailToken.purpose == purpose,
            col(MailToken.used_at).is_(None),
        )
    ).all()
    for link in older:
        link.used_at = now
        session.add(link)
    secret = secrets.token_urlsafe(32)
    session.add(
        MailToken.model_validate(
            {
                "user_id": user.id,
                "purpose": purpose,
                "token_hash": hash_link(secret),
                "created_at": now,
                "expires_at": now + ttl,
            }
        )
    )
    session.flush()
    return secret


def find_link(
    session: Session, *, secret: str, purpose: MailTokenPurpose, now: datetime, lock: bool
) -> tuple[MailToken, User]:
    """The live link behind ``secret`` and its account, or a clear 404/410."""
    statement = select(MailToken).where(
        MailToken.token_hash == hash_link(secret), MailToken.purpose == purpose
    )
    if lock:
        statement = statement.with_for_update()
    link = session.exec(statement).first() if secret else None
    user = session.get(User, link.user_id) if link is not None else None
    if link is None or user is None:
        raise LinkUnknown("this link is not valid (it may be mistyped): ask for a new one")
    if link.used_at is not None:
        raise LinkUsed("this link was already used, or a newer one was sent: ask for a new one")
    if link.expires_at <= now:
        raise LinkExpired("this link has expired: ask for a new one")
    if not user.is_active:
        # A suspended account gets nothing from a link it was sent before.
        raise LinkUnknown("this link is not valid (it may be mistyped): ask for a new one")
    return link, user


def consume_link(session: Session, *, secret: str, purpose: MailTokenPurpose) -> User:
    """Use the link once (row locked, so two clicks cannot both use it)."""
    now = utcnow()
    link, user = find_link(session, secret=secret, purpose=purpose, now=now, lock=True)
    link.used_at = now
    session.add(link)
    return user


def sign_up(
    session: Session,
    *,
    email: str,
    password: str,
    role: Role | str,
    mode: str,
    passwords: PasswordHasher,
) -> User:
    """A self sign-up: an owner or researcher, active (``open``) or pending (``approval``),
    its address not yet verified."""
    if mode == CLOSED:
        raise SignupClosed("sign-up is closed on this marketplace: ask an administrator")
    try:
        wanted = Role(role)
    except ValueError:
        wanted = None
    if wanted not in TRADING_ROLES:
        raise ValidationFailed(
            "you can sign up as an owner or a researcher; auditor and admin accounts are "
            "made by an administrator",
            details={"fields": [{"field": "role", "message": "must be owner or researcher"}]},
        )
    return create_user(
        session,
        email=email,
        role=wanted,
        password=password,
        passwords=passwords,
        approved=mode == OPEN,
        verified=False,
        kind="user.signed_up",
    )


def verify_email(session: Session, *, secret: str) -> User:
    user = consume_link(session, secret=secret, purpose=MailTokenPurpose.VERIFY)
    _mark_verified(session, user)
    return user


def _mark_verified(session: Session, user: User) -> None:
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        session.add(user)
        audit.append(
            session,
            kind="user.email_verified",
            subject=user.id or 0,
            actor_id=user.id,
            data={"email": user.email},
        )


def start_reset(session: Session, *, email: str, ttl: timedelta) -> tuple[User, str] | None:
    """A reset link for the account at ``email``, or None (no such account, or suspended):
    the caller answers the same either way."""
    user = user_by_email(session, email)
    if user is None or not user.is_active:
        return None
    return user, issue_link(session, user=user, purpose=MailTokenPurpose.RESET, ttl=ttl)


def check_reset_link(session: Session, *, secret: str) -> User:
    """The account a reset link is for, without using it (the page shows the form)."""
    return find_link(
        session, secret=secret, purpose=MailTokenPurpose.RESET, now=utcnow(), lock=False
    )[1]


def finish_reset(
    session: Session, *, secret: str, new_password: str, passwords: PasswordHasher
) -> User:
    """Set the new password through a reset link: every session ends, every token is
    revoked, and the address counts as verified (the mail was read)."""
    user = consume_link(session, secret=secret, purpose=MailTokenPurpose.RESET)
    revoked = set_password(session, user=user, password=new_password, passwords=passwords)
    _mark_verified(session, user)
    audit.append(
        session,
        kind="user.password_reset",
        subject=user.id or 0,
        actor_id=user.id,
        data={"email": user.email, "tokens_revoked": revoked},
    )
    return user


def change_password(
    session: Session,
    *,
    user: User,
    current_password: str,
    new_password: str,
    passwords: PasswordHasher,
    keep_token_id: int | None = None,
) -> int:
    """Change a signed-in account's password; every other session and token stops."""
    row = session.get(User, user.id)
    if row is None or not passwords.verify(row.password_hash, current_password):
        raise InvalidCredentials(
            "the current password is wrong", details={"field": "current_password"}
        )
    if current_password == new_password:
        raise ValidationFailed(
            "the new password must differ from the current one",
            details={"fields": [{"field": "new_password", "message": "same as the current"}]},
        )
    revoked = set_password(
        session, user=row, password=new_password, passwords=passwords, keep_token_id=keep_token_id
    )
    audit.append(
        session,
        kind="user.password_changed",
        subject=row.id or 0,
        actor_id=row.id,
        data={"email": row.email, "tokens_revoked": revoked},
    )
    user.session_generation = row.session_generation
    return revoked


def request_verification(
    session: Session, *, email: str, ttl: timedelta
) -> tuple[User, str] | None:
    """A new verification link for an unverified, active account at ``email``, or None."""
    user = user_by_email(session, email)
    if user is None or not user.is_active or user.email_verified_at is not None:
        return None
    return user, issue_link(session, user=user, purpose=MailTokenPurpose.VERIFY, ttl=ttl)


# Use cases: one transaction, then the mail.


@dataclass(frozen=True)
class SignedUp:
    id: int
    email: str
    role: Role
    status: str
    email_verified: bool
    mail_sent: bool


def sign_up_use_case(
    market: Services, mailer: MailBackend, *, email: str, password: str, role: Role | str
) -> SignedUp:
    settings = market.settings
    with market.database.write() as session:
        user = sign_up(
            session,
            email=email,
            password=password,
            role=role,
            mode=settings.accounts.signup,
            passwords=market.passwords,
        )
        secret = issue_link(
            session,
            user=user,
            purpose=MailTokenPurpose.VERIFY,
            ttl=timedelta(hours=settings.accounts.verify_ttl_hours),
        )
        out = SignedUp(
            id=user.id or 0,
            email=user.email,
            role=user.role,
            status=user.status.value,
            email_verified=False,
            mail_sent=False,
        )
    message = messages.verification(
        settings, to=out.email, secret=secret, pending=out.status != "active"
    )
    return replace(out, mail_sent=_send_now(mailer, message))


def _send_now(mailer: MailBackend, message: EmailMessage) -> bool:
    """Send after the commit; a failure is logged by the backend and reported as False
    (the account exists: the person can ask for a new link)."""
    try:
        mailer.send(message)
    except Exception:  # noqa: BLE001 - any backend failure means "not sent"
        messages.log.exception("mail to %s was not sent", message["To"])
        return False
    return True


def request_reset_use_case(market: Services, mailer: MailBackend, *, email: str) -> None:
    """Mail a reset link if ``email`` has an account. Same answer, and no wait on the mail
    server, whether it has one or not."""
    settings = market.settings
    with market.database.write() as session:
        issued = start_reset(
            session, email=email, ttl=timedelta(minutes=settings.accounts.reset_ttl_minutes)
        )
        to = issued[0].email if issued else ""
    if issued is not None:
        send_in_background(mailer, messages.reset(settings, to=to, secret=issued[1]))


def request_verification_use_case(market: Services, mailer: MailBackend, *, email: str) -> None:
    settings = market.settings
    with market.database.write() as session:
        issued = request_verification(
            session, email=email, ttl=timedelta(hours=settings.accounts.verify_ttl_hours)
        )
        to = issued[0].email if issued else ""
        pending = issued is not None and not issued[0].is_approved
    if issued is not None:
        send_in_background(
            mailer, messages.verification(settings, to=to, secret=issued[1], pending=pending)
        )
