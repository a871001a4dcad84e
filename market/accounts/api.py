"""Accounts in the JSON API: tokens, the caller, and (for admins) users."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from market.accounts import services as accounts
from market.accounts.models import ApiTokenPublic, Role, UserCreate, UserPublic
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


class UserList(BaseModel):
    items: list[UserPublic]


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


@api.get("/users", summary="List accounts (admins)", security=BEARER, responses={200: UserList})
@api_login_required(Role.ADMIN)
def list_users():
    with services().database.read() as session:
        users = accounts.list_users(session, actor=caller())
        out = UserList(items=[UserPublic.model_validate(u, from_attributes=True) for u in users])
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
        )
        out = UserPublic.model_validate(user, from_attributes=True)
    return out.model_dump(mode="json"), 201
