"""Budget check latency: how long "does this run fit the budget?" takes as releases pile up.

Every quote and every purchase asks it: the ledger composes all releases of the dataset
(RDP accountant, the product's default) with the planned run and compares with the cap.
Identical mechanisms merge into one record (their counts add), so the cost depends on how
many *distinct* mechanisms a dataset has released, not on how many runs it sold. Three
histories of N releases each (N = 10, 1,000, 10,000), each release a whole run (DP-SGD steps
plus its two noisy held-out metrics):

``identical``  every run the same shape (merges to 3 records whatever N is).
``20 shapes``  runs cycle through 20 shapes (a catalog where buyers pick among presets).
``distinct``   every run a different noise multiplier: the worst case, no merging; each record
               costs an RDP curve (cached for 4,096 curves, so past that every check
               recomputes them).

Layers timed, median of ``--repeat`` calls (one call where it takes over a second):
``ledger fits``  ``PrivacyLedger.fits`` on a ledger already in memory (up to
                 ``--distinct-max`` distinct mechanisms: each costs its curve, ~10-20 ms).
``check``        the budget check a quote and a purchase make: ``market.trading.budget.
                 ledger_for`` (the dataset's kept state row plus its active reservations,
                 one statement) on a real SQLite instance made by ``market init``, then
                 ``fits``. Cold: the RDP curve cache cleared first, as in a fresh process.
``re-derive``    ``rederive_ledger`` (every counted row's records composed, what an auditor
                 does) then ``fits``: the check as it was before the state was kept.
``quote API``    ``POST /api/v1/quotes`` in-process (validation, planning, the check, pricing,
                 storing the quote): what a researcher waits for. Planning calibrates the
                 noise for the requested epsilon, whatever the history: its cold figure is
                 dominated by that, not by the check.
Writing the history stores each release's RDP curve (computed once, at write time): for
10,000 distinct mechanisms that takes minutes, once.
Run ``python bench/budget_latency.py [--sizes 10,1000,10000] [--smoke] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import make_instance, write_json  # noqa: E402

DELTA = 1e-5
ROWS = 20_000
SHAPES = {"identical": 1, "20 shapes": 20, "distinct": 0}


def history(base: list[dict[str, Any]], n: int, shapes: int) -> list[list[dict[str, Any]]]:
    """N runs' records; ``shapes`` distinct noise multipliers (0: all distinct)."""
    runs = []
    for i in range(n):
        k = i if shapes == 0 else i % shapes
        records = [dict(r) for r in base]
        records[0]["noise_multiplier"] = base[0]["noise_multiplier"] * (1.0 + 1e-4 * k)
        runs.append(records)
    return runs


def timed(fn: Any, repeat: int) -> tuple[float, float, Any]:
    """Seconds of the first call after the RDP curve cache is cleared (cold: a fresh worker
    process, or a history with more distinct mechanisms than the cache holds), and the
    median of ``repeat`` calls after it (warm)."""
    from privacy.accounting import _rdp_curve

    _rdp_curve.cache_clear()
    started = time.perf_counter()
    value = fn()
    cold = time.perf_counter() - started
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - started)
    return cold, statistics.median(times), value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,1000,10000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--distinct-max", type=int, default=1000,
                        help="largest all-distinct history composed in memory or re-derived "
                             "(each curve ~10-20 ms)")  # fmt: skip
    parser.add_argument("--no-service", action="store_true", help="ledger only, no instance")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks it starts")
    parser.add_argument("--json", help="write the raw figures here")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.repeat, args.distinct_max = "10", 1, 10
    warnings.simplefilter("ignore")
    from privacy import PrivacyLedger, plan_run

    plan = plan_run(rows=ROWS, epsilon=1.0, delta=DELTA, epochs=5, batch_size=256,
                    max_grad_norm=1.0, holdout_fraction=0.2)  # fmt: skip
    planned = plan.records()
    sizes = [int(s) for s in args.sizes.split(",")]
    inst = None if args.no_service else make_instance("bench-budget-")
    results: list[dict[str, Any]] = []
    for shape, shapes in SHAPES.items():
        for n in sizes:
            runs = history(planned, n, shapes)
            in_memory = shapes != 0 or n <= args.distinct_max
            row: dict[str, Any] = {"history": shape, "releases": n,
                                   "ledger_records": len(PrivacyLedger(runs[0]))
                                   * (n if shapes == 0 else min(n, shapes))}  # fmt: skip
            if in_memory:
                ledger = PrivacyLedger(accountant="rdp")
                started = time.perf_counter()
                for records in runs:
                    ledger.extend(records)
                build_s = time.perf_counter() - started
                cold_s, fits_s, fits = timed(
                    lambda ledger=ledger: ledger.fits(planned, cap_epsilon=1e9, delta=DELTA),
                    args.repeat,
                )
                row.update({
                    "ledger_records": len(ledger), "ledger_build_ms": 1000 * build_s,
                    "ledger_cold_ms": 1000 * cold_s, "ledger_fits_ms": 1000 * fits_s,
                    "fits": bool(fits),
                })  # fmt: skip
            if inst is not None:
                row.update(service_figures(inst, runs, planned, args.repeat, rederive=in_memory))
            results.append(row)
            print(f"  {shape:<10}{n:>7} releases: {row}", file=sys.stderr)
    if inst is not None:
        inst.close()

    print(f"budget check latency (RDP, delta {DELTA:g}); each release = one run "
          f"(DP-SGD + 2 noisy metrics); ms, cold = first check after the RDP curve cache is "
          f"cleared, warm = median of {args.repeat}")  # fmt: skip
    print(f"{'history':<11}{'releases':>9}{'records':>9}{'ledger cold':>12}{'warm':>8}"
          f"{'check cold':>11}{'warm':>8}{'re-derive cold':>15}{'warm':>8}"
          f"{'quote cold':>11}{'warm':>8}")  # fmt: skip

    def ms(r: dict, key: str) -> str:
        return f"{r[key]:.1f}" if key in r else "-"

    for r in results:
        print(f"{r['history']:<11}{r['releases']:>9}{r['ledger_records']:>9}"
              f"{ms(r, 'ledger_cold_ms'):>12}{ms(r, 'ledger_fits_ms'):>8}"
              f"{ms(r, 'service_cold_ms'):>11}{ms(r, 'service_ms'):>8}"
              f"{ms(r, 'rederive_cold_ms'):>15}{ms(r, 'rederive_ms'):>8}"
              f"{ms(r, 'quote_api_cold_ms'):>11}{ms(r, 'quote_api_ms'):>8}")  # fmt: skip
    write_json(args.json, {"args": vars(args), "rows_listed": ROWS, "results": results})
    return 0


def service_figures(
    inst: Any, runs: list[list[dict]], planned: list[dict], repeat: int, *, rederive: bool
) -> dict:
    """A fresh listed dataset with these releases (all spent but the last 5, reserved for
    pending runs); time the check, the re-derivation and the quote API."""
    from market.trading.budget import ledger_for, rederive_ledger
    from market.trading.models import PrivacyRelease, ReleaseState

    dataset_id = inst.list_dataset(*_tiny_listing())
    started = time.perf_counter()
    with inst.market.database.write() as session:
        session.add_all(
            PrivacyRelease.model_validate(
                {"dataset_id": dataset_id,
                 "state": ReleaseState.SPENT if i < len(runs) - 5 else ReleaseState.RESERVED,
                 "records": records, "epsilon": 0.0, "epsilon_after": 0.0}
            )
            for i, records in enumerate(runs)
        )  # fmt: skip
    write_s = time.perf_counter() - started

    def service() -> bool:
        with inst.market.database.read() as session:
            ledger = ledger_for(session, dataset_id, accountant="rdp")
        return ledger.fits(planned, cap_epsilon=1e9, delta=DELTA)

    def derived() -> bool:
        with inst.market.database.read() as session:
            ledger = rederive_ledger(session, dataset_id, accountant="rdp")
        return ledger.fits(planned, cap_epsilon=1e9, delta=DELTA)

    def quote() -> int:
        response = inst.client.post(
            "/api/v1/quotes",
            headers=inst.buyer,
            json={"dataset_id": dataset_id, "model": {"template": "logistic_regression"},
                  "epsilon": 1.0, "epochs": 5, "batch_size": 256},
        )  # fmt: skip
        if response.status_code >= 400:
            raise RuntimeError(f"quote refused: {response.get_json()}")
        return response.status_code

    service_cold, service_s, _ = timed(service, repeat)
    quote_cold, quote_s, _ = timed(quote, repeat)
    figures = {
        "history_write_s": write_s,
        "service_cold_ms": 1000 * service_cold,
        "service_ms": 1000 * service_s,
        "quote_api_cold_ms": 1000 * quote_cold,
        "quote_api_ms": 1000 * quote_s,
    }
    if rederive:
        rederive_cold, rederive_s, _ = timed(derived, repeat)
        figures.update(rederive_cold_ms=1000 * rederive_cold, rederive_ms=1000 * rederive_s)
    return figures


def _tiny_listing() -> tuple[dict[str, Any], bytes, str]:
    """A CSV listing of ROWS rows (quotes plan against the listed row count)."""
    rng = np.random.default_rng(0)
    out = io.StringIO()
    out.write("x,label\n")
    for v, lab in zip(rng.random(ROWS), rng.integers(0, 2, ROWS), strict=True):
        out.write(f"{v:.3f},{'ab'[lab]}\n")
    meta = {
        "title": "budget latency (bench)",
        "licence": "CC0-1.0",
        "format": "csv",
        "label": "label",
        "columns": [
            {"name": "x", "type": "numeric", "min": 0.0, "max": 1.0},
            {"name": "label", "type": "categorical", "categories": ["a", "b"]},
        ],
        "privacy": {"epsilon_total": 100.0, "delta": DELTA, "max_epsilon_per_run": 10.0},
        "price": {"per_run": "1.00", "per_epsilon": "0.50", "currency": "EUR"},
    }
    return meta, out.getvalue().encode(), "text/csv"


if __name__ == "__main__":
    raise SystemExit(main())
