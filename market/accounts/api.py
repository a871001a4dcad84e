"""Accounts in the JSON API: sign-up, password resets and changes, tokens, the caller, and
(for admins) finding and changing accounts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from flask import request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, EmailStr, Field
from sqlmodel import Session

from market.accounts import admin, onboarding
from market.accounts import services as accounts
from market.accounts.limits import mail_link_limit, mail_link_scope, signup_limit, signup_scope
from market.accounts.mail import current_mailer
from market.accounts.models import (
    AccountStatus,
    ApiToken,
    ApiTokenPublic,
    Role,
    User,
    UserCreate,
    UserPublic,
)
from market.api import API_V1, BEARER
from market.api.auth import api_login_required, caller
from market.api.schemas import COMMON_ERRORS, ID_MAX, ErrorBody
from market.errors import InvalidCredentials
from market.extensions import csrf, limiter
from market.security import login_failed, login_rate_limit, mark_login_failed
from market.services import services

api = APIBlueprint(
    "accounts_api",
    __name__,
    url_prefix=API_V1,
    abp_tags=[Tag(name="accounts", description="Sign-in tokens and accounts")],
    abp_responses=COMMON_ERRORS,
)
csrf.exempt(api)


class TokenRequest(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)
    name: str = Field(default="api", min_length=1, max_length=80)


class TokenIssued(BaseModel):
    id: int
    name: str
    token: str = Field(description="Shown once; only its hash is stored.")
    expires_at: datetime


class TokenList(BaseModel):
    items: list[ApiTokenPublic]


class TokenPath(BaseModel):
    token_id: int = Field(ge=1, le=ID_MAX)


class SignupRequest(BaseModel):
    email: EmailStr = Field(max_length=254)
    password: str = Field(max_length=1024)
    role: Literal["owner", "researcher", "auditor", "admin"] = Field(
        description="owner or researcher; auditors and admins are made by an admin (422)."
    )


class SignupCreated(BaseModel):
    id: int
    email: str
    role: Role
    status: AccountStatus = Field(description="active, or pending when sign-ups need approval.")
    email_verified: bool
    verification_mail_sent: bool


class EmailRequest(BaseModel):
    email: EmailStr = Field(max_length=254)


class Accepted(BaseModel):
    message: str


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class TokenSummary(BaseModel):
    """What an admin sees of a token: never its secret or hash."""

    id: int
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class AdminUser(UserPublic):
    last_login_at: datetime | None
    tokens: list[TokenSummary]


class UserList(BaseModel):
    items: list[AdminUser]
    total: int


class UserQuery(BaseModel):
    q: str = Field(default="", max_length=254, description="Part of the e-mail address.")
    role: Role | None = None
    status: AccountStatus | None = None
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=ID_MAX)


class UserPath(BaseModel):
    user_id: int = Field(ge=1, le=ID_MAX)


class UserChange(BaseModel):
    role: Role | None = None
    status: Literal["active", "suspended"] | None = Field(
        default=None,
        description="active approves a pending account or reactivates a suspended one.",
    )


def _admin_view(user: User, tokens: list[ApiToken]) -> AdminUser:
    return AdminUser.model_validate(
        {
            **UserPublic.model_validate(user, from_attributes=True).model_dump(),
            "last_login_at": user.last_login_at,
            "tokens": [TokenSummary.model_validate(t, from_attributes=True) for t in tokens],
        }
    )


ACCEPTED = (
    "If an account exists for that address, a mail with a link is on its way; the link works once."
)


@api.post(
    "/accounts",
    summary="Sign up as an owner or researcher",
    responses={201: SignupCreated, 409: ErrorBody, 429: ErrorBody},
)
@limiter.shared_limit(signup_limit, scope=signup_scope)
def sign_up(body: SignupRequest):
    created = onboarding.sign_up_use_case(
        services(), current_mailer(), email=body.email, password=body.password, role=body.role
    )
    out = SignupCreated(
        id=created.id,
        email=created.email,
        role=created.role,
        status=AccountStatus(created.status),
        email_verified=created.email_verified,
        verification_mail_sent=created.mail_sent,
    )
    return out.model_dump(mode="json"), 201


@api.post(
    "/password-resets",
    summary="Mail a one-time password-reset link (the answer never says whether the "
    "address has an account)",
    responses={202: Accepted, 429: ErrorBody},
)
@limiter.shared_limit(mail_link_limit, scope=mail_link_scope)
def request_password_reset(body: EmailRequest):
    onboarding.request_reset_use_case(services(), current_mailer(), email=body.email)
    return Accepted(message=ACCEPTED).model_dump(mode="json"), 202


@api.post(
    "/email-verifications",
    summary="Mail a new e-mail verification link to an unverified account",
    responses={202: Accepted, 429: ErrorBody},
)
@limiter.shared_limit(mail_link_limit, scope=mail_link_scope)
def request_email_verification(body: EmailRequest):
    onboarding.request_verification_use_case(services(), current_mailer(), email=body.email)
    return Accepted(message=ACCEPTED).model_dump(mode="json"), 202


def _calling_token_id(session: Session) -> int | None:
    """The token this request came with (already authenticated by the guard)."""
    secret = request.headers.get("Authorization", "").partition(" ")[2].strip()
    return accounts.token_id_of(session, secret)


@api.put(
    "/me/password",
    summary="Change your password; every other session and token of the account stops",
    security=BEARER,
    responses={204: None, 401: ErrorBody, 422: ErrorBody},
)
@api_login_required()
def change_password(body: PasswordChange):
    market = services()
    with market.database.write() as session:
        onboarding.change_password(
            session,
            user=caller(),
            current_password=body.current_password,
            new_password=body.new_password,
            passwords=market.passwords,
            keep_token_id=_calling_token_id(session),
        )
    return "", 204


@api.post(
    "/tokens",
    summary="Exchange an e-mail and password for an API token",
    responses={201: TokenIssued, 401: ErrorBody, 429: ErrorBody},
)
@limiter.limit(login_rate_limit, deduct_when=login_failed)
def create_token(body: TokenRequest):
    market = services()
    try:
        with market.database.write() as session:
            user = accounts.authenticate(
                session, email=body.email, password=body.password, passwords=market.passwords
            )
            issued = accounts.issue_token(
                session,
                user=user,
                ttl=timedelta(hours=market.settings.security.token_ttl_hours),
                name=body.name,
            )
    except InvalidCredentials:
        mark_login_failed()
        raise
    out = TokenIssued(
        id=issued.token.id or 0,
        name=issued.token.name,
        token=issued.secret,
        expires_at=issued.token.expires_at,
    )
    return out.model_dump(mode="json"), 201


@api.get("/tokens", summary="List your API tokens", security=BEARER, responses={200: TokenList})
@api_login_required()
def list_tokens():
    with services().database.read() as session:
        tokens = accounts.list_tokens(session, actor=caller())
        out = TokenList(
            items=[ApiTokenPublic.model_validate(t, from_attributes=True) for t in tokens]
        )
    return out.model_dump(mode="json")


@api.delete(
    "/tokens/<int:token_id>",
    summary="Revoke one of your API tokens",
    security=BEARER,
    responses={200: ApiTokenPublic},
)
@api_login_required()
def revoke_token(path: TokenPath):
    with services().database.write() as session:
        token = accounts.revoke_token(session, actor=caller(), token_id=path.token_id)
        out = ApiTokenPublic.model_validate(token, from_attributes=True)
    return out.model_dump(mode="json")


@api.get(
    "/me", summary="The account behind the token", security=BEARER, responses={200: UserPublic}
)
@api_login_required()
def me():
    return UserPublic.model_validate(caller(), from_attributes=True).model_dump(mode="json")


@api.get(
    "/users",
    summary="Find accounts by e-mail, role and status (admins)",
    security=BEARER,
    responses={200: UserList},
)
@api_login_required(Role.ADMIN)
def list_users(query: UserQuery):
    with services().database.read() as session:
        page = admin.search_users(
            session,
            actor=caller(),
            q=query.q,
            role=query.role,
            status=query.status,
            limit=query.limit,
            offset=query.offset,
        )
        out = UserList(
            items=[_admin_view(u, page.tokens[u.id or 0]) for u in page.users], total=page.total
        )
    return out.model_dump(mode="json")


@api.patch(
    "/users/<int:user_id>",
    summary="Approve, suspend, reactivate an account or change its role (admins)",
    security=BEARER,
    responses={200: AdminUser, 409: ErrorBody},
)
@api_login_required(Role.ADMIN)
def update_user(path: UserPath, body: UserChange):
    with services().database.write() as session:
        user = admin.update_user(
            session,
            actor=caller(),
            user_id=path.user_id,
            role=body.role,
            status=AccountStatus(body.status) if body.status else None,
        )
        out = _admin_view(user, admin.tokens_of(session, user_id=user.id or 0))
    return out.model_dump(mode="json")


@api.post(
    "/users",
    summary="Create an account (admins)",
    security=BEARER,
    responses={201: UserPublic, 409: ErrorBody},
)
@api_login_required(Role.ADMIN)
def create_user(body: UserCreate):
    market = services()
    with market.database.write() as session:
        user = accounts.create_user(
            session,
            email=body.email,
            role=body.role,
            password=body.password,
            passwords=market.passwords,
            actor_id=caller().id,
        )
        out = UserPublic.model_validate(user, from_attributes=True)
    return out.model_dump(mode="json"), 201
