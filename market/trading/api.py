"""Quotes and runs in the JSON API."""

from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from market.accounts.models import Role
from market.api import API_V1, BEARER
from market.api.auth import api_login_required, caller
from market.api.schemas import COMMON_ERRORS, ErrorBody
from market.catalog.models import Dataset
from market.extensions import csrf
from market.services import services
from market.trading import lifecycle, purchases
from market.trading import services as trading
from market.trading.presenters import quote_public, run_public
from market.trading.schemas import (
    QuotePath,
    QuotePublic,
    QuoteRequest,
    RunCreate,
    RunList,
    RunPath,
    RunPublic,
    RunQuery,
)

api = APIBlueprint(
    "trading_api",
    __name__,
    url_prefix=API_V1,
    abp_tags=[Tag(name="runs", description="Quotes, private training runs and their delivery")],
    abp_responses=COMMON_ERRORS,
)
csrf.exempt(api)


@api.post(
    "/quotes",
    summary="Plan and price a private training run",
    security=BEARER,
    responses={201: QuotePublic, 409: ErrorBody, 422: ErrorBody},
)
@api_login_required(Role.RESEARCHER)
def create_quote(body: QuoteRequest):
    market = services()
    quote = trading.store_quote(
        market.database, actor=caller(), request=body, settings=market.settings
    )
    with market.database.read() as session:
        dataset = session.get(Dataset, quote.dataset_id)
        assert dataset is not None
        out = quote_public(quote, epsilon_total=dataset.epsilon_total)
    return out.model_dump(mode="json"), 201


@api.get(
    "/quotes/<quote_id>",
    summary="A quote you asked for",
    security=BEARER,
    responses={200: QuotePublic},
)
@api_login_required(Role.RESEARCHER)
def get_quote(path: QuotePath):
    with services().database.read() as session:
        quote = trading.get_quote(session, actor=caller(), quote_id=path.quote_id)
        dataset = session.get(Dataset, quote.dataset_id)
        assert dataset is not None
        out = quote_public(quote, epsilon_total=dataset.epsilon_total)
    return out.model_dump(mode="json")


@api.post(
    "/runs",
    summary="Buy the quoted run: reserves the budget and queues the training",
    security=BEARER,
    responses={202: RunPublic, 409: ErrorBody},
)
@api_login_required(Role.RESEARCHER)
def create_run(body: RunCreate):
    run = purchases.buy(services(), actor=caller(), quote_id=body.quote_id)
    return run_public(run).model_dump(mode="json"), 202


@api.get(
    "/runs",
    summary="Runs you bought, or runs on your data",
    security=BEARER,
    responses={200: RunList},
)
@api_login_required()
def list_runs(query: RunQuery):
    with services().database.read() as session:
        runs = trading.list_runs(session, actor=caller(), dataset_id=query.dataset_id)
        out = RunList(items=[run_public(r) for r in runs])
    return out.model_dump(mode="json")


@api.get(
    "/runs/<run_id>",
    summary="A run's status, progress and receipts",
    security=BEARER,
    responses={200: RunPublic},
)
@api_login_required()
def get_run(path: RunPath):
    with services().database.read() as session:
        run = trading.get_run(session, actor=caller(), run_id=path.run_id)
        out = run_public(run)
    return out.model_dump(mode="json")


@api.post(
    "/runs/<run_id>/cancel",
    summary="Cancel a queued or running run you bought (released if the data was never "
    "opened, else the plan is charged)",
    security=BEARER,
    responses={200: RunPublic, 409: ErrorBody},
)
@api_login_required(Role.RESEARCHER)
def cancel_run(path: RunPath):
    run = lifecycle.cancel(services(), actor=caller(), run_id=path.run_id)
    return run_public(run).model_dump(mode="json")


@api.get(
    "/runs/<run_id>/model",
    summary="The trained weights (safetensors, spec and preprocessing in its metadata); buyer only",
    security=BEARER,
    responses={
        200: {
            "description": "The safetensors file.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
        409: ErrorBody,
    },
)
@api_login_required(Role.RESEARCHER)
def download_model(path: RunPath):
    market = services()
    with market.database.read() as session:
        run = trading.model_for_buyer(session, actor=caller(), run_id=path.run_id)
    blob = (market.settings.models_dir / str(run.model_name)).read_bytes()
    return Response(
        blob,
        mimetype="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="run-{run.id}.safetensors"'},
    )
