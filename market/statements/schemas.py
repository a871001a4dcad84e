"""What the statements API accepts and returns (these models also write the OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from market.api.schemas import ID_MAX


class StatementQuery(BaseModel):
    month: str | None = Field(
        default=None,
        pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
        description="YYYY-MM (UTC calendar month); default: the current month.",
    )
    account_id: int | None = Field(
        default=None,
        ge=1,
        le=ID_MAX,
        description="Another account's statement (auditors and admins only).",
    )


class StatementLinePublic(BaseModel):
    kind: str
    label: str
    items: int = Field(description="How many accrued terms the line sums.")
    exact: str = Field(description="The exact sum of the line's accrued terms.")
    amount: str = Field(description="The line as printed: rounded so the lines add up.")


class StatementSection(BaseModel):
    lines: list[StatementLinePublic]
    exact: str = Field(description="The exact sum of every accrued term.")
    total: str = Field(description="The exact sum rounded once (half to even) to the minor unit.")


class Period(BaseModel):
    start: str
    end: str


class StatementPublic(BaseModel):
    account_id: int
    month: str
    currency: str
    period: Period
    charges: StatementSection = Field(description="What the account pays (runs, acquisitions).")
    credits: StatementSection = Field(description="Royalties and shares the account receives.")
    balance: str = Field(description="credits.total - charges.total.")
