"""Quote accuracy: the estimated run time and energy of a quote against the measured ones.

Runs several real private training runs of different sizes through the product's own code
path (API: list, quote, buy; then the worker's ``execute_run`` in this process, so the worker
is the same one `market worker` runs) on a throw-away instance, and prints for each run the
quote's estimated seconds and kWh next to the receipt's measured ones, with their ratio.
Data: scikit-learn's bundled breast cancer (CSV) and digits (NPZ) sets.

Run ``python bench/quote_accuracy.py [--json OUT]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
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
        "name": "logreg cancer e5",
        "data": "cancer",
        "model": {"template": "logistic_regression"},
        "epochs": 5,
    },
    {
        "name": "logreg cancer e40",
        "data": "cancer",
        "model": {"template": "logistic_regression"},
        "epochs": 40,
    },
    {
        "name": "mlp cancer e40",
        "data": "cancer",
        "model": {"template": "mlp", "hidden": [128]},
        "epochs": 40,
    },
    {
        "name": "seed mlp digits e10",
        "data": "digits",
        "model": SEED_MLP,
        "epochs": 10,
    },
    {
        "name": "seed mlp digits e40",
        "data": "digits",
        "model": SEED_MLP,
        "epochs": 40,
    },
]


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--smoke", action="store_true", help="the first case only")
    args = parser.parse_args()

    from market.trading.execution import execute_run

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import make_instance

    # `market init` makes the instance (database, keys and the audit signing key a purchase
    # needs); see bench/_common.py.
    inst = make_instance("quote-accuracy-")
    market, client = inst.market, inst.client
    owner, buyer = inst.owner, inst.buyer
    datasets = {}
    for key, (meta, body, media) in {
        "cancer": (*_cancer_csv(), "text/csv"),
        "digits": (*_digits_npz(), "application/x-npz"),
    }.items():
        draft = client.post("/api/v1/datasets", json=meta, headers=owner).get_json()
        listed = client.put(
            f"/api/v1/datasets/{draft['id']}/file",
            data=body,
            headers={**owner, "Content-Type": media},
        ).get_json()
        datasets[key] = listed["id"]

    results = []
    for case in CASES[:1] if args.smoke else CASES:
        quote = client.post(
            "/api/v1/quotes",
            headers=buyer,
            json={
                "dataset_id": datasets[case["data"]],
                "model": case["model"],
                "epsilon": 2.0,
                "epochs": case["epochs"],
                "batch_size": 64,
            },
        ).get_json()
        run = client.post("/api/v1/runs", json={"quote_id": quote["id"]}, headers=buyer).get_json()
        started = time.perf_counter()
        execute_run(market, run["id"])
        wall = time.perf_counter() - started
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
                "method": done["cost_receipt"]["measurement"]["method"],
                "worker_wall_s": wall,
            }
        )

    print(
        f"quote accuracy on {platform.node()} ({platform.machine()}, "
        f"python {platform.python_version()})"
    )
    print(
        f"{'case':<22}{'steps':>7}{'est s':>9}{'meas s':>9}{'meas/est':>10}"
        f"{'est kWh':>12}{'meas kWh':>12}{'meas/est':>10}  method"
    )
    for r in results:
        ratio_kwh = f"{r['ratio_kwh']:.2f}" if r["ratio_kwh"] else "-"
        print(
            f"{r['case']:<22}{r['steps']:>7}{r['estimated_s']:>9.2f}{r['measured_s']:>9.2f}"
            f"{r['ratio_s']:>10.2f}{r['estimated_kwh']:>12.2e}{r['measured_kwh']:>12.2e}"
            f"{ratio_kwh:>10}  {r['method']}"
        )
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2))
    market.database.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
