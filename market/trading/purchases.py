"""The purchase use case: reserve and create the run in one transaction, then queue it.

Queued only after the commit, so a worker never sees a run whose reservation could still
roll back; with a deadline, queued for the quote's greenest start (Huey eta).
"""

from __future__ import annotations

from market.accounts.models import User
from market.services import Services
from market.trading import services as trading
from market.trading.models import Run


def buy(market: Services, *, actor: User, quote_id: str) -> Run:
    with market.database.write() as session:
        run = trading.purchase(session, actor=actor, quote_id=quote_id, settings=market.settings)
        start = trading.scheduled_start(trading.get_quote(session, actor=actor, quote_id=quote_id))
    market.queue.enqueue_run(run.id, eta=start)
    return run
