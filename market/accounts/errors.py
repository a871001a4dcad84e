"""The errors of accounts, each a stable code of the one hierarchy (market.errors)."""

from __future__ import annotations

from market.errors import MarketError, PermissionDenied


class SignupClosed(PermissionDenied):
    """``accounts.signup = "closed"``: only an admin makes accounts."""

    code = "signup_closed"


class AccountPending(PermissionDenied):
    """A self sign-up an admin has not approved yet: it cannot sign in."""

    code = "account_pending"


class EmailUnverified(PermissionDenied):
    """Listing and buying wait until the account's e-mail address is verified."""

    code = "email_unverified"


class LinkUnknown(MarketError):
    """A reset or verification link that was never issued (or was mistyped)."""

    code = "link_unknown"
    status = 404


class LinkExpired(MarketError):
    code = "link_expired"
    status = 410


class LinkUsed(MarketError):
    """Each link works once; a newer link of the same kind also retires the older ones."""

    code = "link_used"
    status = 410
