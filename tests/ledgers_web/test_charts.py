"""The SVG charts: well-formed, CSP-safe (no style attributes or elements), deterministic,
one marker per point, ids unique across charts on one page, text never parsed as math."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from market.ledgers_web import charts, summary
from tests.ledgers_web.conftest import SVG, group, markers


def test_epsilon_steps_one_marker_per_release_and_a_cap() -> None:
    svg = charts.epsilon_steps([0.4, 0.7, 0.95, 1.1], cap=2.0)
    root = ET.fromstring(str(svg))
    assert root.tag == f"{SVG}svg" and root.get("viewBox")
    assert markers(root, "epsilon-after") == 4
    cap = group(root, "epsilon-cap")
    [path] = cap.findall(f".//{SVG}path")
    assert path.get("stroke-dasharray")  # the dashed cap line, as an attribute
    assert "style=" not in svg and "<style" not in svg
    assert "1.1 of a cap of 2" in root.findtext(f"{SVG}desc", "")
    assert charts.epsilon_steps([0.4, 0.7, 0.95, 1.1], cap=2.0) == svg  # deterministic


def test_an_empty_ledger_still_draws_the_cap() -> None:
    root = ET.fromstring(str(charts.epsilon_steps([], cap=3.0)))
    assert group(root, "epsilon-cap") is not None
    assert not [e for e in root.iter() if e.get("id", "").endswith("epsilon-after")]


def test_ids_are_unique_across_charts_on_a_page() -> None:
    times = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=d) for d in range(3)]
    page = (
        str(charts.epsilon_steps([0.5], cap=1.0))
        + str(charts.over_time(times, [("kWh", "series-energy", [1, 2, 3])]))
        + str(charts.over_time(times, [("kWh", "series-energy", [1, 2, 3])], prefix="again"))
    )
    root = ET.fromstring(f'<div xmlns:xlink="http://www.w3.org/1999/xlink">{page}</div>')
    ids = [e.get("id") for e in root.iter() if e.get("id")]
    assert len(ids) == len(set(ids))
    # every reference points at an id of the same document
    refs = [
        e.get("{http://www.w3.org/1999/xlink}href", "")[1:]
        for e in root.iter()
        if e.get("{http://www.w3.org/1999/xlink}href")
    ]
    assert refs and set(refs) <= set(ids)


def test_cost_breakdown_has_a_bar_per_term_and_escapes_text() -> None:
    terms = [("Compute", Decimal("0.40")), ("Energy", Decimal("0.01")), ("Royalty $x$", Decimal(1))]
    svg = charts.cost_breakdown(terms, currency="<EUR>", prefix="r1")
    root = ET.fromstring(str(svg))
    bars = [e for e in root.iter() if e.get("id", "").startswith("r1-term-")]
    assert len(bars) == 3
    texts = "".join(root.itertext())
    assert "Royalty $x$" in texts and "<EUR>" in texts  # literal text: no mathtext, escaped


def test_totals_are_decimal_and_per_currency() -> None:
    rows = [
        {
            "seconds": "1.5",
            "energy_kwh": "0.1",
            "emissions_kg": None,
            "currency": "EUR",
            "total": "0.10",
            "royalty": "0.05",
            "compute": "None",
            "energy": "0",
            "environment": "0",
            "platform_fee": "0",
            "finished_at": "2026-01-02T00:00:00+00:00",
            "dataset_id": "d",
        },
        {
            "seconds": "2",
            "energy_kwh": "0.2",
            "emissions_kg": "0.3",
            "currency": "EUR",
            "total": "0.20",
            "royalty": "0.05",
            "compute": "0.1",
            "energy": "0",
            "environment": "0",
            "platform_fee": "0",
            "finished_at": "2026-02-02T00:00:00+00:00",
            "dataset_id": "d",
        },
    ]
    out = summary.cost_summary(rows)
    overall = out["overall"]
    assert overall.money["EUR"]["total"] == Decimal("0.30")  # not 0.30000000000000004
    assert overall.quantities["energy_kwh"] == Decimal("0.3")
    assert [k for k, _ in out["by"]["month"]] == ["2026-01", "2026-02"]
