"""A run's life, its fenced writes, and what each ending charges: the one place for both.

States (``Run.status`` / ``Run.phase``) and transitions::

    queued/queued --claim--> running/claimed --touch--> running/data_touched
        --first step--> running/training --deliver--> succeeded/delivered
    any running phase --fail (worker or reaper)--> failed/failed

What each ending charges (the run's reservation is settled exactly once):

============================  ============================================  ==========
ending                        when                                          charge
============================  ============================================  ==========
delivered                     model, receipts and spend in one transaction  what ran
failed before data touched    shredded dataset, key error, lease lost       nothing
failed after data touched     any error, lost worker, lease taken over      the plan
cancelled before data touched the buyer cancels a queued or claimed run     nothing
cancelled after data touched  the buyer cancels while the data is open      the plan
============================  ============================================  ==========

"Data touched" is committed *before* the first byte is decrypted, so a run that was not
marked touched certainly decrypted nothing. After it, every ending but delivery charges
the planned records in full, with the generic code ``training_failed`` for errors: which
step or row failed is never shown and never changes the charge.

Fencing (a lease is not a lock). Every claim bumps ``Run.lease_token``. Every write a
worker makes (heartbeat, progress, touch, delivery, failure) first reads the run row
under the write lock (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on
SQLite) and proceeds only if the status is still ``running`` with the worker's token;
otherwise it raises ``LeaseLost`` and the worker stops, delivering nothing. Heartbeats
come from a thread (``LeaseKeeper``) for the whole life of the job, so a slow decrypt
does not look like a dead worker; when the reaper takes a run anyway (a real crash, or a
process frozen past ``trading.lease_s``), the old worker finds out at its next write.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType

from sqlmodel import Session, col, select

from market import audit
from market.accounts.models import Role, User
from market.catalog.models import Dataset
from market.db import utcnow
from market.errors import Conflict, PermissionDenied
from market.ops.heartbeat import worker_id
from market.services import Services
from market.trading import services as trading
from market.trading.models import Quote, ReleaseState, Run, RunPhase, RunStatus

log = logging.getLogger(__name__)

#: The code of a run its buyer cancelled (``cancel``).
CANCELLED = "cancelled"

#: The code and message of every failure after the data was touched: fixed strings, so
#: nothing about the rows (which step, which value, which exception) reaches the buyer.
TRAINING_FAILED = "training_failed"
TRAINING_FAILED_MESSAGE = (
    "training failed after the data was opened; the run's planned privacy budget is charged"
)


class LeaseLost(Exception):
    """This worker no longer holds the run: another worker or the reaper took it."""


@dataclass(frozen=True)
class Lease:
    run_id: str
    token: int


@dataclass
class Claimed:
    lease: Lease
    run: Run
    quote: Quote
    dataset: Dataset


def claim(market: Services, run_id: str) -> Claimed | None:
    """Take a queued run: status running, a new fencing token. None if not queued."""
    with market.database.write() as session:
        run = _locked(session, run_id)
        if run is None or run.status is not RunStatus.QUEUED:
            return None  # already taken, finished or reaped: never train twice
        now = utcnow()
        run.status = RunStatus.RUNNING
        run.phase = RunPhase.CLAIMED
        run.lease_token += 1
        run.started_at = run.started_at or now
        run.heartbeat_at = now
        run.attempts += 1
        session.add(run)
        quote = session.get(Quote, run.quote_id)
        dataset = session.get(Dataset, run.dataset_id)
        assert quote is not None and dataset is not None
        audit.record(
            session,
            market.settings,
            kind="run.started",
            subject=run.id,
            actor_id=None,
            # host:pid, the worker's heartbeat id: which process trained it, not just where.
            data={"attempt": run.attempts, "worker": worker_id()},
        )
        return Claimed(Lease(run.id, run.lease_token), run, quote, dataset)


def _locked(session: Session, run_id: str) -> Run | None:
    return session.exec(select(Run).where(Run.id == run_id).with_for_update()).first()


def fenced(session: Session, lease: Lease) -> Run:
    """The run, locked, if this lease still holds it; else ``LeaseLost``."""
    run = _locked(session, lease.run_id)
    if run is None or run.status is not RunStatus.RUNNING or run.lease_token != lease.token:
        raise LeaseLost(lease.run_id)
    return run


def touch_data(market: Services, lease: Lease) -> None:
    """Commit "the data is about to be decrypted": from now on, every ending charges."""
    with market.database.write() as session:
        run = fenced(session, lease)
        now = utcnow()
        run.phase = RunPhase.DATA_TOUCHED
        run.data_touched_at = now
        run.heartbeat_at = now
        session.add(run)


def heartbeat(market: Services, lease: Lease) -> None:
    with market.database.write() as session:
        run = fenced(session, lease)
        run.heartbeat_at = utcnow()
        session.add(run)


def report_progress(market: Services, lease: Lease, step: int, steps: int, epsilon: float) -> None:
    with market.database.write() as session:
        run = fenced(session, lease)
        run.phase = RunPhase.TRAINING
        run.progress_step = step
        run.progress_steps = steps
        run.progress_epsilon = float(epsilon)
        run.heartbeat_at = utcnow()
        session.add(run)


class LeaseKeeper:
    """Heartbeats from a background thread for as long as the job holds its lease.

    ``lost`` is set when a fenced write finds the lease gone; the training loop polls
    it (as its cancel event) and every later write raises ``LeaseLost`` anyway.
    """

    def __init__(self, market: Services, lease: Lease, *, interval_s: float) -> None:
        self.market = market
        self.lease = lease
        self.interval_s = interval_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"lease-{lease.run_id}", daemon=True
        )

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=max(self.interval_s, 1.0) * 3)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                heartbeat(self.market, self.lease)
            except LeaseLost:
                log.warning("run %s: lease lost; stopping", self.lease.run_id)
                self.lost.set()
                return
            except Exception:  # a busy database: the next beat retries
                log.exception("run %s: heartbeat failed", self.lease.run_id)

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(self.lease.run_id)


def fail(market: Services, run_id: str, *, code: str, message: str, lease: Lease | None) -> bool:
    """End a running run as failed and settle its reservation by the table above.

    With a ``lease`` (the worker itself) the write is fenced; without one (the reaper)
    it applies to whichever running attempt there is. Returns False when there was
    nothing to fail (already ended, or the lease is gone)."""
    with market.database.write() as session:
        if lease is not None:
            try:
                run = fenced(session, lease)
            except LeaseLost:
                return False
        else:
            found = _locked(session, run_id)
            if found is None or found.status is not RunStatus.RUNNING:
                return False
            run = found
        _settle_failure(session, market, run, code=code, message=message)
        return True


def _settle_failure(
    session: Session, market: Services, run: Run, *, code: str, message: str
) -> None:
    from privacy.training import RunPlan

    quote = session.get(Quote, run.quote_id)
    assert quote is not None
    touched = run.data_touched_at is not None
    if touched:
        code, message = _touched_failure(code, message)
    release = trading.settle_release(
        session,
        run=run,
        state=ReleaseState.SPENT if touched else ReleaseState.RELEASED,
        records=RunPlan.from_dict(quote.plan).records() if touched else None,
        accountant=market.settings.trading.accountant,
    )
    dataset = session.get(Dataset, run.dataset_id)
    if release is not None and dataset is not None:
        trading.audit_release(
            session, market.settings, release=release, dataset=dataset, actor_id=None
        )
    audit.record(
        session,
        market.settings,
        kind="run.failed",
        subject=run.id,
        actor_id=None,
        data={"code": code, "message": message[:1000], "charged": touched},
    )
    # A model a lost worker wrote but never delivered does not stay behind (where the
    # models folder is this machine's; elsewhere that worker removes it itself).
    (market.settings.models_dir / f"{run.id}.safetensors").unlink(missing_ok=True)
    run.status = RunStatus.FAILED
    run.phase = RunPhase.FAILED
    run.error_code = code
    run.error_message = message[:1000]
    run.finished_at = utcnow()
    if touched:
        # How far training got is a function of the data: it does not outlive the run.
        run.progress_step = 0
        run.progress_epsilon = 0.0
    session.add(run)


def _touched_failure(code: str, message: str) -> tuple[str, str]:
    """After the data was touched, only a lost worker and a buyer's cancellation keep their
    own (data-free) codes."""
    if code in ("worker_lost", CANCELLED):
        return code, message
    return TRAINING_FAILED, TRAINING_FAILED_MESSAGE


def cancel(market: Services, *, actor: User, run_id: str) -> Run:
    """The buyer (or an admin) ends a queued or running run; it is charged like a failure.

    Before the data was touched the reservation is released (nothing was opened); after,
    the planned records are charged in full, whatever step training had reached (how far
    it got depends on the data). A running worker finds out at its next fenced write (its
    heartbeat thread sets the training's cancel event) and delivers nothing; a queued one
    is never claimed (``claim`` takes only queued runs).
    """
    with market.database.write() as session:
        found = trading.get_run(session, actor=actor, run_id=run_id)  # 404 unless visible
        if found.buyer_id != actor.id and actor.role is not Role.ADMIN:
            raise PermissionDenied("only the run's buyer may cancel it")
        run = _locked(session, run_id)
        assert run is not None
        if run.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
            ended = run.status.value
            raise Conflict(f"the run has already {ended}", details={"status": ended})
        touched = run.data_touched_at is not None
        message = (
            "cancelled by the buyer after the data was opened; the planned budget is charged"
            if touched
            else "cancelled by the buyer before the data was opened; nothing was charged"
        )
        _settle_failure(session, market, run, code=CANCELLED, message=message)
        audit.record(
            session,
            market.settings,
            kind="run.cancelled",
            subject=run.id,
            actor_id=actor.id,
            data={"charged": touched},
        )
        return run


def reap_lost_runs(market: Services) -> list[str]:
    """Fail runs whose heartbeat is older than the lease (killed, frozen, machine lost)."""
    cutoff = utcnow() - timedelta(seconds=market.settings.trading.lease_s)
    with market.database.read() as session:
        lost = session.exec(
            select(Run.id).where(Run.status == RunStatus.RUNNING, col(Run.heartbeat_at) < cutoff)
        ).all()
    reaped = []
    for run_id in lost:
        if _reap(market, run_id, cutoff=cutoff):
            reaped.append(run_id)
    return reaped


def _reap(market: Services, run_id: str, *, cutoff: datetime) -> bool:
    with market.database.write() as session:
        run = _locked(session, run_id)
        # Re-checked under the lock: a heartbeat may have landed since the query.
        if run is None or run.status is not RunStatus.RUNNING:
            return False
        if run.heartbeat_at is not None and run.heartbeat_at >= cutoff:
            return False
        _settle_failure(
            session,
            market,
            run,
            code="worker_lost",
            message="the worker running this run stopped responding",
        )
        return True
