"""Re-derive the privacy and cost ledgers from the log's entries (the semantic audit).

A valid hash chain proves nobody changed the log after the fact; it does not prove the
service told the truth when it wrote it. So the verifier recomputes what the entries claim
from what they record, with the same code the service uses:

Privacy (kinds ``privacy.reserved``, ``privacy.spent``, ``privacy.released``), ``data``::

    {"dataset_id": "...", "release_id": 17, "run_id": "...",
     "records": [<privacy.accounting mechanism records of this release>],
     "delta": 1e-6, "accountant": "rdp",
     "epsilon_after": <dataset's composed epsilon over every counted release after this>,
     "epsilon_total": <the dataset's cap>}

A release is counted from ``reserved`` on; ``spent`` replaces its records with what the run
actually released; ``released`` stops counting it. After every entry, the records of all
counted releases of the dataset are composed with ``privacy.accounting.compose_epsilon``
(the entry's accountant, default "rdp", at the entry's delta) and compared with
``epsilon_after`` (relative tolerance 1e-6); a composed epsilon above ``epsilon_total`` is
a cap exceeded.

Cost (kind ``cost.receipt``), ``data`` as built by ``cost_receipt_data``: the measurement
(seconds, average power, method), every coefficient used (worker class, region, carbon price,
fee, minor unit), the royalty, and the priced terms. The verifier prices the measurement
again with ``market.costing.price_run`` and compares every term.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from market.costing.pricing import CostBreakdown, price_run
from market.costing.settings import CostingSettings, RegionSettings, WorkerClassSettings
from market.money import Money

if TYPE_CHECKING:
    from privacy.records import MechanismRecord

PRIVACY_KINDS = frozenset({"privacy.reserved", "privacy.spent", "privacy.released"})
COST_KIND = "cost.receipt"
KINDS = PRIVACY_KINDS | {COST_KIND}
RELATIVE_TOLERANCE = 1e-6
_PRICING_KEYS = (
    "currency",
    "minor_unit_digits",
    "accrual_digits",
    "carbon_price_per_tonne",
    "platform_fee_rate",
)


def _close(recorded: float, derived: float) -> bool:
    return math.isclose(recorded, derived, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-12)


def rederive_privacy(
    entries: list[dict[str, Any]], composed: dict[str, float] | None = None
) -> list[tuple[int, str, str]]:
    """(seq, message, kind) for each privacy entry whose recorded epsilon or cap is wrong.

    ``composed`` (if given) receives each dataset's final composed epsilon.
    """
    if not entries:
        return []  # importing the accountant loads torch: seconds an empty ledger never needs
    from privacy.accounting import compose_epsilon
    from privacy.errors import PrivacyError

    counted: dict[str, dict[str, list[dict[str, Any]]]] = {}
    problems: list[tuple[int, str, str]] = []
    for entry in entries:
        seq, data = entry["seq"], entry["data"]
        try:
            dataset = str(data["dataset_id"])
            release = str(data.get("release_id", data.get("run_id")))
            releases = counted.setdefault(dataset, {})
            if entry["kind"] == "privacy.released":
                releases.pop(release, None)
            else:
                releases[release] = list(data["records"])
            records = [r for rs in releases.values() for r in rs]
            derived = compose_epsilon(
                records, delta=float(data["delta"]), accountant=data.get("accountant", "rdp")
            )
            recorded = float(data["epsilon_after"])
            cap = float(data["epsilon_total"])
        except (KeyError, TypeError, ValueError, PrivacyError) as exc:
            problems.append((seq, f"entry {seq} is not a readable privacy entry: {exc}", "privacy"))
            continue
        if composed is not None:
            composed[dataset] = derived
        if not _close(recorded, derived):
            problems.append(
                (
                    seq,
                    f"entry {seq} records epsilon_after {recorded!r} for dataset {dataset} but "
                    f"its recorded mechanisms compose to {derived!r}",
                    "privacy",
                )
            )
        if derived > cap * (1 + RELATIVE_TOLERANCE):
            problems.append(
                (
                    seq,
                    f"entry {seq}: dataset {dataset}'s composed epsilon {derived!r} exceeds "
                    f"its cap {cap!r}",
                    "budget_exceeded",
                )
            )
    return problems


def cross_check_privacy_rows(
    rows: list[Mapping[str, Any]], entries: list[dict[str, Any]]
) -> list[str]:
    """Compare the database's privacy ledger rows with the signed log; one sentence each.

    ``rows`` are ``privacy_releases`` rows as plain dicts (``id``, ``dataset_id``, ``state``,
    ``records``, ``epsilon_after``), ``entries`` the verified log's privacy entries (with
    ``release_id`` = the row id). A row must be in the state and hold the records its latest
    entry says; a spent row's ``epsilon_after`` must be what the trading service computes at
    the spend: the composition of the dataset's releases counted at that moment with an id
    up to the row's (ledger order), replayed from the log, at the logged delta and
    accountant. So an epsilon edited in the database after the fact is caught even though
    the log itself is intact.
    """
    from privacy.accounting import compose_epsilon

    latest: dict[str, dict[str, Any]] = {}
    at_spend: dict[str, float] = {}
    counted: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for entry in entries:
        if entry["kind"] not in PRIVACY_KINDS:
            continue
        data = entry["data"]
        rid = str(data.get("release_id"))
        latest[rid] = entry
        releases = counted.setdefault(str(data["dataset_id"]), {})
        if entry["kind"] == "privacy.released":
            releases.pop(rid, None)
            continue
        releases[rid] = list(data["records"])
        if entry["kind"] == "privacy.spent":
            earlier = [r for k, rs in releases.items() if _ledger_order(k, rid) for r in rs]
            at_spend[rid] = compose_epsilon(
                earlier, delta=float(data["delta"]), accountant=data.get("accountant", "rdp")
            )
    problems: list[str] = []
    for row in rows:
        rid = str(row["id"])
        found = latest.get(rid)
        if found is None:
            problems.append(f"ledger row {rid} has no entry in the audit log")
            continue
        state = found["kind"].removeprefix("privacy.")
        if row["state"] != state:
            problems.append(
                f"ledger row {rid} is {row['state']} but audit entry {found['seq']} says {state}"
            )
        elif state != "released" and row["records"] != found["data"]["records"]:
            problems.append(f"ledger row {rid}'s mechanisms differ from audit entry {found['seq']}")
        elif state == "spent" and not _close(float(row["epsilon_after"]), at_spend[rid]):
            problems.append(
                f"ledger row {rid} records epsilon_after {row['epsilon_after']!r} but its "
                f"mechanisms and those before it, as signed in the log, compose to "
                f"{at_spend[rid]!r}"
            )
    return problems


def _ledger_order(other: str, release: str) -> bool:
    """Whether release ``other`` comes no later than ``release`` in the ledger (row ids)."""
    try:
        return int(other) <= int(release)
    except ValueError:
        return other <= release


def privacy_entry_data(
    *,
    dataset_id: str,
    release_id: int | str,
    run_id: str | None,
    records: list[MechanismRecord],
    delta: float,
    epsilon_after: float,
    epsilon_total: float,
    accountant: str = "rdp",
) -> dict[str, Any]:
    """The ``data`` of a ``privacy.reserved|spent|released`` entry (module docstring).

    ``records``: this release's mechanism records (empty for ``released``);
    ``epsilon_after``: the dataset's committed epsilon once the change applies, i.e.
    ``market.trading.budget.committed_epsilon`` read after the change in the same transaction.
    """
    return {
        "dataset_id": dataset_id,
        "release_id": release_id,
        "run_id": run_id,
        "records": records,
        "delta": delta,
        "accountant": accountant,
        "epsilon_after": epsilon_after,
        "epsilon_total": epsilon_total,
    }


@dataclass(frozen=True)
class _Usage:
    seconds: float
    avg_power_w: float
    method: str


def cost_receipt_data(
    *,
    run_id: str,
    measurement: Any,
    worker: WorkerClassSettings,
    region: RegionSettings,
    settings: CostingSettings,
    royalty: Money,
    breakdown: CostBreakdown,
    grid_intensity_g_per_kwh: Decimal | None = None,
    resources: int | None = None,
) -> dict[str, Any]:
    """The ``data`` of a ``cost.receipt`` entry: enough to price the run again offline.

    ``measurement`` is a ``market.costing.Measurement`` (or anything with ``seconds``,
    ``avg_power_w`` and ``method``); pass the same arguments ``price_run`` got.
    """
    return {
        "run_id": run_id,
        "measurement": {
            "seconds": float(measurement.seconds),
            "avg_power_w": float(measurement.avg_power_w),
            "method": str(measurement.method),
        },
        "worker_class": worker.model_dump(mode="json"),
        "region": region.model_dump(mode="json"),
        "pricing": {k: getattr(settings, k) for k in _PRICING_KEYS},
        "royalty": royalty.to_json(),
        "grid_intensity_g_per_kwh": grid_intensity_g_per_kwh,
        "resources": resources,
        "terms": breakdown.to_dict(),
    }


def reprice(data: dict[str, Any]) -> CostBreakdown:
    """Price a recorded measurement again with the recorded coefficients."""
    pricing = data["pricing"]
    # price_run reads only these fields of the costing settings; the rest (regions,
    # worker classes) are the recorded ones, passed explicitly, so nothing else is needed.
    recorded: dict[str, Any] = {
        "currency": str(pricing["currency"]),
        "minor_unit_digits": int(pricing["minor_unit_digits"]),
        # Receipts written before terms accrued exactly were rounded to the minor unit.
        "accrual_digits": int(pricing.get("accrual_digits", pricing["minor_unit_digits"])),
        "carbon_price_per_tonne": Decimal(str(pricing["carbon_price_per_tonne"])),
        "platform_fee_rate": Decimal(str(pricing["platform_fee_rate"])),
    }
    settings = CostingSettings.model_construct(**recorded)
    measured = data["measurement"]
    usage = _Usage(float(measured["seconds"]), float(measured["avg_power_w"]), measured["method"])
    intensity = data.get("grid_intensity_g_per_kwh")
    royalty = data["royalty"]
    return price_run(
        usage,
        WorkerClassSettings.model_validate(data["worker_class"]),
        RegionSettings.model_validate(data["region"]),
        royalty=Money(Decimal(royalty["amount"]), royalty["currency"]),
        settings=settings,
        grid_intensity_g_per_kwh=None if intensity is None else Decimal(str(intensity)),
        resources=data.get("resources"),
    )


def rederive_costs(entries: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(seq, message) for each cost receipt whose terms differ from a fresh pricing."""
    problems: list[tuple[int, str]] = []
    for entry in entries:
        seq, data = entry["seq"], entry["data"]
        try:
            derived = reprice(data).to_dict()
            recorded = data["terms"]
        except Exception as exc:  # any malformed field: report it, keep auditing the rest
            problems.append((seq, f"entry {seq} is not a readable cost receipt: {exc}"))
            continue
        wrong = sorted(k for k in derived if recorded.get(k) != derived[k])
        if wrong:
            name = wrong[0]
            problems.append(
                (
                    seq,
                    f"entry {seq} (run {data.get('run_id')}) records {name} "
                    f"{recorded.get(name)!r} but its measurement prices to {derived[name]!r}",
                )
            )
    return problems
