"""Datasets in the JSON API: drafts, file upload, catalog search, detail, edits, delisting."""

from __future__ import annotations

from flask import Response, request
from flask_openapi3 import APIBlueprint, Tag

from market.accounts.models import Role
from market.api import API_V1, BEARER, raw_body
from market.api.auth import api_login_required, caller
from market.api.schemas import COMMON_ERRORS, ErrorBody
from market.catalog import editing
from market.catalog import services as catalog
from market.catalog.schemas import (
    CatalogQuery,
    DatasetCreate,
    DatasetPage,
    DatasetPath,
    DatasetPublic,
)
from market.catalog.streams import body_chunks, discard_rest
from market.catalog.uploads import delist_dataset, upload_dataset_file
from market.extensions import csrf
from market.services import services

api = APIBlueprint(
    "catalog_api",
    __name__,
    url_prefix=API_V1,
    abp_tags=[Tag(name="datasets", description="Listings: metadata, encrypted files, search")],
    abp_responses=COMMON_ERRORS,
)
csrf.exempt(api)


@api.after_request
def _finish_upload_body(response: Response) -> Response:
    """A refused upload (401, 404, 409, 413, 415, 422...) leaves its body unread: read and
    discard it, up to a bound, so the next request on a keep-alive connection starts where
    the client thinks it does; beyond the bound, ask for the connection to be closed."""
    if request.endpoint == f"{api.name}.upload_file":
        limit = services().settings.catalog.max_upload_bytes + CHUNK_SLACK
        if not discard_rest(request.stream, max_bytes=limit):
            response.headers["Connection"] = "close"
    return response


# What a refused upload's body may run past the file limit (framing, a last chunk) and still
# be drained rather than cut off.
CHUNK_SLACK = 1 << 20

_FILE_BODY = {
    "requestBody": {
        "required": True,
        "description": "The raw file, encrypted as it streams in; never stored in plaintext.",
        "content": {
            media_type: {"schema": {"type": "string", "format": "binary"}}
            for media_type in catalog.CONTENT_TYPES
        },
    }
}


@api.post(
    "/datasets",
    summary="Create a listing draft from metadata",
    security=BEARER,
    responses={201: DatasetPublic, 422: ErrorBody},
)
@api_login_required(Role.OWNER)
def create_dataset(body: DatasetCreate):
    market = services()
    with market.database.write() as session:
        dataset = catalog.create_draft(
            session,
            owner=caller(),
            data=body,
            currency=market.settings.costing.currency,
            limits=market.settings.catalog,
        )
        out = catalog.to_public(session, dataset, tags=body.tags)
    return out.model_dump(mode="json"), 201


@api.put(
    "/datasets/<dataset_id>/file",
    summary="Upload the dataset's file (raw body); lists the dataset when it validates",
    security=BEARER,
    responses={200: DatasetPublic, 409: ErrorBody, 413: ErrorBody, 415: ErrorBody, 422: ErrorBody},
    openapi_extensions=_FILE_BODY,
)
@api_login_required(Role.OWNER)
@raw_body
def upload_file(path: DatasetPath):
    market = services()
    dataset = upload_dataset_file(
        market,
        actor=caller(),
        dataset_id=path.dataset_id,
        content_type=request.content_type,
        chunks=body_chunks(request.stream, max_bytes=market.settings.catalog.max_upload_bytes),
    )
    with market.database.read() as session:
        out = catalog.to_public(session, dataset)
    return out.model_dump(mode="json")


@api.get("/datasets", summary="Search the catalog", security=BEARER, responses={200: DatasetPage})
@api_login_required()
def list_datasets(query: CatalogQuery):
    market = services()
    with market.database.read() as session:
        page = catalog.search(
            session,
            actor=caller(),
            q=query.q,
            tag=query.tag,
            page=query.page,
            page_size=market.settings.catalog.page_size,
            mine=query.mine,
        )
        out = DatasetPage(
            items=catalog.summaries(session, page.items),
            total=page.total,
            page=page.page,
            page_size=page.page_size,
        )
    return out.model_dump(mode="json")


@api.get(
    "/datasets/<dataset_id>",
    summary="A dataset's metadata, schema, row count and budget",
    security=BEARER,
    responses={200: DatasetPublic},
)
@api_login_required()
def get_dataset(path: DatasetPath):
    with services().database.read() as session:
        dataset = catalog.get_dataset(session, actor=caller(), dataset_id=path.dataset_id)
        out = catalog.to_public(session, dataset)
    return out.model_dump(mode="json")


@api.put(
    "/datasets/<dataset_id>",
    summary="Edit a listing: title, description, tags, licence, prices; raise its total budget",
    security=BEARER,
    responses={200: DatasetPublic, 409: ErrorBody, 422: ErrorBody},
)
@api_login_required(Role.OWNER)
def edit_dataset(path: DatasetPath, body: editing.ListingEdit):
    """Every editable field is sent (what the web form sends); the schema, the file, delta and
    the per-run cap stay as listed, and the total budget may only grow (its own audit entry)."""
    market = services()
    with market.database.write() as session:
        editing.edit_listing(
            session, actor=caller(), dataset_id=path.dataset_id, edit=body, settings=market.settings
        )
    with market.database.read() as session:
        dataset = catalog.get_dataset(session, actor=caller(), dataset_id=path.dataset_id)
        out = catalog.to_public(session, dataset)
    return out.model_dump(mode="json")


@api.delete(
    "/datasets/<dataset_id>",
    summary="Delist and crypto-shred (ledgers and audit entries stay)",
    security=BEARER,
    responses={200: DatasetPublic},
)
@api_login_required(Role.OWNER)
def delete_dataset(path: DatasetPath):
    market = services()
    dataset = delist_dataset(market, actor=caller(), dataset_id=path.dataset_id)
    with market.database.read() as session:
        out = catalog.to_public(session, dataset)
    return out.model_dump(mode="json")
