"""Who may see or act on what: every ownership and role rule about datasets, quotes, runs,
model downloads, ledgers and audit entries, in one place.

Each rule is a small predicate (``may_...``: one row against one actor) or a query filter
(``..._visible_to``: narrows a SELECT to what the actor may see), and the two forms of a
rule are written next to each other so they cannot drift apart. The services raise the
errors (a row the caller may not see reads as not found, so ids are not confirmed; an action
on a visible row the caller may not take is forbidden); this module only answers.

The roles: owners list data, researchers buy runs, auditors read every ledger and the whole
audit log, admins hold every role. Which role an endpoint needs at all is said at the
endpoint (``api_login_required(Role...)``, ``market.accounts.services.require_role``); the
rules here are about *whose* dataset, quote or run it is.

This module imports models only (no service, no Flask), so any layer may use it without an
import cycle (tests/unit/test_import_graph.py).
"""

from __future__ import annotations

from typing import Any, Protocol, Self, TypeVar

from sqlalchemy import String, cast, union
from sqlmodel import col, select

from market.accounts.models import Role, User
from market.catalog.models import Dataset, DatasetStatus
from market.trading.models import Quote, Run


class _Filterable(Protocol):
    """A SELECT (``select(Run)``, ``select(Run, Dataset)``, ...) that a filter narrows."""

    def where(self, *whereclause: Any) -> Self: ...


S = TypeVar("S", bound=_Filterable)

# Roles that read every ledger, every run and the whole audit log.
OVERSEERS = (Role.AUDITOR, Role.ADMIN)


def is_overseer(actor: User) -> bool:
    """Auditors and admins see every run, ledger and audit entry."""
    return actor.role in OVERSEERS


def owns(actor: User, dataset: Dataset) -> bool:
    """The actor listed this dataset."""
    return dataset.owner_id == actor.id


# --- datasets ------------------------------------------------------------------------------


def may_see_dataset(actor: User, dataset: Dataset) -> bool:
    """Listed: everyone; a draft: its owner and admins; delisted: its owner, auditors, admins."""
    if dataset.status is DatasetStatus.LISTED or owns(actor, dataset):
        return True
    if dataset.status is DatasetStatus.DELISTED:
        return is_overseer(actor)
    return actor.role is Role.ADMIN


def may_change_dataset(actor: User, dataset: Dataset) -> bool:
    """Only the dataset's owner changes it (upload, delist); admins may change any."""
    return owns(actor, dataset) or actor.role is Role.ADMIN


def datasets_owned_by(statement: S, actor: User) -> S:
    """Only the actor's own datasets, in any status ("My datasets", the owner's dashboard)."""
    return statement.where(Dataset.owner_id == actor.id)


# --- quotes --------------------------------------------------------------------------------


def may_see_quote(actor: User, quote: Quote) -> bool:
    """A quote is its researcher's; admins may read any."""
    return quote.researcher_id == actor.id or actor.role is Role.ADMIN


def may_buy_quote(actor: User, quote: Quote) -> bool:
    """Only the researcher who asked for a quote buys it (admins included: nobody else)."""
    return quote.researcher_id == actor.id


# --- runs ----------------------------------------------------------------------------------


def may_see_run(actor: User, run: Run, dataset: Dataset | None) -> bool:
    """A run is seen by its buyer, the owner of its dataset, auditors and admins."""
    if run.buyer_id == actor.id or is_overseer(actor):
        return True
    return dataset is not None and owns(actor, dataset)


def runs_visible_to(statement: S, actor: User) -> S:
    """``may_see_run`` as a filter on a SELECT over Run: researchers their purchases, owners
    the runs on their datasets, auditors and admins every run."""
    if actor.role is Role.RESEARCHER:
        return statement.where(Run.buyer_id == actor.id)
    if actor.role is Role.OWNER:
        owned = select(Dataset.id).where(Dataset.owner_id == actor.id)
        return statement.where(col(Run.dataset_id).in_(owned))
    return statement


def may_download_model(actor: User, run: Run) -> bool:
    """Only a run's buyer downloads its model (not its dataset's owner, auditors or admins)."""
    return run.buyer_id == actor.id


# --- ledgers -------------------------------------------------------------------------------


def may_see_ledger(actor: User, dataset: Dataset) -> bool:
    """A dataset's privacy ledger is read by auditors, admins and the dataset's owner."""
    return is_overseer(actor) or owns(actor, dataset)


def may_list_privacy_ledgers(actor: User) -> bool:
    """The privacy ledgers' index is for auditors, admins and owners (not researchers)."""
    return is_overseer(actor) or actor.role is Role.OWNER


def ledger_datasets_visible_to(statement: S, actor: User) -> S:
    """The index's datasets: auditors and admins every one that was ever listed (drafts have
    no releases), owners their own in any status; call ``may_list_privacy_ledgers`` first."""
    if is_overseer(actor):
        return statement.where(Dataset.status != DatasetStatus.DRAFT)
    return datasets_owned_by(statement, actor)


# The cost ledger's rows are runs: ``runs_visible_to`` scopes them.


# --- audit log -----------------------------------------------------------------------------


def audit_subjects_visible_to(actor: User) -> Any:
    """The audit entries' subjects the actor may read, as a subquery of ids, or None for
    everything (auditors, admins): owners their datasets and the runs on them, researchers
    the runs they bought."""
    if is_overseer(actor):
        return None
    if actor.role is Role.OWNER:
        owned = select(Dataset.id).where(Dataset.owner_id == actor.id)
        runs = select(Run.id).where(col(Run.dataset_id).in_(owned))
        return union(owned, runs)
    return select(cast(Run.id, String)).where(Run.buyer_id == actor.id)
