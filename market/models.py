"""Every table, imported in one place so Alembic's autogenerate sees the whole schema."""

from __future__ import annotations

from sqlmodel import SQLModel

from market.accounts.models import ApiToken, MailToken, User
from market.audit.models import AuditEntry, AuditHead, AuditNode, Checkpoint
from market.catalog.models import Dataset, DatasetTag
from market.ops.models import WorkerHeartbeat
from market.sharing.models import Acquisition, SharedModel
from market.trading.calibration import WorkerCalibration
from market.trading.models import PrivacyBudgetState, PrivacyRelease, Quote, Run

metadata = SQLModel.metadata

__all__ = [
    "Acquisition",
    "ApiToken",
    "AuditEntry",
    "AuditHead",
    "AuditNode",
    "Checkpoint",
    "Dataset",
    "DatasetTag",
    "MailToken",
    "PrivacyBudgetState",
    "PrivacyRelease",
    "Quote",
    "Run",
    "SharedModel",
    "User",
    "WorkerCalibration",
    "WorkerHeartbeat",
    "metadata",
]
