"""The mails accounts sends, and the links in them.

Links are built on ``accounts.base_url`` (else the address ``market serve`` binds), never
on the request's Host header: a forged Host would otherwise put an attacker's site in
somebody's reset link.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage

from market.accounts.mail import compose
from market.config import Settings

log = logging.getLogger("market.accounts.mail")


def base_url(settings: Settings) -> str:
    if settings.accounts.base_url:
        return settings.accounts.base_url.rstrip("/")
    return f"http://{settings.server.host}:{settings.server.port}"


def verify_link(settings: Settings, secret: str) -> str:
    return f"{base_url(settings)}/verify-email/{secret}"


def reset_link(settings: Settings, secret: str) -> str:
    return f"{base_url(settings)}/password/reset/{secret}"


def verification(settings: Settings, *, to: str, secret: str, pending: bool) -> EmailMessage:
    hours = settings.accounts.verify_ttl_hours
    then = (
        "An administrator will also approve your account; you can sign in once they have."
        if pending
        else "You can sign in now; listing data and buying runs wait until the address is verified."
    )
    text = (
        "Hello,\n\n"
        "somebody (we hope you) made an account on the private data marketplace with this "
        "address. To confirm it is yours, open this link:\n\n"
        f"    {verify_link(settings, secret)}\n\n"
        f"The link works once, for {hours} hours. {then}\n\n"
        "If this was not you, ignore this mail: nothing happens without the link.\n"
    )
    return compose(
        sender=settings.mail.sender, to=to, subject="Confirm your e-mail address", text=text
    )


def reset(settings: Settings, *, to: str, secret: str) -> EmailMessage:
    minutes = settings.accounts.reset_ttl_minutes
    text = (
        "Hello,\n\n"
        "somebody (we hope you) asked to reset the password of the marketplace account for "
        "this address. To choose a new password, open this link:\n\n"
        f"    {reset_link(settings, secret)}\n\n"
        f"The link works once, for {minutes} minutes. Setting a new password signs out "
        "every session and revokes every API token of the account.\n\n"
        "If this was not you, ignore this mail: your password stays as it is.\n"
    )
    return compose(sender=settings.mail.sender, to=to, subject="Reset your password", text=text)
