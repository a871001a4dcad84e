"""Each benchmark starts and writes well-formed JSON on tiny inputs (``--smoke``).

Benchmarks never run in the test suite otherwise, and nothing here is timed: ``make bench``
measures, this only checks that the suite still runs end to end (``bench/run_all.py
--smoke``: every benchmark as a subprocess, the collected JSON and the rendered page).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.slow
def test_every_benchmark_starts_and_writes_json(tmp_path: Path) -> None:
    out_json, out_md = tmp_path / "latest.json", tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--smoke", "--jobs", "3",
         "--json", str(out_json), "--out", str(out_md)],
        cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(out_json.read_text())
    assert set(report["benchmarks"]) == BENCHMARKS
    for name, bench in report["benchmarks"].items():
        assert bench["rc"] == 0, name
        assert isinstance(bench["result"], dict) and bench["result"], name
        json.dumps(bench["result"], allow_nan=False)  # strict JSON: no NaN or infinity
    assert report["summary"], "the summary table has rows"
    page = out_md.read_text()
    assert page.startswith("# Benchmarks") and "| figure |" in page
