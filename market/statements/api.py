"""Monthly statements in the JSON API: GET /api/v1/statements."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from market.api import API_V1, BEARER
from market.api.auth import api_login_required, caller
from market.api.schemas import COMMON_ERRORS
from market.extensions import csrf
from market.services import services
from market.statements import services as statements
from market.statements.schemas import StatementPublic, StatementQuery

api = APIBlueprint(
    "statements_api",
    __name__,
    url_prefix=API_V1,
    abp_tags=[Tag(name="statements", description="Monthly statements, rounded once")],
    abp_responses=COMMON_ERRORS,
)
csrf.exempt(api)


@api.get(
    "/statements",
    summary="Your monthly statement: exact accrued terms, rounded once",
    security=BEARER,
    responses={200: StatementPublic},
)
@api_login_required()
def get_statement(query: StatementQuery):
    market = services()
    with market.database.read() as session:
        found = statements.statement(
            session,
            actor=caller(),
            currency=market.settings.costing.currency,
            month=query.month,
            account_id=query.account_id,
        )
    return StatementPublic.model_validate(found.to_dict()).model_dump(mode="json")
