"""A worker measures its class's throughput at start; quotes for that class then use it."""

from __future__ import annotations

import pytest

from market.trading import calibration
from tests.trading.conftest import quote_body


def test_reference_throughput_is_measured_on_this_machine() -> None:
    throughput = calibration.measure_reference_throughput(512)
    assert throughput > 100  # samples/s of a 100k-parameter MLP on one thread: far above this


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_quotes_use_the_stored_throughput(app, client, listed_cancer, researcher) -> None:
    _, headers = researcher
    body = quote_body(listed_cancer["id"], model={"template": "mlp", "hidden": [512, 512]})
    before = client.post("/api/v1/quotes", json=body, headers=headers).get_json()
    with app.extensions["market"].database.write() as session:
        # A worker class ten times slower than configured: the work term grows tenfold.
        configured = app.extensions["market"].settings.costing.worker_classes["cpu"]
        calibration.store(
            session, worker_class="cpu", throughput=configured.throughput_samples_per_s / 10
        )
    after = client.post("/api/v1/quotes", json=body, headers=headers).get_json()
    assert after["estimate"]["seconds"] > before["estimate"]["seconds"]
    with app.extensions["market"].database.read() as session:
        assert calibration.throughput_for(session, "cpu") == pytest.approx(
            configured.throughput_samples_per_s / 10
        )
