"""Outgoing mail: messages built with the standard library's ``email``, sent by a backend.

``mail.backend`` chooses the backend, here and nowhere else (``mailer_for``):

* ``outbox`` (the default) writes each message as an RFC 5322 ``.eml`` file into the
  instance's ``outbox/`` folder, so a fresh install works offline and an operator reads the
  links there (any mail client opens the files). Files are written to a temporary name and
  renamed, so a reader never sees half a message, with mode 0600: a reset link in one is a
  key to an account.
* ``smtp`` hands each message to an SMTP server with ``smtplib`` (STARTTLS with the system's
  certificate authorities, then AUTH if a user is set).

The backends share the small ``MailBackend`` protocol, so tests and operators can swap one
without touching the code that writes the messages (market.accounts.messages).
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import threading
import uuid
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol

from market.accounts.settings import MailSettings
from market.db import utcnow
from market.errors import ServiceUnavailable

log = logging.getLogger(__name__)


class MailBackend(Protocol):
    """Delivers one message or raises (``ServiceUnavailable`` when the server is away)."""

    def send(self, message: EmailMessage) -> None: ...


class OutboxBackend:
    """One ``.eml`` file per message in ``folder`` (created 0700 on first use)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: EmailMessage) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{utcnow().strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:12]}.eml"
        partial = self.folder / (name + ".partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(bytes(message))
            handle.flush()
            os.fsync(handle.fileno())
        partial.rename(self.folder / name)


class SmtpBackend:
    """Sends through an SMTP server: STARTTLS (certificate checked) unless turned off."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings

    def send(self, message: EmailMessage) -> None:
        settings = self.settings
        try:
            with smtplib.SMTP(
                settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s
            ) as smtp:
                smtp.ehlo()
                if settings.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if settings.smtp_user:
                    smtp.login(settings.smtp_user, settings.smtp_password)
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            # The address and reason go to the log; the caller gets a retryable error.
            log.warning(
                "mail to %s via %s:%s failed: %s",
                message["To"],
                settings.smtp_host,
                settings.smtp_port,
                exc,
            )
            raise ServiceUnavailable(
                "the mail server could not be reached; try again shortly", retry_after_s=30
            ) from exc


def mailer_for(settings: MailSettings, outbox_dir: Path) -> MailBackend:
    """The configured backend (the one place ``mail.backend`` is read)."""
    if settings.backend == "smtp":
        return SmtpBackend(settings)
    return OutboxBackend(outbox_dir)


def compose(*, sender: str, to: str, subject: str, text: str) -> EmailMessage:
    """A plain-text message with the headers a receiving server expects."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(utcnow())
    domain = sender.rpartition("@")[2].strip(" >") or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(text)
    return message


def send_in_background(backend: MailBackend, message: EmailMessage) -> threading.Thread:
    """Send from a thread, so that the response does not wait for (or its timing reveal)
    the mail server: used where the answer must not say whether a mail went out at all."""

    def run() -> None:
        try:
            backend.send(message)
        except Exception:  # a thread has nobody to raise to: the log says it
            log.exception("mail to %s was not sent", message["To"])

    thread = threading.Thread(target=run, name="mail", daemon=True)
    thread.start()
    return thread


#: Where ``market.accounts.init_app`` keeps the application's backend.
MAIL_EXTENSION_KEY = "market.mail"


def current_mailer() -> MailBackend:
    """The backend of the application handling this request."""
    from flask import current_app

    backend: MailBackend = current_app.extensions[MAIL_EXTENSION_KEY]
    return backend
