"""Hostile uploads and listings: bombs, lying headers, wrong formats, oversized metadata.

Each refusal is checked for its status, its error code, a message that names the problem,
and that nothing was left behind (no ciphertext, no ``.partial``, the draft untouched, no
listing recorded, the budget unspent). The bombs run in a subprocess of their own (a real
app: SQLite, encryption, the upload endpoint), whose peak memory is read from
``/proc/self/status`` (VmHWM) and compared to a stated bound above its resident size just
before the upload. The keep-alive tests talk to ``market serve``'s server (gunicorn,
gthread) over one real HTTP/1.1 connection.
"""

from __future__ import annotations

import copy
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from market import create_app
from market.accounts.models import Role
from market.catalog.models import DatasetStatus
from tests.catalog.conftest import NPZ_METADATA, cancer_rows, metadata, to_csv, to_parquet
from tests.conftest import app_overrides
from tests.unit.test_errors import assert_error_shape

PROJECT = Path(__file__).resolve().parents[2]
MiB = 1 << 20
# Peak memory a bomb may add to the validating process (VmHWM after the upload minus VmRSS
# just before it). Before the header checks, the NPZ bomb below took 3.9 GB and the Parquet
# one 2.8 GB; a batch of BATCH_CELLS float64 values is 16 MiB.
BOMB_PEAK_BOUND = 96 * MiB
# An accepted file of 94 MB of uint8 pixels (750 MB as one float64 copy) is validated in
# batches: its peak stays well under one float64 copy.
BATCH_PEAK_BOUND = 192 * MiB


# -- files -------------------------------------------------------------------------


def _header_bytes(shape: tuple[int, ...], dtype: str) -> bytes:
    sink = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        sink, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return sink.getvalue()


def zeros_npz(rows: int, image: tuple[int, ...] = (28, 28), *, header_rows: int | None = None):
    """An .npz of ``rows`` all-zero uint8 images and alternating 0/1 labels, written member
    by member (never the whole array in this process). ``header_rows`` lies in x's header."""
    sink = io.BytesIO()
    per_image = int(np.prod(image))
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            member.write(_header_bytes((header_rows or rows, *image), "|u1"))
            block = bytes(per_image * 4096)
            left = rows
            while left:
                count = min(left, 4096)
                member.write(block[: count * per_image])
                left -= count
        with archive.open("y.npy", "w", force_zip64=True) as member:
            member.write(_header_bytes((rows,), "<i8"))
            member.write((np.arange(rows, dtype=np.int64) % 2).tobytes())
    return sink.getvalue()


def identical_rows_parquet(rows: int) -> bytes:
    """``rows`` copies of one breast-cancer row: a few hundred KB of Parquet."""
    row = cancer_rows(1)[0]
    table = pa.table(
        {
            name: pa.array([value]).take(pa.array(np.zeros(rows, dtype=np.int32)))
            for name, value in row.items()
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=1 << 20)
    return sink.getvalue()


IMAGE_METADATA = copy.deepcopy(NPZ_METADATA) | {
    "image": {
        "shape": [28, 28],
        "pixel_range": {"min": 0, "max": 255},
        "class_names": ["zero", "one"],
    },
    "privacy": {"epsilon_total": 8.0, "delta": 1e-7, "max_epsilon_per_run": 3.0},
}
NPZ = "application/x-npz"
PARQUET = "application/vnd.apache.parquet"


# -- a real app in a subprocess, for peak memory -------------------------------------

_UPLOAD_IN_A_PROCESS = r"""
import json, resource, sys
from pathlib import Path

from market import create_app
from market.accounts import services as accounts
from market.audit import ensure_signing_key
from market.migrations import upgrade_to_head
from privacy.vault import init_keydir
from tests.conftest import TEST_PASSWORD, app_overrides

job = json.loads(sys.stdin.read())
home = Path(job["home"])
url = f"sqlite:///{home / 'market.db'}"
upgrade_to_head(url)
init_keydir(home / "keys")
app = create_app(app_overrides(home, url, **job.get("overrides", {})))
ensure_signing_key(app.extensions["market"].settings)
market = app.extensions["market"]
with market.database.write() as session:
    accounts.create_user(session, email="bomb@people.example", role="owner",
                         password=TEST_PASSWORD, passwords=market.passwords)
client = app.test_client()
token = client.post("/api/v1/tokens", json={"email": "bomb@people.example",
                                            "password": TEST_PASSWORD}).get_json()["token"]
headers = {"Authorization": f"Bearer {token}"}
draft = client.post("/api/v1/datasets", json=job["metadata"], headers=headers).get_json()
body = Path(job["body"]).read_bytes()
# Warm the endpoint's imports with a refused upload of the wrong type (415, nothing read).
client.put(f"/api/v1/datasets/{draft['id']}/file", data=b"x", headers=headers)

def status():
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}

before = status()
cpu = resource.getrusage(resource.RUSAGE_SELF)
response = client.put(f"/api/v1/datasets/{draft['id']}/file", data=body,
                      headers={**headers, "Content-Type": job["content_type"]})
cpu_after = resource.getrusage(resource.RUSAGE_SELF)
after = status()
market.database.dispose()
print(json.dumps({
    "dataset_id": draft["id"],
    "status": response.status_code,
    "body": response.get_json(),
    "rss_before": before["VmRSS"],
    "peak_after": after["VmHWM"],
    "cpu_s": (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu.ru_utime + cpu.ru_stime),
}))
"""


def upload_in_a_process(
    home: Path,
    meta: dict[str, Any],
    body: bytes,
    content_type: str,
    *,
    overrides: dict[str, Any] | None = None,
    project: Path = PROJECT,
) -> dict[str, Any]:
    """Upload ``body`` to a new draft in a fresh process; its status, body and memory."""
    home.mkdir(parents=True, exist_ok=True)
    body_file = home / "upload.bin"  # test data (zeros), not an owner's plaintext
    body_file.write_bytes(body)
    job = {
        "home": str(home),
        "metadata": meta,
        "body": str(body_file),
        "content_type": content_type,
        "overrides": overrides or {},
    }
    done = subprocess.run(
        [sys.executable, "-c", _UPLOAD_IN_A_PROCESS],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project)},
        timeout=600,
    )
    body_file.unlink()
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["peak_growth"] = result["peak_after"] - result["rss_before"]
    return result


def assert_nothing_left(home: Path, dataset_id: str) -> None:
    """No ciphertext or .partial file, the draft untouched, no listing in the audit log."""
    storage = home / "datasets"
    assert not storage.exists() or sorted(storage.iterdir()) == []
    engine = sa.create_engine(f"sqlite:///{home / 'market.db'}")
    try:
        with engine.connect() as connection:
            row = connection.execute(
                sa.text(
                    "SELECT status, rows, wrapped_key, storage_name, ciphertext_bytes "
                    "FROM datasets WHERE id = :id"
                ),
                {"id": dataset_id},
            ).one()
            kinds = [
                r[0]
                for r in connection.execute(
                    sa.text("SELECT kind FROM audit_entries WHERE subject = :id"),
                    {"id": dataset_id},
                )
            ]
            releases = connection.execute(sa.text("SELECT count(*) FROM privacy_releases")).one()
    finally:
        engine.dispose()
    assert row == (DatasetStatus.DRAFT.value, None, None, None, None)
    assert "dataset.listed" not in kinds
    assert releases[0] == 0  # no budget spent or reserved


# -- bombs (subprocess, peak memory) -------------------------------------------------


def test_npz_zeros_bomb_is_refused_from_its_headers(tmp_path: Path) -> None:
    body = zeros_npz(382_653)  # 300 MB of pixels in about 0.3 MB
    assert len(body) < 1 * MiB
    result = upload_in_a_process(tmp_path / "home", IMAGE_METADATA, body, NPZ)
    assert result["status"] == 413, result["body"]
    assert_error_shape(result["body"], "payload_too_large")
    assert "max_cells" in result["body"]["error"]["message"]
    assert result["peak_growth"] < BOMB_PEAK_BOUND, result
    assert_nothing_left(tmp_path / "home", result["dataset_id"])


def test_accepted_npz_is_validated_in_batches_not_one_float64_copy(tmp_path: Path) -> None:
    rows = 120_000  # 94 MB of uint8 pixels; one float64 copy would be 753 MB
    result = upload_in_a_process(tmp_path / "home", IMAGE_METADATA, zeros_npz(rows), NPZ)
    assert result["status"] == 200, result["body"]
    assert result["body"]["rows"] == rows
    assert result["peak_growth"] < BATCH_PEAK_BOUND, result


def test_parquet_of_identical_rows_fails_delta_before_decoding(tmp_path: Path) -> None:
    body = identical_rows_parquet(10_000_000)
    assert len(body) < 1 * MiB
    meta = metadata(format="parquet")  # delta 1e-5: at most 99,999 rows
    result = upload_in_a_process(tmp_path / "home", meta, body, PARQUET)
    assert result["status"] == 422, result["body"]
    assert_error_shape(result["body"], "validation_error")
    assert "below 1/rows" in result["body"]["error"]["message"]
    assert result["body"]["error"]["details"]["rows"] == 10_000_000
    assert result["peak_growth"] < BOMB_PEAK_BOUND, result
    assert_nothing_left(tmp_path / "home", result["dataset_id"])


def test_parquet_over_the_cell_cap_is_refused_before_decoding(tmp_path: Path) -> None:
    body = identical_rows_parquet(10_000_000)
    meta = metadata(
        format="parquet",
        privacy={"epsilon_total": 10.0, "delta": 1e-9, "max_epsilon_per_run": 2.0},
    )
    result = upload_in_a_process(
        tmp_path / "home", meta, body, PARQUET, overrides={"catalog": {"max_cells": 10_000_000}}
    )
    assert result["status"] == 413, result["body"]
    assert_error_shape(result["body"], "payload_too_large")
    assert result["body"]["error"]["details"]["max_cells"] == 10_000_000
    assert result["peak_growth"] < BOMB_PEAK_BOUND, result
    assert_nothing_left(tmp_path / "home", result["dataset_id"])


# -- lying or wrong files (in-process app) ---------------------------------------------


@pytest.fixture
def owner_headers(make_user, token_for) -> dict[str, str]:
    return token_for(make_user(Role.OWNER))


@pytest.fixture
def new_draft(client, owner_headers) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def create(meta: dict[str, Any]) -> dict[str, Any]:
        response = client.post("/api/v1/datasets", json=meta, headers=owner_headers)
        assert response.status_code == 201, response.get_json()
        return dict(response.get_json())

    return create


@pytest.fixture
def put_file(client, owner_headers) -> Callable[..., Any]:
    def put(dataset_id: str, body: bytes, content_type: str = "text/csv") -> Any:
        return client.put(
            f"/api/v1/datasets/{dataset_id}/file",
            data=body,
            headers={**owner_headers, "Content-Type": content_type},
        )

    return put


@pytest.fixture
def image_draft(new_draft) -> dict[str, Any]:
    return new_draft(metadata(IMAGE_METADATA))


def _home(app) -> Path:
    return Path(app.extensions["market"].settings.home)


def _refused(app, response, status: int, code: str, says: str, dataset_id: str) -> None:
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert_error_shape(body, code)
    assert says in body["error"]["message"], body
    assert "Traceback" not in response.get_data(as_text=True)
    app.extensions["market"].database.dispose()
    assert_nothing_left(_home(app), dataset_id)


def _npz(**arrays: Any) -> bytes:
    sink = io.BytesIO()
    np.savez(sink, **arrays)
    return sink.getvalue()


def _small_images(rows: int = 50) -> dict[str, np.ndarray]:
    return {
        "x": np.zeros((rows, 28, 28), dtype=np.uint8),
        "y": np.arange(rows, dtype=np.int64) % 2,
    }


pytestmark_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytestmark_sqlite
def test_a_plain_npy_sent_as_npz_is_415(app, image_draft, put_file) -> None:
    draft = image_draft
    sink = io.BytesIO()
    np.save(sink, np.zeros((50, 28, 28), dtype=np.uint8))
    response = put_file(draft["id"], sink.getvalue(), NPZ)
    _refused(
        app,
        response,
        415,
        "unsupported_media_type",
        "the file is a .npy array, not an .npz archive",
        draft["id"],
    )


@pytestmark_sqlite
def test_an_npz_header_claiming_10_to_the_12_images_is_422(app, image_draft, put_file) -> None:
    draft = image_draft
    body = zeros_npz(100, header_rows=10**12)
    response = put_file(draft["id"], body, NPZ)
    _refused(app, response, 422, "validation_error", "claims shape", draft["id"])
    assert response.get_json()["error"]["details"]["shape"] == [10**12, 28, 28]


@pytestmark_sqlite
@pytest.mark.parametrize(
    "body, status, code, says",
    [
        (
            _npz(x=np.array([{"a": 1}] * 50, dtype=object), y=np.arange(50) % 2),
            422,
            "validation_error",
            "holds Python objects",
        ),
        (
            _npz(x=np.zeros((50, 28, 28), dtype=np.uint8)),
            422,
            "validation_error",
            "no array named 'y'",
        ),
        (
            _npz(x=np.zeros((50, 8, 8), dtype=np.uint8), y=np.arange(50) % 2),
            422,
            "validation_error",
            "holds images of shape [8, 8]",
        ),
        (
            _npz(x=np.zeros((50, 28, 28), dtype=np.uint8), y=np.arange(49) % 2),
            422,
            "validation_error",
            "must be a vector of 50 integer class indices",
        ),
        (_npz(x=np.array(["a"] * 50), y=np.arange(50) % 2), 422, "validation_error", "dtype"),
        (b"PK\x03\x04" + b"\x00" * 200, 422, "validation_error", "damaged"),
        (
            to_parquet(cancer_rows(20)),
            415,
            "unsupported_media_type",
            "a Parquet file, not an .npz archive",
        ),
        (b"x,y\n1,2\n", 415, "unsupported_media_type", "not an .npz archive"),
        (b"", 422, "validation_error", "empty"),
    ],
    ids=[
        "object-array",
        "no-labels",
        "wrong-shape",
        "short-labels",
        "strings",
        "broken-zip",
        "parquet",
        "csv",
        "empty",
    ],
)
def test_bad_npz_is_a_clear_4xx(app, image_draft, put_file, body, status, code, says) -> None:
    draft = image_draft
    response = put_file(draft["id"], body, NPZ)
    _refused(app, response, status, code, says, draft["id"])


@pytestmark_sqlite
def test_an_npz_whose_data_is_corrupt_is_422(app, image_draft, put_file) -> None:
    draft = image_draft
    body = bytearray(_npz(**_small_images()))
    # Rewrite x's stored data (deflate is off in np.savez: bytes are stored as they are),
    # keeping the header; the CRC no longer matches.
    at = body.find(b"\x93NUMPY") + 128 + 500
    body[at : at + 64] = b"\x01" * 64
    response = put_file(draft["id"], bytes(body), NPZ)
    _refused(app, response, 422, "validation_error", "damaged", draft["id"])


@pytestmark_sqlite
def test_npz_delta_is_checked_from_the_header_first(app, new_draft, put_file) -> None:
    meta = metadata(
        IMAGE_METADATA, privacy={"epsilon_total": 8, "delta": 0.005, "max_epsilon_per_run": 1}
    )
    draft = new_draft(meta)
    response = put_file(draft["id"], _npz(**_small_images(300)), NPZ)
    _refused(app, response, 422, "validation_error", "below 1/rows", draft["id"])


@pytestmark_sqlite
@pytest.mark.parametrize(
    "body, status, code, says",
    [
        (b"PAR1" + b"\x00" * 100 + b"PAR1", 422, "validation_error", "not a readable Parquet"),
        (to_csv(cancer_rows(20)), 422, "validation_error", "not a readable Parquet"),
        (_npz(**_small_images()), 415, "unsupported_media_type", "not a Parquet file"),
        (b"\x93NUMPY" + b"\x00" * 100, 415, "unsupported_media_type", "a .npy array"),
    ],
    ids=["garbage-footer", "csv", "npz", "npy"],
)
def test_bad_parquet_is_a_clear_4xx(app, new_draft, put_file, body, status, code, says):
    draft = new_draft(metadata(format="parquet"))
    response = put_file(draft["id"], body, PARQUET)
    _refused(app, response, status, code, says, draft["id"])


@pytestmark_sqlite
def test_parquet_with_extra_columns_is_refused_from_the_footer(app, new_draft, put_file) -> None:
    draft = new_draft(metadata(format="parquet"))
    rows = [{**r, **{f"extra{i}": 1.0 for i in range(300)}} for r in cancer_rows(20)]
    response = put_file(draft["id"], to_parquet(rows), PARQUET)
    _refused(app, response, 422, "validation_error", "too many columns", draft["id"])
    assert len(response.get_data()) < 4096


# -- CSV ------------------------------------------------------------------------------------


@pytestmark_sqlite
@pytest.mark.parametrize("columns", [1_000_000, 1_000])
def test_a_csv_header_of_too_many_columns_says_so(app, new_draft, put_file, columns):
    draft = new_draft(metadata())
    header = ",".join(f"c{i}" for i in range(columns)).encode()
    response = put_file(draft["id"], header + b"\n" + b"1," * 3 + b"benign\n")
    _refused(app, response, 422, "validation_error", "header has too many columns", draft["id"])
    assert "empty" not in response.get_json()["error"]["message"]


@pytestmark_sqlite
def test_a_csv_stops_as_soon_as_it_has_too_many_rows_for_delta(app, new_draft, put_file) -> None:
    draft = new_draft(
        metadata(privacy={"epsilon_total": 5.0, "delta": 0.001, "max_epsilon_per_run": 1})
    )
    body = to_csv(cancer_rows() * 200)  # 113,800 rows, where delta 0.001 allows 999
    response = put_file(draft["id"], body)
    _refused(
        app, response, 422, "validation_error", "below 1/rows: this file has at least", draft["id"]
    )


# -- listing metadata ---------------------------------------------------------------------


def _wide_metadata(columns: int, categories: int) -> dict[str, Any]:
    cols: list[dict[str, Any]] = [
        {
            "name": f"c{i}",
            "type": "categorical",
            "categories": [f"category-{j}" for j in range(categories)],
        }
        for i in range(columns - 1)
    ]
    cols.append({"name": "label", "type": "categorical", "categories": ["a", "b"]})
    return metadata(label="label", columns=cols)


@pytestmark_sqlite
@pytest.mark.parametrize(
    "columns, categories, field",
    [(1001, 1, "columns"), (3, 1001, "columns.0.categories")],
)
def test_listing_metadata_caps(client, owner_headers, columns, categories, field) -> None:
    headers = owner_headers
    response = client.post(
        "/api/v1/datasets", json=_wide_metadata(columns, categories), headers=headers
    )
    assert response.status_code == 422, response.get_json()
    assert_error_shape(response.get_json(), "validation_error")
    assert response.get_json()["error"]["details"]["field"] == field
    assert client.get("/api/v1/datasets?mine=true", headers=headers).get_json()["total"] == 0


@pytestmark_sqlite
def test_the_measured_23_mb_listing_is_refused(client, owner_headers) -> None:
    headers = owner_headers
    response = client.post("/api/v1/datasets", json=_wide_metadata(2000, 500), headers=headers)
    # The API's JSON body limit (app.max_json_bytes) refuses it before the catalog's caps.
    assert response.status_code in (413, 422), response.get_json()
    assert response.get_json()["error"]["code"] in ("payload_too_large", "validation_error")
    assert client.get("/api/v1/datasets?mine=true", headers=headers).get_json()["total"] == 0


@pytestmark_sqlite
def test_listing_metadata_bytes_cap(client, owner_headers) -> None:
    headers = owner_headers
    meta = _wide_metadata(999, 20)  # within the count caps; about 300 KB as JSON
    response = client.post("/api/v1/datasets", json=meta, headers=headers)
    assert response.status_code == 422, response.get_json()
    details = response.get_json()["error"]["details"]
    assert details["max_bytes"] == 256 << 10 and details["received"] > 256 << 10
    assert client.get("/api/v1/datasets?mine=true", headers=headers).get_json()["total"] == 0


@pytestmark_sqlite
def test_image_class_names_are_capped(client, owner_headers) -> None:
    meta = metadata(IMAGE_METADATA)
    meta["image"]["class_names"] = [f"class {i}" for i in range(1001)]
    response = client.post("/api/v1/datasets", json=meta, headers=owner_headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["details"]["field"] == "image.class_names"


@pytestmark_sqlite
def test_catalog_list_carries_summaries_and_the_detail_the_schema(
    tmp_path, database_url, make_user
) -> None:
    """A wide listing (allowed here by raised caps) costs catalog readers a summary only."""
    from market.accounts.models import Role
    from privacy.vault import init_keydir
    from tests.conftest import TEST_PASSWORD

    init_keydir(tmp_path / "keys")
    caps = {"max_columns": 2000, "max_categories": 500, "max_metadata_bytes": 64 * MiB}
    app = create_app(
        app_overrides(tmp_path, database_url, catalog=caps, app={"max_json_bytes": 64 * MiB})
    )
    client = app.test_client()
    market = app.extensions["market"]
    from market.accounts import services as accounts

    with market.database.write() as session:
        for email, role in (
            ("wide@people.example", Role.OWNER),
            ("r@people.example", Role.RESEARCHER),
        ):
            accounts.create_user(
                session, email=email, role=role, password=TEST_PASSWORD, passwords=market.passwords
            )

    def token(email: str) -> dict[str, str]:
        body = client.post("/api/v1/tokens", json={"email": email, "password": TEST_PASSWORD})
        return {"Authorization": f"Bearer {body.get_json()['token']}"}

    wide_owner, researcher = token("wide@people.example"), token("r@people.example")
    wide = client.post("/api/v1/datasets", json=_wide_metadata(2000, 500), headers=wide_owner)
    assert wide.status_code == 201
    listing = client.get("/api/v1/datasets?mine=true", headers=wide_owner)
    item = listing.get_json()["items"][0]
    assert len(listing.get_data()) < 8 * 1024
    assert item["columns"] is None and item["image"] is None
    assert item["schema_summary"] == {
        "columns": 2000,
        "numeric_columns": 0,
        "categorical_columns": 2000,
        "categories": 1999 * 500 + 2,
        "image_shape": None,
        "classes": 2,
    }
    for name in ("id", "title", "rows", "budget", "price", "tags", "status", "label"):
        assert name in item
    detail = client.get(f"/api/v1/datasets/{item['id']}", headers=wide_owner).get_json()
    assert len(detail["columns"]) == 2000
    assert detail["schema_summary"] == item["schema_summary"]
    assert client.get("/api/v1/datasets", headers=researcher).status_code == 200
    market.database.dispose()


# -- refused uploads and keep-alive connections (gunicorn, as `market serve`) -----------

_SERVE = r"""
import sys
from pathlib import Path
from market.audit import ensure_signing_key
from market.config import load_settings
from market.migrations import upgrade_to_head
from market.server import _Gunicorn
from privacy.vault import init_keydir
from tests.conftest import app_overrides

home, port = Path(sys.argv[1]), int(sys.argv[2])
url = f"sqlite:///{home / 'market.db'}"
upgrade_to_head(url)
init_keydir(home / "keys")
settings = load_settings(overrides=app_overrides(home, url, catalog={"max_upload_bytes": 8 << 20}))
ensure_signing_key(settings)
_Gunicorn(settings, {"bind": f"127.0.0.1:{port}", "workers": 1, "threads": 2,
                     "worker_class": "gthread", "keepalive": 30, "loglevel": "warning"}).run()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[int, Path]]:
    home = tmp_path_factory.mktemp("served")
    port = _free_port()
    log = (home / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(home), str(port)],
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                started = process.poll() is None
                assert started, (home / "serve.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        yield port, home
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _served_owner(port: int, home: Path) -> dict[str, str]:
    from market import create_app as make
    from market.accounts import services as accounts
    from tests.conftest import TEST_PASSWORD

    app = make(app_overrides(home, f"sqlite:///{home / 'market.db'}"))
    market = app.extensions["market"]
    email = f"keepalive{time.monotonic_ns()}@people.example"
    with market.database.write() as session:
        accounts.create_user(
            session, email=email, role="owner", password=TEST_PASSWORD, passwords=market.passwords
        )
    market.database.dispose()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request(
        "POST",
        "/api/v1/tokens",
        body=json.dumps({"email": email, "password": TEST_PASSWORD}),
        headers={"Content-Type": "application/json"},
    )
    token = json.loads(connection.getresponse().read())["token"]
    connection.close()
    return {"Authorization": f"Bearer {token}"}


def _call(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], str]:
    connection.request(method, path, body=body or None, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    return response.status, json.loads(data or b"{}"), response.getheader("Connection", "")


@pytest.mark.parametrize(
    "case", ["delisted-409", "wrong-type-415", "no-token-401", "bad-header-422", "too-large-413"]
)
def test_a_refused_upload_leaves_the_keep_alive_connection_usable(served, case) -> None:
    port, home = served
    owner_auth = _served_owner(port, home)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    status, draft, _ = _call(
        connection,
        "POST",
        "/api/v1/datasets",
        json.dumps(
            metadata(privacy={"epsilon_total": 5.0, "delta": 1e-9, "max_epsilon_per_run": 1})
        ).encode(),
        {**owner_auth, "Content-Type": "application/json"},
    )
    assert status == 201, draft
    path = f"/api/v1/datasets/{draft['id']}/file"
    body = to_csv(cancer_rows() * 10)  # 5,690 rows, about 200 KB
    headers = {**owner_auth, "Content-Type": "text/csv"}
    expected = {
        "delisted-409": 409,
        "wrong-type-415": 415,
        "no-token-401": 401,
        "bad-header-422": 422,
        "too-large-413": 413,
    }[case]
    if case == "delisted-409":
        assert (
            _call(connection, "DELETE", f"/api/v1/datasets/{draft['id']}", b"", owner_auth)[0]
            == 200
        )
    elif case == "wrong-type-415":
        headers["Content-Type"] = "application/x-npz"
    elif case == "no-token-401":
        headers.pop("Authorization")
    elif case == "bad-header-422":
        body = b"a,b,c,d,e,f\n" + body
    elif case == "too-large-413":
        # Over this server's 8 MiB max_upload_bytes by less than the drained margin (1 MiB).
        body = to_csv(cancer_rows() * 600)[: (8 << 20) + (512 << 10)]
    status, error, _ = _call(connection, "PUT", path, body, headers)
    assert status == expected, error
    assert "error" in error
    # The same connection serves the next request.
    sock = connection.sock
    status, page, _ = _call(connection, "GET", "/api/v1/datasets?mine=true", b"", owner_auth)
    assert status == 200, page
    assert connection.sock is sock, "the connection was closed and reopened"
    connection.close()
