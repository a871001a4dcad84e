"""Tables and data models of accounts: users, their API tokens and the one-time mail links.

Family per SQLModel's guidance: ``XBase`` holds shared fields, ``X(XBase, table=True)`` is the
table, ``XCreate``/``XPublic`` are what the API accepts and returns. Rows are built with
``X.model_validate(data, update=...)`` because constructing a table model directly skips
validation.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from pydantic import EmailStr
from sqlmodel import Field, SQLModel

from market.db import UTCDateTime, utcnow


class Role(StrEnum):
    """What a person may do: list data, buy runs, review ledgers, administer accounts."""

    OWNER = "owner"
    RESEARCHER = "researcher"
    AUDITOR = "auditor"
    ADMIN = "admin"


class AccountStatus(StrEnum):
    """Where an account stands: only ``active`` accounts sign in."""

    ACTIVE = "active"
    PENDING = "pending"
    SUSPENDED = "suspended"


class UserBase(SQLModel):
    email: str = Field(max_length=254, index=True, unique=True)
    # Stored as its value ("owner") in a VARCHAR: readable in SQL, no PostgreSQL ENUM to migrate.
    role: Role = Field(
        sa_type=sa.Enum(
            Role,
            native_enum=False,
            length=16,
            values_callable=lambda roles: [r.value for r in roles],
            validate_strings=True,
        )
    )


class User(UserBase, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    password_hash: str = Field(max_length=255)
    # False: suspended (no sign-in, no session, no token works). Apart from approval: an
    # admin's "approve" and "reactivate" are one status change, "active" (see ``status``).
    is_active: bool = Field(default=True)
    # False while a self sign-up waits for an admin (accounts.signup = "approval").
    is_approved: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})
    # When the person proved they read mail at ``email`` (the link of a verification mail,
    # or of a reset). Accounts an admin makes are taken as verified. Owners and researchers
    # list and buy only once verified (``services.require_role``).
    email_verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Copied into the signed session cookie at sign-in and compared on every request; raised
    # on sign-out, password change, suspension and role change, so every older cookie of the
    # account stops working at once (market.accounts.sessions).
    session_generation: int = Field(default=0, sa_column_kwargs={"server_default": "0"})

    # Flask-Login's user protocol, kept here so the web layer needs no wrapper class.
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)

    @property
    def status(self) -> AccountStatus:
        if not self.is_active:
            return AccountStatus.SUSPENDED
        return AccountStatus.ACTIVE if self.is_approved else AccountStatus.PENDING

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None


class UserCreate(SQLModel):
    email: EmailStr = Field(max_length=254)
    role: Role
    password: str = Field(min_length=12, max_length=1024)


class UserPublic(UserBase):
    id: int
    is_active: bool
    status: AccountStatus
    email_verified: bool
    created_at: datetime


class ApiTokenBase(SQLModel):
    name: str = Field(default="api", min_length=1, max_length=80)


class ApiToken(ApiTokenBase, table=True):
    """A bearer token. Only its SHA-256 is stored: the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    token_hash: str = Field(max_length=64, unique=True, index=True)
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ApiTokenPublic(ApiTokenBase):
    id: int
    prefix: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class MailTokenPurpose(StrEnum):
    """What a one-time link in a mail does."""

    RESET = "reset"
    VERIFY = "verify"


class MailToken(SQLModel, table=True):
    """A one-time link sent by mail (password reset, e-mail verification).

    Only the SHA-256 of the secret is stored (as for API tokens): a copy of the database
    resets nobody's password. A link works once (``used_at``) and until ``expires_at``.
    """

    __tablename__ = "mail_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    purpose: MailTokenPurpose = Field(
        sa_type=sa.Enum(
            MailTokenPurpose,
            native_enum=False,
            length=16,
            values_callable=lambda purposes: [p.value for p in purposes],
            validate_strings=True,
        )
    )
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
