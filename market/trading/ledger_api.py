"""The privacy and cost ledgers in the JSON API (CSV on request)."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from market.api import API_V1, BEARER
from market.api.auth import api_login_required, caller
from market.api.schemas import COMMON_ERRORS
from market.extensions import csrf
from market.services import services
from market.trading import ledgers
from privacy.relation import NEIGHBOURING_RELATION

api = APIBlueprint(
    "ledger_api",
    __name__,
    url_prefix=API_V1,
    abp_tags=[Tag(name="ledgers", description="Every privacy release and every run's costs")],
    abp_responses=COMMON_ERRORS,
)
csrf.exempt(api)


class PrivacyLedgerQuery(BaseModel):
    dataset_id: str = Field(max_length=64)


class PrivacyLedgerOut(BaseModel):
    dataset_id: str
    epsilon_total: float
    delta: float
    accountant: str
    neighbouring_relation: str = Field(
        default=NEIGHBOURING_RELATION,
        description="add_remove_one: neighbours differ by one row added or removed",
    )
    releases: list[dict[str, Any]]


class CostLedgerOut(BaseModel):
    items: list[dict[str, Any]]
    totals: dict[str, str]


def _wants_csv() -> bool:
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"


@api.get(
    "/ledger/privacy",
    summary="Every release of a dataset with its mechanism and the composed epsilon after it",
    security=BEARER,
    responses={200: PrivacyLedgerOut},
)
@api_login_required()
def privacy_ledger(query: PrivacyLedgerQuery):
    market = services()
    with market.database.read() as session:
        dataset, releases = ledgers.privacy_ledger(
            session, actor=caller(), dataset_id=query.dataset_id
        )
    rows = [ledgers.release_row(r) for r in releases]
    if _wants_csv():
        columns = ["id", "run_id", "state", "epsilon", "epsilon_after", "created_at", "updated_at"]
        return Response(ledgers.to_csv(rows, columns), mimetype="text/csv")
    out = PrivacyLedgerOut(
        dataset_id=dataset.id,
        epsilon_total=dataset.epsilon_total,
        delta=dataset.delta,
        accountant=market.settings.trading.accountant,
        neighbouring_relation=NEIGHBOURING_RELATION,
        releases=rows,
    )
    return out.model_dump(mode="json")


@api.get(
    "/ledger/costs",
    summary="Every run's measured cost terms (CSV with Accept: text/csv)",
    security=BEARER,
    responses={200: CostLedgerOut},
)
@api_login_required()
def cost_ledger():
    with services().database.read() as session:
        rows = ledgers.cost_rows(session, actor=caller())
    if _wants_csv():
        return Response(ledgers.to_csv(rows, ledgers.COST_COLUMNS), mimetype="text/csv")
    from decimal import Decimal

    totals = {
        term: str(
            sum((Decimal(r[term]) for r in rows if r[term] not in (None, "None")), Decimal(0))
        )
        for term in ("compute", "energy", "environment", "royalty", "platform_fee", "total")
    }
    return CostLedgerOut(items=rows, totals=totals).model_dump(mode="json")
