"""Each benchmark starts and writes well-formed JSON on tiny inputs (``--smoke``).

Benchmarks never run in the test suite otherwise, and nothing here is timed: ``make bench``
measures, this only checks that the harness still runs end to end (``bench/run_all.py
--smoke``: benchmarks as subprocesses, the collected JSON and the rendered page).

Starting every benchmark costs about two minutes of both cores (servers, a worker's
calibration, real training), a third of the suite: ``make test`` runs the harness on the two
cheapest benchmarks, and the run over all of them is marked ``bench_smoke``, which
``make bench-smoke`` (and CI, after ``make test``) runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = {
    "dp_throughput",
    "accuracy",
    "runs_per_budget",
    "vault_throughput",
    "budget_latency",
    "catalog_load",
    "quote_accuracy",
    "load",
}
#: The two that start no server and train no model: the harness test runs these.
CHEAPEST = {"vault_throughput", "runs_per_budget"}


def run_harness(tmp_path: Path, *extra: str) -> tuple[dict[str, Any], str]:
    """``bench/run_all.py --smoke`` in a subprocess; its JSON report and rendered page."""
    out_json, out_md = tmp_path / "latest.json", tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--smoke", *extra,
         "--json", str(out_json), "--out", str(out_md)],
        cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report: dict[str, Any] = json.loads(out_json.read_text())
    for name, bench in report["benchmarks"].items():
        assert bench["rc"] == 0, name
        assert isinstance(bench["result"], dict) and bench["result"], name
        json.dumps(bench["result"], allow_nan=False)  # strict JSON: no NaN or infinity
    assert report["summary"], "the summary table has rows"
    page = out_md.read_text()
    assert page.startswith("# Benchmarks") and "| figure |" in page
    return report, page


@pytest.mark.slow
def test_the_harness_collects_and_renders_the_cheapest_benchmarks(tmp_path: Path) -> None:
    report, page = run_harness(tmp_path, "--only", ",".join(sorted(CHEAPEST)))
    assert set(report["benchmarks"]) == CHEAPEST
    assert "(smoke sizes: not representative)" in page


@pytest.mark.slow
@pytest.mark.bench_smoke
def test_every_benchmark_starts_and_writes_json(tmp_path: Path) -> None:
    report, _ = run_harness(tmp_path, "--jobs", "2")
    assert set(report["benchmarks"]) == BENCHMARKS


@pytest.mark.slow
@pytest.mark.bench_smoke
def test_the_fixed_cost_breakdown_starts_and_writes_json(tmp_path: Path) -> None:
    """``bench/run_breakdown.py`` stands alone (figure 4's detail), outside run_all."""
    out = tmp_path / "breakdown.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_breakdown.py"), "--smoke", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert len(result["runs"]) == 3
    steps = set(result["medians"])
    assert {"purchase", "claim", "train_private", "_deliver", "overhead"} <= steps
    assert all(value >= 0 for value in result["medians"].values())
