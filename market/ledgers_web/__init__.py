"""The auditors' and owners' pages over the ledgers (docs/costs.md, docs/privacy.md): the
privacy ledger of each dataset, the cost ledger, the owner's dashboard, the audit log's
checkpoint, and the cost breakdown chart on a run's receipt. Charts are matplotlib SVG,
inline (``charts``)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from market.ledgers_web.views import bp, cost_breakdown_chart

    app.register_blueprint(bp)
    app.add_template_global(cost_breakdown_chart, "cost_breakdown_chart")
