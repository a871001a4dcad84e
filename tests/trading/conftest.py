"""A listed dataset, a researcher, and a real Huey consumer on the instance's SQLite queue."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from market.accounts.models import Role
from tests.catalog.conftest import (  # noqa: F401 - fixtures reused here
    NPZ_METADATA,
    cancer_rows,
    create_draft,
    digits_npz,
    metadata,
    owner,
    to_csv,
    upload,
)


@pytest.fixture
def listed_cancer(owner, create_draft, upload) -> dict[str, Any]:  # noqa: F811
    _, headers = owner
    draft = create_draft(headers)
    response = upload(headers, draft["id"], to_csv(cancer_rows()))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.fixture
def researcher(make_user, token_for):
    account = make_user(Role.RESEARCHER)
    return account, token_for(account)


@pytest.fixture
def consumer(app) -> Iterator[Any]:
    """A real Huey consumer (worker threads) on the app's queue, as `market worker` runs it."""
    queue = app.extensions["market"].queue
    worker = queue.consumer(workers=1)
    worker.start()
    yield worker
    worker.stop(graceful=True)


LOGISTIC = {"template": "logistic_regression"}


def quote_body(dataset_id: str, **changes: Any) -> dict[str, Any]:
    body = {
        "dataset_id": dataset_id,
        "model": LOGISTIC,
        "epsilon": 1.0,
        "epochs": 10,
        "batch_size": 64,
        "learning_rate": 0.1,
    }
    body.update(changes)
    return body


@pytest.fixture
def wait_for_run(client) -> Callable[..., dict[str, Any]]:
    def wait(headers: dict[str, str], run_id: str, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = client.get(f"/api/v1/runs/{run_id}", headers=headers).get_json()
            if body["status"] in ("succeeded", "failed"):
                return body
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not finish in {timeout} s: {body}")

    return wait
