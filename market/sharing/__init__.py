"""Model sharing: a buyer publishes a delivered model; other researchers acquire it instead
of training it again. Re-use is post-processing of a DP output, so it spends no budget
(docs/privacy.md); each acquisition pays a royalty split between the dataset's owner and the
publisher and states the energy and emissions it avoided (docs/costs.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def init_app(app: Flask) -> None:
    """The shared-model pages and /api/v1/models."""
    from market.api import register_api
    from market.sharing.api import api
    from market.sharing.views import init_views

    init_views(app)
    register_api(app, api)
