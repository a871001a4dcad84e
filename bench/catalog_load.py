"""Catalog API throughput and p50/p99 latency under local load, next to a bare Flask app.

Both apps are served the same way in the same run: ``gunicorn`` with 2 workers
(``gthread``, 4 threads each, the access log off) on 127.0.0.1, one after the other. The
product is the real app (``gunicorn 'market:create_app()'`` with ``MARKET_HOME`` pointing at
an instance made by ``market init``, a few listed datasets and a researcher's API token);
the baseline is a Flask hello-world returning a small JSON body. The load generator is this
process: ``--concurrency`` threads, each with its own ``httpx.Client`` (keep-alive), sending
requests back to back for ``--seconds`` after a warm-up; no target sees more than that.

Targets
``hello``            ``GET /`` of the bare Flask app: the floor of this stack on this machine.
``catalog search``   ``GET /api/v1/datasets`` with a bearer token: token check, search,
                     tags and each dataset's public page including its composed budget.
``dataset page``     ``GET /api/v1/datasets/<id>``: one dataset with its budget.

The load generator shares the CPUs with the server (2 cores here), so absolute figures are
a floor of what the server does alone; the ratio to hello-world is the comparable figure.
Run ``python bench/catalog_load.py [--seconds 10] [--concurrency 8] [--smoke] [--json OUT]``.

``--shipped`` measures ``market serve`` as shipped instead (the ``market`` command, its
default ``server.workers`` x ``server.threads`` and access-log setting, its embedded worker
beside it) against the hello-world under gunicorn with those same workers, threads and
access log, at 16 clients alternating the catalog list and one dataset, then at 2 clients:
``python bench/catalog_load.py --shipped [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, free_port, make_instance, stop, write_json  # noqa: E402

READY_DEADLINE_S = 600.0

HELLO = """from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def hello():
    return jsonify(hello="world")
"""


def serve(
    app: str,
    *,
    env: dict[str, str],
    chdir: Path,
    port: int,
    workers: int,
    threads: int = 4,
    access_log: bool = False,
) -> subprocess.Popen:
    gunicorn = Path(sys.executable).parent / "gunicorn"
    argv = [str(gunicorn), "--workers", str(workers), "--worker-class", "gthread",
            "--threads", str(threads), "--bind", f"127.0.0.1:{port}", "--chdir", str(chdir),
            "--log-level", "warning", *(["--access-logfile", "-"] if access_log else []),
            app]  # fmt: skip
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def serve_market(*, env: dict[str, str], port: int) -> subprocess.Popen:
    """``market serve`` itself, as an operator starts it (its own gunicorn settings)."""
    market = Path(sys.executable).parent / "market"
    argv = [str(market), "serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def wait_ready(url: str, headers: dict[str, str], proc: subprocess.Popen) -> None:
    import httpx

    # Generous: on a busy machine the first answer (which imports Opacus) takes a while.
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url, headers=headers, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {READY_DEADLINE_S:.0f} s")


def load(
    url: str | list[str], headers: dict[str, str], *, seconds: float, concurrency: int
) -> dict:
    """Closed-loop load: each thread sends the next request when the last one returns
    (cycling through ``url`` when it is a list, each thread starting at its own place)."""
    import httpx

    urls = [url] if isinstance(url, str) else url
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        # At least one request per thread: on a busy machine a thread may start after `stop`.
        n = i
        with httpx.Client(headers=headers, timeout=120) as client:
            while (now := time.perf_counter()) < stop or not (latencies[i] or errors[i]):
                n += 1
                try:
                    ok = client.get(urls[n % len(urls)]).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies[i].append(time.perf_counter() - now)
                else:
                    errors[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    flat = sorted(x for part in latencies for x in part)
    if not flat:
        raise RuntimeError(f"no successful request to {url}")
    p99 = statistics.quantiles(flat, n=100, method="inclusive")[98] if len(flat) > 1 else flat[0]
    return {
        "requests": len(flat),
        "errors": sum(errors),
        "seconds": elapsed,
        "rps": len(flat) / elapsed,
        "p50_ms": 1000 * statistics.median(flat),
        "p99_ms": 1000 * p99,
        "max_ms": 1000 * flat[-1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per target")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per target")
    parser.add_argument("--datasets", type=int, default=5, help="datasets listed")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks it starts")
    parser.add_argument("--shipped", action="store_true",
                        help="`market serve` as shipped, 16 then 2 clients")  # fmt: skip
    parser.add_argument("--json", help="write the raw figures here")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.warmup, args.concurrency, args.datasets = 0.5, 0.2, 2, 1
        args.workers = 1
    if args.shipped:
        return shipped(args)

    inst = make_instance("bench-catalog-")
    ids = [inst.list_dataset(*_listing(i)) for i in range(args.datasets)]
    headers = dict(inst.buyer)
    home = inst.home
    inst.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKET_")}
    env["MARKET_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT)
    hello_dir = Path(tempfile.mkdtemp(prefix="bench-hello-"))
    (hello_dir / "hello_app.py").write_text(HELLO)
    market_targets = [("catalog search", "/api/v1/datasets"),
                      ("dataset page", f"/api/v1/datasets/{ids[0]}")]  # fmt: skip
    servers = [
        ("hello_app:app", hello_dir, [("hello", "/")], {}),
        ("market:create_app()", ROOT, market_targets, headers),
    ]
    results: list[dict[str, Any]] = []
    for app, chdir, targets, hdrs in servers:
        port = free_port()
        proc = serve(app, env=env, chdir=chdir, port=port, workers=args.workers)
        try:
            wait_ready(f"http://127.0.0.1:{port}{targets[0][1]}", hdrs, proc)
            for name, path in targets:
                url = f"http://127.0.0.1:{port}{path}"
                # A dataset page's first budget question imports Opacus (seconds under load):
                # wait for one answer before the timed warm-up.
                wait_ready(url, hdrs, proc)
                # the warm-up also lets each worker import Opacus (its first budget question)
                load(url, hdrs, seconds=args.warmup, concurrency=args.concurrency)
                r = load(url, hdrs, seconds=args.seconds, concurrency=args.concurrency)
                results.append({"target": name, "path": path.replace(ids[0], "<id>"), **r})
                print(f"  {name}: {r['rps']:.0f} req/s", file=sys.stderr)
        finally:
            stop(proc)

    hello = results[0]["rps"]
    print(f"gunicorn {args.workers} workers x 4 threads on 127.0.0.1; "
          f"{args.concurrency} client threads, "
          f"{args.seconds:g} s each, {args.datasets} datasets listed; "
          f"{os.cpu_count()} cores shared by client and server")  # fmt: skip
    print(f"{'target':<16}{'req/s':>9}{'vs hello':>10}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'requests':>10}{'errors':>8}")  # fmt: skip
    for r in results:
        r["ratio_to_hello"] = r["rps"] / hello
        print(f"{r['target']:<16}{r['rps']:>9.0f}{r['ratio_to_hello']:>10.3f}{r['p50_ms']:>9.1f}"
              f"{r['p99_ms']:>9.1f}{r['requests']:>10}{r['errors']:>8}")  # fmt: skip
    write_json(args.json, {"args": vars(args), "results": results})
    return 0


SHIPPED_CLIENTS = (16, 2)


def shipped(args: argparse.Namespace) -> int:
    """``market serve`` with its defaults against the hello-world under the same gunicorn
    settings: the list and one dataset alternating, at 16 and at 2 clients, in one run."""
    from market.config import load_settings

    server = load_settings().server
    inst = make_instance("bench-catalog-")
    ids = [inst.list_dataset(*_listing(i)) for i in range(args.datasets)]
    headers = dict(inst.buyer)
    home = inst.home
    inst.close()
    # MARKET_SERVER_* pass through (to compare other workers/threads, both apps get them).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MARKET_") or k.startswith("MARKET_SERVER_")
    }
    env["MARKET_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT)
    hello_dir = Path(tempfile.mkdtemp(prefix="bench-hello-"))
    (hello_dir / "hello_app.py").write_text(HELLO)
    paths = ["/api/v1/datasets", f"/api/v1/datasets/{ids[0]}"]
    results: list[dict[str, Any]] = []
    for name in ("hello", "market serve"):
        port = free_port()
        if name == "hello":
            proc = serve("hello_app:app", env=env, chdir=hello_dir, port=port,
                         workers=server.workers, threads=server.threads,
                         access_log=server.access_log)  # fmt: skip
            urls, hdrs = [f"http://127.0.0.1:{port}/"], {}
        else:
            proc = serve_market(env=env, port=port)
            urls, hdrs = [f"http://127.0.0.1:{port}{p}" for p in paths], headers
        try:
            if name != "hello":
                # The embedded worker calibrates at start (seconds of DP-SGD): measure the
                # steady state, once /healthz says the worker is up (its heartbeat follows).
                wait_ready(f"http://127.0.0.1:{port}/healthz", {}, proc)
            for url in urls:
                wait_ready(url, hdrs, proc)
            load(urls, hdrs, seconds=args.warmup, concurrency=SHIPPED_CLIENTS[0])
            for clients in SHIPPED_CLIENTS:
                r = load(urls, hdrs, seconds=args.seconds, concurrency=clients)
                results.append({"target": name, "clients": clients, **r})
                print(f"  {name}, {clients} clients: {r['rps']:.0f} req/s, "
                      f"p99 {r['p99_ms']:.0f} ms", file=sys.stderr)  # fmt: skip
        finally:
            stop(proc)
    hello = {r["clients"]: r["rps"] for r in results if r["target"] == "hello"}
    print(f"market serve as shipped: {server.workers} worker(s) x {server.threads} threads, "
          f"access log {'on' if server.access_log else 'off'}; hello-world under the same "
          f"gunicorn settings; catalog list and one dataset alternating; {args.seconds:g} s "
          f"each; {os.cpu_count()} cores shared by client and server")  # fmt: skip
    print(f"{'target':<14}{'clients':>8}{'req/s':>9}{'vs hello':>10}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'errors':>8}")  # fmt: skip
    for r in results:
        r["ratio_to_hello"] = r["rps"] / hello[r["clients"]]
        print(f"{r['target']:<14}{r['clients']:>8}{r['rps']:>9.0f}{r['ratio_to_hello']:>10.3f}"
              f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['errors']:>8}")  # fmt: skip
    write_json(args.json, {
        "args": vars(args), "shipped": {"workers": server.workers, "threads": server.threads,
                                        "access_log": server.access_log},
        "results": results,
    })  # fmt: skip
    return 0


def _listing(i: int) -> tuple[dict[str, Any], bytes, str]:
    body = "x,label\n" + "".join(f"{(j % 97) / 97:.3f},{'ab'[j % 2]}\n" for j in range(200))
    meta = {
        "title": f"Catalog load dataset {i} (bench)",
        "description": "Synthetic rows for the catalog load benchmark.",
        "licence": "CC0-1.0",
        "format": "csv",
        "label": "label",
        "columns": [
            {"name": "x", "type": "numeric", "min": 0.0, "max": 1.0},
            {"name": "label", "type": "categorical", "categories": ["a", "b"]},
        ],
        "privacy": {"epsilon_total": 10.0, "delta": 1e-5, "max_epsilon_per_run": 2.0},
        "price": {"per_run": "1.00", "per_epsilon": "0.50", "currency": "EUR"},
    }
    return meta, body.encode(), "text/csv"


if __name__ == "__main__":
    raise SystemExit(main())
