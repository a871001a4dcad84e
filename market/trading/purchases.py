"""The purchase use case: reserve and create the run in one transaction, then queue it.

Queued only after the commit, so a worker never sees a run whose reservation could still
roll back; with a deadline, queued for the quote's greenest start (Huey eta). A quote whose
worker class has no live worker (no heartbeat fresher than ``ops.worker_stale_s``) is refused
with 409 ``no_live_worker``: nothing would train the run, and the quote said so.
"""

from __future__ import annotations

from market.accounts.models import User
from market.errors import Conflict
from market.services import Services
from market.trading import calibration
from market.trading import services as trading
from market.trading.models import Run


class NoLiveWorker(Conflict):
    code = "no_live_worker"


def buy(market: Services, *, actor: User, quote_id: str, start_greenest: bool = True) -> Run:
    """Reserve, create and queue the run; with a deadline it is queued for the quote's
    greenest start unless the buyer chose ``start_greenest=False`` (start now)."""
    with market.database.write() as session:
        quote = trading.get_quote(session, actor=actor, quote_id=quote_id)
        worker_class = str(quote.request.get("worker_class", "cpu"))
        stale_s = market.settings.ops.worker_stale_s
        if not calibration.live_workers(session, worker_class, stale_after_s=stale_s):
            raise NoLiveWorker(
                f"no live worker of class {worker_class} (no heartbeat in the last "
                f"{stale_s:g} s): nothing would train this run; try again when one is running",
                details={"worker_class": worker_class},
            )
        run = trading.purchase(session, actor=actor, quote_id=quote_id, settings=market.settings)
        start = (
            trading.scheduled_start(trading.get_quote(session, actor=actor, quote_id=quote_id))
            if start_greenest
            else None
        )
    market.queue.enqueue_run(run.id, eta=start)
    return run
