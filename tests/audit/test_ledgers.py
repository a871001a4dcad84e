"""The semantic audit: privacy budgets and run costs re-derived from the log offline."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from market.audit import log
from market.audit.export import export_log
from market.audit.ledgers import cost_receipt_data, privacy_entry_data
from market.audit.verify import verify_export
from market.config import Settings
from market.costing import Measurement, Money, price_run
from market.db import Database
from privacy.accounting import compose_epsilon

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

DELTA = 1e-6
CAP = 3.0


def _run_records(sigma: float) -> list[dict[str, Any]]:
    return [
        {
            "mechanism": "subsampled_gaussian",
            "noise_multiplier": sigma,
            "sample_rate": 0.01,
            "steps": 500,
        }
    ]


def _privacy_log(
    database: Database, settings: Settings, *, lie_at: int | None = None, cap: float = CAP
) -> None:
    """Three releases of one dataset: reserve, spend (with what the run did), release one.

    ``lie_at``: the index of the entry whose recorded epsilon_after is off by 1%.
    """
    counted: dict[str, list[dict[str, Any]]] = {}
    events = [
        ("privacy.reserved", "r1", _run_records(1.1)),
        ("privacy.reserved", "r2", _run_records(1.3)),
        ("privacy.spent", "r1", _run_records(1.2)),  # the run released less than planned
        ("privacy.released", "r2", []),
        ("privacy.reserved", "r3", _run_records(0.9)),
    ]
    for index, (kind, release, records) in enumerate(events):
        if kind == "privacy.released":
            counted.pop(release)
        else:
            counted[release] = records
        after = compose_epsilon([r for rs in counted.values() for r in rs], delta=DELTA)
        if index == lie_at:
            after *= 0.99
        with database.write() as session:
            log.append(
                session,
                kind=kind,
                subject=release,
                actor_id=None,
                data=privacy_entry_data(
                    dataset_id="ds1",
                    release_id=release,
                    run_id=release,
                    records=records,
                    delta=DELTA,
                    epsilon_after=after,
                    epsilon_total=cap,
                ),
            )


def _export(tmp_path: Path, database: Database, settings: Settings) -> Path:
    out = tmp_path / "ledgers.jsonl"
    export_log(database, settings, out)
    return out


def test_an_honest_privacy_ledger_re_derives(
    tmp_path: Path, database: Database, audit_settings: Settings, public_pem: bytes
) -> None:
    _privacy_log(database, audit_settings)
    report = verify_export(_export(tmp_path, database, audit_settings), public_pem)
    assert report.ok, report.summary()
    expected = compose_epsilon(_run_records(1.2) + _run_records(0.9), delta=DELTA)
    assert report.datasets == {"ds1": pytest.approx(expected)}


def test_an_altered_epsilon_after_is_caught(
    tmp_path: Path, database: Database, audit_settings: Settings, public_pem: bytes
) -> None:
    """The service recorded (and signed) a wrong composed epsilon: hashes verify, maths not."""
    _privacy_log(database, audit_settings, lie_at=2)
    report = verify_export(_export(tmp_path, database, audit_settings), public_pem)
    assert not report.ok
    problem = report.first_problem
    assert problem is not None and (problem.kind, problem.seq) == ("privacy", 3)
    assert "entry 3 records epsilon_after" in report.summary()


def test_an_epsilon_altered_in_the_database_afterwards_is_caught(
    tmp_path: Path, database: Database, audit_settings: Settings, public_pem: bytes
) -> None:
    _privacy_log(database, audit_settings)
    with database.write() as session:
        row = session.execute(text("SELECT canonical FROM audit_entries WHERE seq = 3")).one()
        altered = row[0].replace('"epsilon_total":3.0', '"epsilon_total":30.0')
        assert altered != row[0]
        session.execute(
            text("UPDATE audit_entries SET canonical = :c WHERE seq = 3"), {"c": altered}
        )
    report = verify_export(_export(tmp_path, database, audit_settings), public_pem)
    assert report.first_bad_seq == 3, report.summary()


def test_a_cap_exceeded_is_reported(
    tmp_path: Path, database: Database, audit_settings: Settings, public_pem: bytes
) -> None:
    one_run = compose_epsilon(_run_records(1.1), delta=DELTA)
    _privacy_log(database, audit_settings, cap=one_run * 1.0001)
    report = verify_export(_export(tmp_path, database, audit_settings), public_pem)
    kinds = {(p.kind, p.seq) for p in report.problems}
    assert ("budget_exceeded", 2) in kinds
    assert "exceeds its cap" in next(p.message for p in report.problems if p.seq == 2)


def _cost_data(settings: Settings, *, seconds: float, tamper: bool = False) -> dict[str, Any]:
    costing = settings.costing
    worker = costing.worker_classes["cpu"]
    region = costing.regions[costing.default_region]
    measurement = Measurement(
        method="rapl",
        started_at=datetime(2026, 11, 28, 12, tzinfo=UTC),
        seconds=seconds,
        cpu_seconds=seconds * 1.8,
        peak_rss_bytes=1 << 28,
        energy_kwh=seconds * 23.5 / 3.6e6,
        avg_power_w=23.5,
        cpu_utilisation=0.9,
        cores=2,
        samples=10,
        completed=True,
    )
    royalty = Money(Decimal("7.00"), costing.currency)
    breakdown = price_run(measurement, worker, region, royalty=royalty, settings=costing)
    data = cost_receipt_data(
        run_id="run-1",
        measurement=measurement,
        worker=worker,
        region=region,
        settings=costing,
        royalty=royalty,
        breakdown=breakdown,
    )
    if tamper:  # the receipt charges more compute than the measurement supports
        data["terms"]["compute"] = {"amount": "99.99", "currency": costing.currency}
    return data


def test_run_costs_are_re_priced_from_their_measurements(
    tmp_path: Path, database: Database, audit_settings: Settings, public_pem: bytes
) -> None:
    with database.write() as session:
        for seconds, tamper in [(3600.0, False), (5400.5, True), (42.25, False)]:
            log.append(
                session,
                kind="cost.receipt",
                subject="run-1",
                actor_id=None,
                data=_cost_data(audit_settings, seconds=seconds, tamper=tamper),
            )
    report = verify_export(_export(tmp_path, database, audit_settings), public_pem)
    assert report.runs_priced == 3
    assert [(p.kind, p.seq) for p in report.problems] == [("cost", 2)]
    assert "records compute" in report.summary() and "99.99" in report.summary()
