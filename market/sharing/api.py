"""Model sharing in the JSON API: /api/v1/models (docs/api.md, "Model sharing")."""

from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from market.accounts.models import Role
from market.api import API_V1, BEARER
from market.api.auth import api_login_required, caller
from market.api.schemas import COMMON_ERRORS, ErrorBody
from market.extensions import csrf
from market.services import services
from market.sharing import services as sharing
from market.sharing.schemas import (
    AcquisitionPublic,
    ModelCreate,
    ModelPath,
    ModelQuery,
    SharedModelList,
    SharedModelPublic,
)

api = APIBlueprint(
    "sharing_api",
    __name__,
    url_prefix=API_V1,
    abp_tags=[
        Tag(
            name="models",
            description="Delivered models shared by their buyers: re-use spends no budget",
        )
    ],
    abp_responses=COMMON_ERRORS,
)
csrf.exempt(api)

PAGE_SIZE = 20


@api.post(
    "/models",
    summary="Share a delivered run's model at a price (the run's buyer only)",
    security=BEARER,
    responses={201: SharedModelPublic, 409: ErrorBody, 422: ErrorBody},
)
@api_login_required(Role.RESEARCHER)
def publish_model(body: ModelCreate):
    market = services()
    actor = caller()
    with market.database.write() as session:
        model = sharing.publish(session, market.settings, actor=actor, body=body)
        out = sharing.to_public(session, model, actor=actor)
    return out.model_dump(mode="json"), 201


@api.get(
    "/models",
    summary="Shared models: spec, dataset, privacy summary, noisy metrics, training footprint",
    security=BEARER,
    responses={200: SharedModelList},
)
@api_login_required()
def list_models(query: ModelQuery):
    actor = caller()
    with services().database.read() as session:
        found = sharing.search(
            session, q=query.q, dataset_id=query.dataset_id, page=query.page, page_size=PAGE_SIZE
        )
        out = SharedModelList(
            items=[sharing.to_public(session, m, actor=actor) for m in found.items],
            total=found.total,
        )
    return out.model_dump(mode="json")


@api.get(
    "/models/<model_id>",
    summary="One shared model",
    security=BEARER,
    responses={200: SharedModelPublic},
)
@api_login_required()
def get_model(path: ModelPath):
    actor = caller()
    with services().database.read() as session:
        model = sharing.get_model(session, model_id=path.model_id)
        out = sharing.to_public(session, model, actor=actor)
    return out.model_dump(mode="json")


@api.post(
    "/models/<model_id>/acquisitions",
    summary="Acquire a shared model: pays the price, avoids training it again",
    security=BEARER,
    responses={201: AcquisitionPublic, 409: ErrorBody},
)
@api_login_required(Role.RESEARCHER)
def acquire_model(path: ModelPath):
    market = services()
    with market.database.write() as session:
        acquisition, _ = sharing.acquire(
            session, market.settings, actor=caller(), model_id=path.model_id
        )
        out = sharing.acquisition_public(acquisition)
    return out.model_dump(mode="json"), 201


@api.get(
    "/models/<model_id>/file",
    summary="The model's safetensors file (its publisher and acquirers only)",
    security=BEARER,
    responses={
        200: {
            "description": "The safetensors file, the same bytes the run delivered.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
    },
)
@api_login_required()
def download_model_file(path: ModelPath):
    market = services()
    with market.database.read() as session:
        run = sharing.file_run(session, actor=caller(), model_id=path.model_id)
    blob = (market.settings.models_dir / str(run.model_name)).read_bytes()
    return Response(
        blob,
        mimetype="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="model-{path.model_id}.safetensors"'
        },
    )
