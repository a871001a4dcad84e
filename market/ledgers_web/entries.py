"""The auditor's entries browser: the audit log filtered by kind, subject and date, paged.

Read-only queries on ``audit_entries`` (the rows ``market.audit.log`` appends). Filters come
from the page's query string and are validated here: an unknown date or page number is
ignored with a message, never an error page, so a mistyped filter still shows the log.
Dates are UTC days, inclusive at both ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from market.audit.models import AuditEntry

PAGE_SIZE = 50
_SUBJECT_MAX = 128


def _day(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


@dataclass
class EntryFilters:
    kind: str = ""
    subject: str = ""
    since: date | None = None
    until: date | None = None
    page: int = 1
    problems: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: Any) -> EntryFilters:
        out = cls(
            kind=(args.get("kind") or "").strip()[:64],
            subject=(args.get("subject") or "").strip()[:_SUBJECT_MAX],
        )
        for name, label in (("since", "From"), ("until", "To")):
            raw = args.get(name) or ""
            parsed = _day(raw)
            if raw and parsed is None:
                out.problems.append(f"{label}: “{raw[:20]}” is not a date (YYYY-MM-DD); ignored.")
            setattr(out, name, parsed)
        try:
            out.page = max(1, int(args.get("page") or 1))
        except ValueError:
            out.page = 1
        return out

    def query(self, **changes: Any) -> dict[str, Any]:
        """The filters as query-string arguments (for the pager's links)."""
        values = {
            "kind": self.kind,
            "subject": self.subject,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "page": self.page,
        }
        values.update(changes)
        return {k: v for k, v in values.items() if v not in ("", None)}


@dataclass
class EntryPage:
    items: list[AuditEntry]
    total: int
    page: int
    pages: int


def _filtered(statement: Any, filters: EntryFilters) -> Any:
    if filters.kind:
        statement = statement.where(col(AuditEntry.kind) == filters.kind)
    if filters.subject:
        statement = statement.where(col(AuditEntry.subject) == filters.subject)
    if filters.since:
        start = datetime.combine(filters.since, time.min, tzinfo=UTC)
        statement = statement.where(col(AuditEntry.created_at) >= start)
    if filters.until:
        end = datetime.combine(filters.until + timedelta(days=1), time.min, tzinfo=UTC)
        statement = statement.where(col(AuditEntry.created_at) < end)
    return statement


def browse(session: Session, filters: EntryFilters, *, page_size: int = PAGE_SIZE) -> EntryPage:
    """One page of matching entries, newest first."""
    total = session.exec(_filtered(select(func.count()).select_from(AuditEntry), filters)).one()
    pages = max(1, -(-int(total) // page_size))
    page = min(filters.page, pages)
    statement = (
        _filtered(select(AuditEntry), filters)
        .order_by(col(AuditEntry.seq).desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    )
    return EntryPage(items=list(session.exec(statement)), total=int(total), page=page, pages=pages)


def kinds(session: Session) -> list[str]:
    """Every kind present in the log, for the filter's list."""
    statement = select(AuditEntry.kind).distinct().order_by(col(AuditEntry.kind))
    return list(session.exec(statement))
