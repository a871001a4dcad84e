"""One exception hierarchy for the ``privacy`` library.

Everything the library raises on purpose derives from :class:`PrivacyError`, so
``market`` can map the whole family to its own errors in one handler. Each class
carries a stable ``code`` that never changes once released (callers match on it,
messages may be reworded).

::

    PrivacyError
     +-- VaultError                     encrypted storage (privacy.vault)
          +-- KeyringError              key directory unusable or inconsistent
          |    +-- KeyFilePermissionError   private key file readable by others
          |    +-- KeyNotFound              no key-encryption key for this request
          |         +-- PrivateKeyUnavailable  public-only keyring asked to unwrap
          |         +-- KeyVersionRetired      wrapped under a version below min_version
          +-- IntegrityError            ciphertext or wrapped key failed authentication
"""

from __future__ import annotations


class PrivacyError(Exception):
    """Base of every error the privacy library raises deliberately."""

    code = "privacy.error"


class VaultError(PrivacyError):
    """Encrypted storage failed; never carries plaintext or key material in its message."""

    code = "vault.error"


class KeyringError(VaultError):
    """The key directory is missing, malformed, or cannot be written."""

    code = "vault.keyring"


class KeyFilePermissionError(KeyringError):
    """A private key file is group- or world-accessible, so it is refused (like ssh does)."""

    code = "vault.key_permissions"


class KeyNotFound(KeyringError):
    """No key-encryption key of the requested version is available to this process."""

    code = "vault.key_not_found"


class PrivateKeyUnavailable(KeyNotFound):
    """A public-only keyring (the web tier) was asked to unwrap a data key.

    This is the guarantee that the web process can encrypt uploads but never read them.
    """

    code = "vault.private_key_unavailable"


class KeyVersionRetired(KeyNotFound):
    """The data key is wrapped under a KEK version older than the configured minimum."""

    code = "vault.key_version_retired"


class IntegrityError(VaultError):
    """Authentication failed: tampering, truncation, wrong key, or wrong dataset.

    Raised before any unauthenticated plaintext is released to the caller.
    """

    code = "vault.integrity"
