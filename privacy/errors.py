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
     +-- DetailedError                  carries a JSON-safe ``details`` dict (never private values)
          +-- SpecError                 model spec rejected (names the layer index and field)
          +-- SchemaError               dataset metadata cannot describe a preprocessing
          +-- SchemaViolation           rows break the declared schema (counts per column only)
          +-- PlanError                 a run cannot be planned (budget, delta, batch, noise)
          +-- AccountingError           a mechanism record or accountant choice is invalid
          |    +-- BudgetExceeded        a planned release would pass the budget cap
          +-- TrainingError             DP training failed; ``records_spent`` says what was used
               +-- TrainingCancelled    the caller asked training to stop (a lost lease)
          +-- ModelFileError            a model file is malformed or its metadata is unusable
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


class DetailedError(PrivacyError):
    """An error with a ``details`` dict the API can render as-is.

    ``details`` holds names, indices, bounds and counts only: never a value taken from
    private rows, because error messages end up in logs and HTTP responses.
    """

    code = "privacy.detailed"

    def __init__(self, message: str, *, details: dict | None = None) -> None:
        super().__init__(message)
        self.details: dict = dict(details or {})


class SpecError(DetailedError):
    """A model spec is invalid; ``details`` names ``layer`` (index) and ``field``."""

    code = "privacy.invalid_model_spec"


class SchemaError(DetailedError):
    """The dataset's public metadata cannot be turned into a preprocessing."""

    code = "privacy.invalid_schema"


class SchemaViolation(DetailedError):
    """Rows do not match the declared schema.

    ``details["columns"]`` maps a column to counts of offending values by kind
    (``missing``, ``out_of_range``, ``unknown_category``, ``not_numeric``), so an owner
    can fix the file without the message ever quoting a private value.
    """

    code = "privacy.schema_violation"


class PlanError(DetailedError):
    """A training run cannot be planned as asked; the message says which rule failed."""

    code = "privacy.invalid_plan"


class AccountingError(DetailedError):
    """A mechanism record is malformed or the accountant cannot compose it."""

    code = "privacy.accounting"


class BudgetExceeded(AccountingError):
    """Composing the planned releases with the ledger would pass the epsilon cap."""

    code = "privacy.budget_exceeded"


class TrainingError(DetailedError):
    """Private training failed once it had started.

    ``records_spent`` lists what must be charged: the plan's full records, whatever step
    the failure came at (which step fails could depend on the data; what is charged must
    not). The message is fixed for the same reason.
    """

    code = "privacy.training_failed"

    def __init__(
        self, message: str, *, details: dict | None = None, records_spent: list | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.records_spent: list = list(records_spent or [])


class TrainingCancelled(TrainingError):
    """The caller's cancel event was set (its lease on the run is gone): stop, release nothing."""

    code = "privacy.training_cancelled"


class ModelFileError(DetailedError):
    """A saved model cannot be read back: bad safetensors, metadata, or shapes."""

    code = "privacy.model_file"
