"""How many epsilon-1 training runs a dataset can sell: composed by the ledger vs summed.

A dataset with a total budget of epsilon 10 at delta 1e-5 sells runs planned at epsilon 1
each (``privacy.plan_run``, which includes the two noisy held-out metrics in the run's
epsilon). Summing epsilons, the naive accounting, sells floor(10 / 1) = 10 runs. The ledger
composes every run's mechanisms with a real accountant and keeps selling while
``ledger.fits(next_run, cap_epsilon=10)`` holds.

Scenarios vary the dataset size and the run shape, since composition gains depend on the
sampling rate and steps. Identical runs merge into one record per mechanism, so each
``fits`` costs the same whatever the number of runs sold (timed below).
Run ``python bench/runs_per_budget.py [--accountants rdp,prv] [--json OUT]`` (PRV takes
minutes: each ``fits`` is an FFT composition of ~10^5 steps, about 2.5 s here).
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

from privacy import PrivacyLedger, plan_run

SCENARIOS = [
    {"name": "MNIST-sized, 5 epochs", "rows": 60_000, "epochs": 5, "batch_size": 256},
    {"name": "Adult-sized, 10 epochs", "rows": 32_561, "epochs": 10, "batch_size": 256},
    {"name": "small, 20 epochs", "rows": 5_000, "epochs": 20, "batch_size": 64},
]


def count_runs(scenario: dict, *, accountant: str, cap: float, delta: float, per_run: float):
    plan = plan_run(
        rows=scenario["rows"],
        epsilon=per_run,
        delta=delta,
        epochs=scenario["epochs"],
        batch_size=scenario["batch_size"],
        max_grad_norm=1.0,
        accountant=accountant,
    )
    ledger = PrivacyLedger(accountant=accountant)
    sold = 0
    fit_seconds = []
    while True:
        started = time.perf_counter()
        fits = ledger.fits(plan.records(), cap_epsilon=cap, delta=delta)
        fit_seconds.append(time.perf_counter() - started)
        if not fits:
            break
        ledger.extend(plan.records())
        sold += 1
        if sold > 10_000:  # pragma: no cover - a safety stop
            break
    return {
        "scenario": scenario["name"],
        "accountant": accountant,
        "noise_multiplier": plan.noise_multiplier,
        "runs_ledger": sold,
        "runs_summing": math.floor(cap / per_run + 1e-9),
        "epsilon_spent": ledger.epsilon(delta=delta),
        "fits_ms_mean": 1000 * sum(fit_seconds) / len(fit_seconds),
        "ledger_records": len(ledger),
        "releases": ledger.releases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=10.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--per-run", type=float, default=1.0)
    parser.add_argument("--accountants", default="rdp")
    parser.add_argument("--json")
    parser.add_argument("--smoke", action="store_true", help="one small scenario, cap 3")
    args = parser.parse_args()
    scenarios = SCENARIOS[-1:] if args.smoke else SCENARIOS
    if args.smoke:
        args.cap = 3.0
    warnings.simplefilter("ignore")  # Opacus's notices about alpha ranges, not results
    results = []
    print(f"budget epsilon {args.cap:g} at delta {args.delta:g}; runs planned at epsilon "
          f"{args.per_run:g} each (training + 2 noisy metrics)")  # fmt: skip
    print(f"{'scenario':<26}{'acct':>5}{'sigma':>8}{'ledger':>8}{'summing':>9}"
          f"{'eps spent':>11}{'fits ms':>9}{'records':>9}")  # fmt: skip
    for scenario in scenarios:
        for accountant in args.accountants.split(","):
            r = count_runs(
                scenario, accountant=accountant, cap=args.cap, delta=args.delta,
                per_run=args.per_run,
            )  # fmt: skip
            results.append(r)
            print(f"{r['scenario']:<26}{accountant:>5}{r['noise_multiplier']:>8.3f}"
                  f"{r['runs_ledger']:>8}{r['runs_summing']:>9}{r['epsilon_spent']:>11.3f}"
                  f"{r['fits_ms_mean']:>9.1f}{r['ledger_records']:>9}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
