"""The demo accounts: one per role, shared by ``market users demo`` and ``market demo``."""

from __future__ import annotations

from market.accounts.models import Role

DEMO_ACCOUNTS = (
    ("owner@demo.example", Role.OWNER),
    ("researcher@demo.example", Role.RESEARCHER),
    ("auditor@demo.example", Role.AUDITOR),
    ("admin@demo.example", Role.ADMIN),
)
