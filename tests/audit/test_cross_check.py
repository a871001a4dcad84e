"""The database's privacy ledger rows cross-checked against the signed log (no database)."""

from __future__ import annotations

from typing import Any

from market.audit.ledgers import cross_check_privacy_rows, privacy_entry_data
from privacy.accounting import compose_epsilon

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


def test_a_ledger_row_whose_epsilon_was_altered_in_the_database_is_caught() -> None:
    def entry(seq: int, kind: str, release: int, records: list[dict[str, Any]]) -> dict:
        data = privacy_entry_data(
            dataset_id="ds1",
            release_id=release,
            run_id=f"run-{release}",
            records=records,
            delta=DELTA,
            epsilon_after=0.0,  # not what this check reads
            epsilon_total=CAP,
        )
        return {"seq": seq, "kind": kind, "data": data}

    entries = [
        entry(1, "privacy.reserved", 1, _run_records(1.1)),
        entry(2, "privacy.reserved", 2, _run_records(1.3)),
        entry(3, "privacy.spent", 2, _run_records(1.4)),  # counted then: 1 and 2
        entry(4, "privacy.released", 1, []),  # released after 2's spend
    ]
    spent_after = compose_epsilon(_run_records(1.1) + _run_records(1.4), delta=DELTA)
    rows = [
        {
            "id": 1,
            "dataset_id": "ds1",
            "state": "released",
            "records": _run_records(1.1),
            "epsilon_after": 0.0,
        },
        {
            "id": 2,
            "dataset_id": "ds1",
            "state": "spent",
            "records": _run_records(1.4),
            "epsilon_after": spent_after,
        },
    ]
    assert cross_check_privacy_rows(rows, entries) == []
    rows[1]["epsilon_after"] = spent_after * 0.8  # edited in the database
    problems = cross_check_privacy_rows(rows, entries)
    assert len(problems) == 1 and problems[0].startswith("ledger row 2 records epsilon_after")
    rows[1]["epsilon_after"] = spent_after
    rows[1]["records"] = _run_records(5.0)  # a cheaper-looking mechanism swapped in
    assert "mechanisms differ" in cross_check_privacy_rows(rows, entries)[0]
    rows[0]["state"] = "spent"
    assert "ledger row 1 is spent but audit entry 4 says released" in cross_check_privacy_rows(
        rows, entries
    )
