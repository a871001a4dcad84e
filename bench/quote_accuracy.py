"""Quote accuracy: the estimated run time and energy of a quote against the measured ones.

The bench process first calibrates the ``cpu`` worker class exactly as ``market worker`` does
at start (``market.trading.calibration.calibrate_and_store``: timed real DP-SGD runs on
synthetic data, fitted per model family), then runs real private trainings of different
sizes through the product's own code path (API: list, quote, buy; then the worker's
``execute_run`` in this process) on a throw-away instance, and prints for each run the quote's
estimated seconds and kWh next to the receipt's measured ones, their ratio, and the quote's
expected error. Target: every ratio within 0.7-1.4.
Data: scikit-learn's breast cancer (CSV) and digits (NPZ) sets, and a generated tabular set.

Run ``python bench/quote_accuracy.py [--json OUT] [--smoke]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from privacy.specs import SEED_MLP  # noqa: E402  (after the path: run as a script)

CASES: list[dict[str, Any]] = [
    {
        # The seed MLP's shape (dense 128 ReLU, dropout 0.2) for the set's two classes.
        "name": "seed mlp cancer e2",
        "data": "cancer",
        "model": {"template": "mlp", "hidden": [128], "dropout": 0.2},
        "epochs": 2,
    },
    {
        "name": "logreg cancer e20",
        "data": "cancer",
        "model": {"template": "logistic_regression"},
        "epochs": 20,
    },
    {
        "name": "mlp cancer e40",
        "data": "cancer",
        "model": {"template": "mlp", "hidden": [128]},
        "epochs": 40,
    },
    {
        "name": "mlp tabular20k e5",
        "data": "tabular",
        "model": {"template": "mlp", "hidden": [64]},
        "epochs": 5,
        "batch_size": 256,
    },
    {"name": "seed mlp digits e20", "data": "digits", "model": SEED_MLP, "epochs": 20},
    {"name": "cnn digits e5", "data": "digits", "model": {"template": "cnn"}, "epochs": 5},
]
LOW, HIGH = 0.7, 1.4


def _cancer_csv() -> tuple[dict[str, Any], bytes]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = list(data.feature_names)
    columns = names[:10]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*columns, "diagnosis"])
    for row, target in zip(data.data, data.target, strict=True):
        writer.writerow(
            [*(row[names.index(c)] for c in columns), "malignant" if target == 0 else "benign"]
        )
    lows, highs = data.data.min(axis=0), data.data.max(axis=0)
    meta = {
        "title": "Breast cancer (bench)",
        "licence": "CC-BY-4.0",
        "format": "csv",
        "label": "diagnosis",
        "columns": [
            *[
                {
                    "name": c,
                    "type": "numeric",
                    "min": 0.0,
                    "max": float(highs[names.index(c)] * 1.5 + 1),
                }
                for c in columns
            ],
            {"name": "diagnosis", "type": "categorical", "categories": ["benign", "malignant"]},
        ],
        "privacy": {"epsilon_total": 100.0, "delta": 1e-5, "max_epsilon_per_run": 10.0},
        "price": {"per_run": "1.00", "per_epsilon": "0.50", "currency": "EUR"},
    }
    del lows
    return meta, out.getvalue().encode()


def _digits_npz() -> tuple[dict[str, Any], bytes]:
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    sink = io.BytesIO()
    np.savez(sink, x=digits.images.astype(np.float32), y=digits.target)
    meta = {
        "title": "Digits (bench)",
        "licence": "CC-BY-4.0",
        "format": "npz",
        "image": {
            "shape": [8, 8],
            "pixel_range": {"min": 0, "max": 16},
            "class_names": [str(i) for i in range(10)],
        },
        "privacy": {"epsilon_total": 100.0, "delta": 1e-5, "max_epsilon_per_run": 10.0},
        "price": {"per_run": "1.00", "per_epsilon": "0.50", "currency": "EUR"},
    }
    return meta, sink.getvalue()


def _tabular_csv(rows: int = 20_000, features: int = 20) -> tuple[dict[str, Any], bytes]:
    """A generated tabular set: numeric features in [0, 1], a label from a noisy linear rule."""
    import numpy as np

    rng = np.random.default_rng(7)
    x = rng.random((rows, features))
    y = (x @ rng.normal(size=features) + rng.normal(scale=0.5, size=rows)) > 0
    names = [f"f{i}" for i in range(features)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*names, "label"])
    for row, label in zip(x, y, strict=True):
        writer.writerow([*(f"{v:.5f}" for v in row), "yes" if label else "no"])
    meta = {
        "title": "Generated tabular (bench)",
        "licence": "CC0-1.0",
        "format": "csv",
        "label": "label",
        "columns": [
            *[{"name": n, "type": "numeric", "min": 0.0, "max": 1.0} for n in names],
            {"name": "label", "type": "categorical", "categories": ["no", "yes"]},
        ],
        "privacy": {"epsilon_total": 100.0, "delta": 1e-6, "max_epsilon_per_run": 10.0},
        "price": {"per_run": "1.00", "per_epsilon": "0.50", "currency": "EUR"},
    }
    return meta, out.getvalue().encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--smoke", action="store_true", help="the first case only")
    args = parser.parse_args()

    from market.trading import calibration
    from market.trading.execution import execute_run

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import make_instance

    # `market init` makes the instance (database, keys and the audit signing key a purchase
    # needs); see bench/_common.py. The instance's heartbeat stands for this process's worker.
    inst = make_instance("quote-accuracy-")
    market, client, buyer = inst.market, inst.client, inst.buyer
    worker_class = market.settings.queue.worker_class
    started = time.perf_counter()
    fit = calibration.calibrate_and_store(market, worker_class)
    calibration_s = time.perf_counter() - started
    cases = CASES[:1] if args.smoke else CASES
    sources = {
        "cancer": lambda: (*_cancer_csv(), "text/csv"),
        "digits": lambda: (*_digits_npz(), "application/x-npz"),
        "tabular": lambda: (*_tabular_csv(), "text/csv"),
    }
    datasets = {
        key: inst.list_dataset(*make())
        for key, make in sources.items()
        if any(case["data"] == key for case in cases)
    }

    results = []
    for case in cases:
        response = client.post(
            "/api/v1/quotes",
            headers=buyer,
            json={
                "dataset_id": datasets[case["data"]],
                "model": case["model"],
                "epsilon": 2.0,
                "epochs": case["epochs"],
                "batch_size": case.get("batch_size", 64),
            },
        )
        quote = response.get_json()
        if response.status_code != 201:
            print(f"{case['name']}: quote refused: {quote}", file=sys.stderr)
            return 1
        bought = client.post("/api/v1/runs", json={"quote_id": quote["id"]}, headers=buyer)
        if bought.status_code != 202:
            print(f"{case['name']}: purchase refused: {bought.get_json()}", file=sys.stderr)
            return 1
        run = bought.get_json()
        began = time.perf_counter()
        execute_run(market, run["id"])
        wall = time.perf_counter() - began
        done = client.get(f"/api/v1/runs/{run['id']}", headers=buyer).get_json()
        if done["status"] != "succeeded":
            print(f"{case['name']}: run failed: {done['error']}", file=sys.stderr)
            return 1
        measured = done["cost_receipt"]["measured"]
        estimated_s = float(quote["estimate"]["seconds"])
        measured_s = float(measured["seconds"])
        estimated_kwh = float(quote["estimate"]["energy_kwh"])
        measured_kwh = float(measured["energy_kwh"])
        results.append(
            {
                "case": case["name"],
                "steps": quote["mechanism"]["steps"],
                "estimated_s": estimated_s,
                "measured_s": measured_s,
                "ratio_s": measured_s / estimated_s,
                "estimated_kwh": estimated_kwh,
                "measured_kwh": measured_kwh,
                "ratio_kwh": measured_kwh / estimated_kwh if estimated_kwh else None,
                "expected_error": quote["estimate"]["accuracy"]["relative_error"],
                "measured_cpu_s": done["cost_receipt"]["measurement"]["cpu_seconds"],
                "method": done["cost_receipt"]["measurement"]["method"],
                "worker_wall_s": wall,
            }
        )

    print(
        f"quote accuracy on {platform.node()} ({platform.machine()}, "
        f"python {platform.python_version()}); calibration of class {worker_class}: "
        f"{calibration_s:.1f} s, "
        + ("off" if fit is None else f"expected error +-{fit.relative_error:.0%}, {fit.method}")
    )
    print(
        f"{'case':<22}{'steps':>7}{'est s':>9}{'meas s':>9}{'meas/est':>10}"
        f"{'est kWh':>12}{'meas kWh':>12}{'meas/est':>10}{'quoted +-':>11}  method"
    )
    inside = in_band = True
    for r in results:
        ratio_kwh = f"{r['ratio_kwh']:.2f}" if r["ratio_kwh"] else "-"
        inside &= LOW <= r["ratio_s"] <= HIGH and LOW <= (r["ratio_kwh"] or 0) <= HIGH
        band = r["expected_error"]
        in_band &= band is not None and all(
            abs(x - 1) <= band for x in (r["ratio_s"], r["ratio_kwh"] or 0)
        )
        print(
            f"{r['case']:<22}{r['steps']:>7}{r['estimated_s']:>9.2f}{r['measured_s']:>9.2f}"
            f"{r['ratio_s']:>10.2f}{r['estimated_kwh']:>12.2e}{r['measured_kwh']:>12.2e}"
            f"{ratio_kwh:>10}{'-' if band is None else f'{band:.0%}':>11}  {r['method']}"
        )
    print(f"every ratio within {LOW}-{HIGH}: {'yes' if inside else 'no'}")
    print(f"every ratio within the quote's own stated error: {'yes' if in_band else 'no'}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load is not None:
        print(f"load average at the end (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": results,
                    "calibration_s": calibration_s,
                    "fit": None if fit is None else fit.to_dict(),
                },
                indent=2,
            )
        )
    inst.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
