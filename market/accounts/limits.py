"""Rate limits of the anonymous account endpoints, read per request (tests change them).

Shared scopes: the web form and the API endpoint of the same action draw on one budget per
client address, so a flood cannot switch doors to get twice the allowance.
"""

from __future__ import annotations

from flask import current_app

from market.accounts.settings import AccountsSettings

#: Password-reset and verification-mail requests (pages and API).
mail_link_scope = "account-mail-links"
#: Self sign-ups (page and API).
signup_scope = "account-signups"


def _accounts() -> AccountsSettings:
    settings: AccountsSettings = current_app.extensions["market"].settings.accounts
    return settings


def mail_link_limit() -> str:
    return _accounts().reset_rate_limit


def signup_limit() -> str:
    return _accounts().signup_rate_limit
