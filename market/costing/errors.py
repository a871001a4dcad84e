"""Errors of the cost model, children of the marketplace's one hierarchy (market.errors)::

    MarketError
    +-- InvalidRequest (400)
        +-- CostingError            (400 costing_error)
            +-- DeadlineTooSoon     (400 deadline_too_soon)  the run cannot finish in time

Why children of ``InvalidRequest``: each of them is caused by what was asked (a royalty in
another currency, an impossible deadline), so the one handler answers 4xx, not 500.
``CurrencyMismatch`` (400 ``currency_mismatch``, two currencies in one sum) belongs to
``market.money`` and is re-exported here.
"""

from __future__ import annotations

from market.errors import InvalidRequest
from market.money import CurrencyMismatch

__all__ = ["CostingError", "CurrencyMismatch", "DeadlineTooSoon"]


class CostingError(InvalidRequest):
    code = "costing_error"


class DeadlineTooSoon(CostingError):
    code = "deadline_too_soon"
