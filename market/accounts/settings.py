"""Settings of accounts and of outgoing mail (config/default.toml, sections [accounts], [mail]).

Declared here, beside the code that reads them, and composed into ``market.config.Settings``
(as the cost model's settings are): this module imports nothing of the application.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountsSettings(_Section):
    #: "open": a sign-up is active at once; "approval": it waits for an admin; "closed": 403.
    signup: Literal["open", "approval", "closed"] = "approval"
    reset_ttl_minutes: int = Field(default=30, ge=1, le=24 * 60)
    verify_ttl_hours: int = Field(default=48, ge=1, le=24 * 30)
    #: Links in mails are built on this, never on the request's Host header (a forged Host
    #: would otherwise put an attacker's address in somebody's reset link).
    base_url: str = Field(default="", max_length=300, pattern=r"^(https?://[^\s/]+(/[^\s]*)?)?$")
    reset_rate_limit: str = Field(default="5 per 15 minutes", min_length=1)
    signup_rate_limit: str = Field(default="10 per hour", min_length=1)


class MailSettings(_Section):
    backend: Literal["outbox", "smtp"] = "outbox"
    sender: str = Field(default="Private data marketplace <no-reply@localhost>", min_length=3)
    outbox_dir: str = ""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = True
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_timeout_s: float = Field(default=10, gt=0, le=300)
