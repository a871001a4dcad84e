"""Where a short run's fixed cost goes: the purchase, each worker step, the delivery, the download.

Figure 4 (platform overhead) says how much of purchase-to-delivery is not training; this
says which steps that is. A throw-away instance lists UCI Adult (``--data``; scikit-learn's
breast cancer without it), then buys ``--runs`` logistic-regression runs with the recipe's
settings, one after the other, and runs the worker's ``execute_run`` in this process. Each
step of the worker (``market.trading.lifecycle`` and ``market.trading.execution``) is timed
by wrapping it, so nothing is sampled or estimated: the figures are medians over the runs
after the first two (the first run decrypts and decodes the table; the later ones find it in
the worker's memory, ``privacy.prepared``).

Run ``python bench/run_breakdown.py [--data DIR] [--runs 12] [--smoke] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import collections
import functools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir, make_instance, write_json  # noqa: E402

#: The worker's steps, by module: each is timed around every call.
STEPS = {
    "market.trading.lifecycle": ("claim", "touch_data", "heartbeat", "report_progress"),
    "market.trading.execution": (
        "build_model",
        "train_private",
        "model_bytes",
        "_write_model",
        "_deliver",
    ),  # fmt: skip
}


def _timers(spent: dict[str, list[float]]) -> None:
    """Wrap each step so that every call adds its seconds to ``spent[name]``."""
    import importlib

    for module_name, names in STEPS.items():
        module = importlib.import_module(module_name)
        for name in names:
            original = getattr(module, name)

            @functools.wraps(original)
            def timed(*args: Any, _f: Any = original, _n: str = name, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return _f(*args, **kwargs)
                finally:
                    spent[_n].append(time.perf_counter() - started)

            setattr(module, name, timed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder with adult.data (else breast cancer)")
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--smoke", action="store_true", help="3 runs: checks it starts")
    parser.add_argument("--json", help="write the raw figures here")
    args = parser.parse_args()
    runs = 3 if args.smoke else max(3, args.runs)

    import accuracy  # the benchmark's own Adult listing (public bounds and categories)

    folder, present = data_dir(args.data)
    data = accuracy.tabular_data(folder, present, None)
    spent: dict[str, list[float]] = collections.defaultdict(list)
    _timers(spent)
    from market.trading import execution

    inst = make_instance("bench-breakdown-")
    dataset_id = inst.list_dataset(data["meta"], data["body"], data["media"])
    client, buyer = inst.client, inst.buyer
    body = {"dataset_id": dataset_id, "model": {"template": "logistic_regression"},
            "epsilon": 1.0, "epochs": 10, "batch_size": 256}  # fmt: skip
    rows: list[dict[str, float]] = []
    for _ in range(runs):
        quote = client.post("/api/v1/quotes", headers=buyer, json=body).get_json()
        spent.clear()
        t0 = time.perf_counter()
        run = client.post("/api/v1/runs", json={"quote_id": quote["id"]}, headers=buyer)
        t1 = time.perf_counter()
        execution.execute_run(inst.market, run.get_json()["id"])
        t2 = time.perf_counter()
        done = client.get(f"/api/v1/runs/{run.get_json()['id']}", headers=buyer).get_json()
        client.get(f"/api/v1/runs/{done['id']}/model", headers=buyer)
        t3 = time.perf_counter()
        if done["status"] != "succeeded":
            raise RuntimeError(f"run failed: {done['error']}")
        timings = done["cost_receipt"]["timings"]
        row = {"purchase": t1 - t0, "worker": t2 - t1, "status_and_download": t3 - t2,
               "wall": t3 - t0, "train_loop": float(timings["train_s"]),
               "prepare": float(timings.get("prepare_s", 0.0)),
               **{name: sum(calls) for name, calls in spent.items()}}  # fmt: skip
        row["overhead"] = row["wall"] - row["train_loop"]
        rows.append(row)
    inst.close()
    steady = rows[2:] if len(rows) > 2 else rows
    medians = {key: statistics.median(r.get(key, 0.0) for r in steady) for key in rows[-1]}
    print(f"fixed cost of a run ({data['source']}, logistic regression, the recipe's settings; "
          f"medians of runs 3-{len(rows)} of {len(rows)}, ms)")  # fmt: skip
    for key, value in medians.items():
        print(f"  {key:<22}{1000 * value:>9.1f}")
    print(f"  overhead share of wall  {100 * medians['overhead'] / medians['wall']:>6.1f}%")
    write_json(args.json, {"args": vars(args), "source": data["source"], "runs": rows,
                           "medians": medians})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
