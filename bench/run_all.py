"""Run every benchmark, collect their JSON, print one summary table, regenerate the results page.

Each benchmark runs alone in a subprocess (``python bench/<name>.py <sizes> --json FILE``)
so that one's memory and imports never colour another's figures; the sizes below are chosen
so that the whole suite finishes in well under 30 minutes on 2 shared cores. The raw JSON of
all of them lands in ``bench/results/latest.json``; ``--out`` rewrites the Markdown page
(``docs/benchmarks.md``) with the summary table, the exact command, the machine and, per
figure, what it means for a user and the benchmark's own table.

``--data DIR`` holds MNIST and UCI Adult (docs/reference-data.md); when it is missing
this says so and the benchmarks fall back to scikit-learn's bundled sets. ``--smoke`` runs
every benchmark on tiny inputs (what the smoke test does); ``--only a,b`` runs a subset.
Run ``python bench/run_all.py --data DIR --out docs/benchmarks.md`` (``make bench``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results" / "latest.json"

#: (module, its figure in docs/benchmarks.md, its arguments for the full run, takes --data)
BENCHMARKS: list[tuple[str, str, list[str], bool]] = [
    ("dp_throughput", "1. DP-SGD throughput", ["--repeat", "2"], True),
    (
        "accuracy",
        "2. Accuracy vs epsilon",
        ["--mnist-rows", "60000", "--mlp-epochs", "10", "--cnn-epochs", "4"],
        True,
    ),
    ("runs_per_budget", "3. Runs sold from one budget", [], False),
    ("vault_throughput", "5. Vault throughput", ["--sizes", "64M,1G", "--repeat", "2"], False),
    ("budget_latency", "6. Budget check latency", ["--sizes", "10,1000,10000"], False),
    ("catalog_load", "7. Catalog API under load", ["--seconds", "10"], False),
    ("quote_accuracy", "8. Quote accuracy", [], False),
    ("load", "9. Load test", ["--seconds", "60", "--clients", "16"], False),
]


def machine() -> dict[str, Any]:
    """The machine as a reader needs it to compare figures."""
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(
            (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
             if line.startswith("model name")), platform.processor() or platform.machine(),
        )  # fmt: skip
    except OSError:
        info["cpu"] = platform.processor() or platform.machine()
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()
        info["ram_gib"] = round(int(mem[1]) / (1 << 20), 1)
    except (OSError, IndexError, ValueError):
        info["ram_gib"] = None
    out = subprocess.run(
        [sys.executable, "-c",
         "import torch, opacus; print(torch.__version__, opacus.__version__)"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    torch_v, _, opacus_v = out.stdout.strip().partition(" ")
    info["torch"], info["opacus"] = torch_v or None, opacus_v or None
    return info


def loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def run_one(name: str, args: list[str], *, data: Path | None, smoke: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        out = Path(tmp) / "out.json"
        argv = [sys.executable, str(BENCH / f"{name}.py"), *([] if smoke else args)]
        if data is not None:
            argv += ["--data", str(data)]
        argv += ["--smoke"] if smoke else []
        argv += ["--json", str(out)]
        print(f"== {name}: {shlex.join(argv[1:])}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
        seconds = time.perf_counter() - started
        result = json.loads(out.read_text()) if proc.returncode == 0 and out.exists() else None
    stdout = "\n".join(
        line for line in proc.stdout.splitlines() if not line.startswith("wrote ")
    ).strip()
    if proc.returncode != 0:
        print(f"   {name} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
    else:
        print(f"   {name}: {seconds:.0f} s", file=sys.stderr, flush=True)
    return {
        "argv": ["python", *(_relative(a) for a in argv[1:-2])],
        "seconds": seconds,
        "rc": proc.returncode,
        "table": stdout,
        "notes": [line for line in proc.stderr.splitlines() if line.startswith("note:")],
        "result": result,
    }


def _relative(arg: str) -> str:
    return str(Path(arg).relative_to(ROOT)) if arg.startswith(str(ROOT)) else arg


# -- the summary ------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _anchor(dataset: str, model: str, eps: float) -> tuple[str, float | None]:
    """The published figure a private accuracy is read against (text, accuracy)."""
    if dataset == "mnist":
        if "cnn" in model:
            if eps <= 2:
                return "Opacus example CNN 94.63% at eps 1.16", 0.9463
            return "Tramer & Boneh CNN 98.1% at eps 3 (Opacus 96.78% at 2.91)", 0.981
        if eps <= 1.25:
            return "Abadi et al. 90% at eps 0.5, 95% at eps 2", 0.90 + (eps - 0.5) / 1.5 * 0.05
        return "Abadi et al. 95% at eps 2, 97% at eps 8", 0.95 + (eps - 2) / 6 * 0.02
    if dataset == "adult":
        return "non-private logistic regression ~85%", 0.85
    return "(fallback data: no published anchor)", None


def summarise(benchmarks: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """One row per measured case: figure, case, measured, compared with."""
    rows: list[dict[str, str]] = []

    def add(figure: str, case: str, measured: str, reference: str) -> None:
        rows.append({"figure": figure, "case": case, "measured": measured, "reference": reference})

    def result(name: str) -> dict[str, Any] | None:
        return (benchmarks.get(name) or {}).get("result")

    if r := result("dp_throughput"):
        base = next((x for x in r["results"] if x["mode"] == "nonprivate"), None)
        for x in r["results"]:
            if x["mode"] == "nonprivate":
                continue
            add("1. DP-SGD throughput", f"seed MLP, {x['mode']}",
                f"{x['samples_per_s']:.0f} samples/s = {x['ratio_to_nonprivate']:.2f}x; "
                f"peak +{x['peak_rss_mib'] - x['baseline_rss_mib']:.0f} MiB",
                f"non-private {base['samples_per_s']:.0f} samples/s, "
                f"peak +{base['peak_rss_mib'] - base['baseline_rss_mib']:.0f} MiB (same run)"
                if base else "-")  # fmt: skip
    if r := result("accuracy"):
        for x in r["results"]:
            text, anchor = _anchor(x["dataset"], x["label"], x["epsilon"])
            gap = f"; gap {100 * (anchor - x['accuracy']):+.1f} pt" if anchor else ""
            add("2. Accuracy vs epsilon",
                f"{x['dataset']} {x['label']}, eps {x['epsilon']:g} ({x['epochs']} epochs)",
                f"{_pct(x['accuracy'])} (non-private {_pct(x['nonprivate_accuracy'])})",
                f"{text}{gap}")  # fmt: skip
        fractions = [x["overhead_fraction"] for x in r["results"]]
        seconds = [x["overhead_s"] for x in r["results"]]
        add("4. Platform overhead", f"{len(fractions)} runs of figure 2",
            f"median {_pct(statistics.median(fractions))} of purchase-to-delivery "
            f"({statistics.median(seconds):.1f} s)",
            f"range {_pct(min(fractions))}-{_pct(max(fractions))}; training "
            f"{min(x['train_s'] for x in r['results']):.0f}-"
            f"{max(x['train_s'] for x in r['results']):.0f} s")  # fmt: skip
    if r := result("runs_per_budget"):
        for x in r["results"]:
            add("3. Runs per budget", f"{x['scenario']} ({x['accountant']})",
                f"{x['runs_ledger']} runs (eps spent {x['epsilon_spent']:.2f})",
                f"summing epsilons: {x['runs_summing']} runs")  # fmt: skip
    if r := result("vault_throughput"):
        for size_rows in r["sizes"]:
            by = {x["path"]: x for x in size_rows}
            size = size_rows[0]["size_bytes"]
            label = f"{size >> 20} MiB" if size < 1 << 30 else f"{size / (1 << 30):g} GiB"
            s, b, o = by["stream"], by["buffer"], by["oneshot"]
            add("5. Vault throughput", f"{label}, stream (upload/download path)",
                f"enc+dec {s['enc_dec_ratio']:.2f}x one-shot; peak {s['peak_rss_mib']:.0f} MiB",
                f"one-shot AES-GCM {o['encrypt_mb_s']:.0f}/{o['decrypt_mb_s']:.0f} MB/s enc/dec, "
                f"peak {o['peak_rss_mib']:.0f} MiB")  # fmt: skip
            add("5. Vault throughput", f"{label}, buffer (worker path)",
                f"dec {b['decrypt_ratio']:.2f}x one-shot; peak {b['peak_rss_mib']:.0f} MiB",
                "one-shot decrypt, same run")  # fmt: skip
    if r := result("budget_latency"):
        for x in r["results"]:
            svc = ""
            if "service_ms" in x:
                svc = (f"check {x['service_ms']:.1f} ms warm / "
                       f"{x['service_cold_ms']:.0f} ms cold; "
                       f"quote API {x['quote_api_ms']:.0f} ms")  # fmt: skip
                if "rederive_ms" in x:
                    svc += f"; re-derived from the rows {x['rederive_ms']:.0f} ms"
            fits = (f"in memory {x['ledger_fits_ms']:.2f} ms warm / "
                    f"{x['ledger_cold_ms']:.0f} ms cold" if "ledger_fits_ms" in x
                    else f"{x['ledger_records']} merged records")  # fmt: skip
            add("6. Budget check latency", f"{x['releases']:,} releases, {x['history']}",
                svc or fits, fits if svc else "")  # fmt: skip
    if r := result("catalog_load"):
        hello = r["results"][0]
        for x in r["results"][1:]:
            add("7. Catalog API load", f"{x['target']} ({x['path']})",
                f"{x['rps']:.0f} req/s = {x['ratio_to_hello']:.3f}x; p50 {x['p50_ms']:.0f} ms, "
                f"p99 {x['p99_ms']:.0f} ms", f"Flask hello-world {hello['rps']:.0f} req/s, "
                f"p50 {hello['p50_ms']:.0f} ms, p99 {hello['p99_ms']:.0f} ms "
                "(same run)")  # fmt: skip
    if r := result("load"):
        for x in r["results"]:
            t = x["total"]
            add("9. Load test", f"{x['backend']}: 16 clients, catalog/dataset/quote mix",
                f"{t['requests']:,} requests, {t['errors']} errors; p50 "
                f"{t.get('p50_ms', 0):.0f} ms, p99 {t.get('p99_ms', 0):.0f} ms",
                "errors must be 0; " + ", ".join(
                    f"{op} p99 {o.get('p99_ms', 0):.0f} ms"
                    for op, o in x["operations"].items()))  # fmt: skip
    if r := result("quote_accuracy"):
        for x in r["results"]:
            kwh = f"{x['ratio_kwh']:.2f}" if x.get("ratio_kwh") else "-"
            add("8. Quote accuracy", x["case"],
                f"time measured/estimated {x['ratio_s']:.2f}, energy {kwh}",
                f"estimate {x['estimated_s']:.1f} s, measured {x['measured_s']:.1f} s "
                f"({x['method']})")  # fmt: skip
    return rows


def table(rows: list[dict[str, str]]) -> str:
    head = "| figure | case | measured | compared with |\n|---|---|---|---|\n"
    return head + "".join(
        f"| {r['figure']} | {r['case']} | {r['measured']} | {r['reference']} |\n" for r in rows
    )


def furthest_from_anchor(benchmarks: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    r = (benchmarks.get("accuracy") or {}).get("result")
    if not r:
        return None
    best = None
    for x in r["results"]:
        text, anchor = _anchor(x["dataset"], x["label"], x["epsilon"])
        if anchor is None:
            continue
        gap = anchor - x["accuracy"]
        if best is None or gap > best["gap"]:
            best = {"case": f"{x['dataset']} {x['label']} eps {x['epsilon']:g}",
                    "accuracy": x["accuracy"], "anchor": text, "gap": gap}  # fmt: skip
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", help="rewrite this Markdown page (docs/benchmarks.md)")
    parser.add_argument("--json", default=str(RESULTS), help="where the collected JSON goes")
    parser.add_argument("--only", help="comma-separated benchmark names")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs: checks they start")
    parser.add_argument("--render", action="store_true",
                        help="only re-render --out from the JSON already at --json")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, help="benchmarks run at once (smoke)")
    args = parser.parse_args()
    if args.render:
        report = json.loads(Path(args.json).read_text())
        return finish(report, args.out)

    data = Path(args.data)
    if not ((data / "mnist.npz").exists() and (data / "adult.data").exists()):
        print(f"note: {data} lacks mnist.npz / adult.data: benchmarks fall back to "
              "scikit-learn's bundled sets (digits, breast cancer)", file=sys.stderr)  # fmt: skip
    only = set(args.only.split(",")) if args.only else None
    started_at = dt.datetime.now(dt.UTC)
    load_before = loadavg()
    info = machine()
    started = time.perf_counter()
    chosen = [b for b in BENCHMARKS if not only or b[0] in only]

    def one(bench: tuple[str, str, list[str], bool]) -> dict[str, Any]:
        name, figure, bench_args, takes_data = bench
        return {
            "figure": figure,
            **run_one(name, bench_args, data=data if takes_data else None, smoke=args.smoke),
        }

    # One at a time for real figures (parallel runs would share the cores); --jobs is for
    # the smoke test, which only checks that each benchmark starts and writes its JSON.
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        benchmarks = dict(zip((b[0] for b in chosen), pool.map(one, chosen), strict=True))
    total = time.perf_counter() - started
    rows = sorted(summarise(benchmarks), key=lambda r: int(r["figure"].split(".")[0]))
    command = " ".join(["python", *sys.argv]) if sys.argv else "python bench/run_all.py"
    report = {
        "generated_at": started_at.isoformat(timespec="seconds"),
        "command": command,
        "smoke": args.smoke,
        "data": str(data),
        "machine": info,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "total_s": total,
        "summary": rows,
        "furthest_from_anchor": furthest_from_anchor(benchmarks),
        "benchmarks": benchmarks,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")

    return finish(report, args.out)


def finish(report: dict[str, Any], out: str | None) -> int:
    """Print the summary table; write the Markdown page when asked. 1 if a benchmark failed."""
    rows = sorted(report["summary"], key=lambda r: int(r["figure"].split(".")[0]))
    info, total = report["machine"], report["total_s"]
    width = max((len(r["case"]) for r in rows), default=10)
    print(f"benchmarks on {info['nproc']} x {info['cpu']}, {info['ram_gib']} GiB, torch "
          f"{info['torch']}, opacus {info['opacus']}; {total / 60:.1f} min")  # fmt: skip
    current = None
    for r in rows:
        if r["figure"] != current:
            current = r["figure"]
            print(f"\n{current}")
        print(f"  {r['case']:<{width}}  {r['measured']}\n  {'':<{width}}  vs {r['reference']}")
    failed = [n for n, b in report["benchmarks"].items() if b["rc"] != 0]
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
    if out:
        from _report import render  # the page's text

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(render(report, table(rows)))
        print(f"\nwrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    raise SystemExit(main())
