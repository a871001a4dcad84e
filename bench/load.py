"""A bounded load test of ``market serve``: mixed catalog reads, dataset pages and quotes.

``--clients`` threads (16), each with its own keep-alive ``httpx.Client`` and a researcher's
API token, send requests back to back for ``--seconds`` (60) after a warm-up, each request
drawn at random (seeded) from the mix: 40% catalog search (``GET /api/v1/datasets``), 40%
dataset page (``GET /api/v1/datasets/<id>``, with its composed budget), 20% quote
(``POST /api/v1/quotes``: a budget check and a row written). Reported per operation and in
all: requests, errors (any answer other than the expected 200/201, or no answer: must be 0)
and p50/p99 latency.

Backends, one after the other, each a fresh instance made by ``market init``:
``embedded``  the default: SQLite files and the SQLite queue, ``market serve`` with its
              supervised embedded worker.
``postgres``  a scratch database on PostgreSQL (``--postgres``, created and dropped here) and
              the Redis queue (``--redis``), ``market serve`` plus one ``market worker``.
              Skipped with a note when either server does not answer.

The load generator shares the machine with the server, so absolute figures are a floor.
Run ``python bench/load.py [--seconds 60] [--clients 16] [--backends embedded,postgres]
[--smoke] [--json OUT]``; exit status 1 when any request failed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PASSWORD, ROOT, free_port, stop, write_json  # noqa: E402

MIX = (("catalog", 0.4), ("dataset", 0.4), ("quote", 0.2))
READY_DEADLINE_S = 600.0


def _env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKET_")}
    env.update(MARKET_HOME=str(home), PYTHONPATH=str(ROOT), **extra)
    return env


def _market(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "market.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"market {' '.join(args)} failed: {done.stderr[-2000:]}")


def _listing(i: int) -> tuple[dict[str, Any], bytes]:
    body = "x,y,label\n" + "".join(
        f"{(j % 97) / 97:.3f},{(j * 7 % 89) / 89:.3f},{'ab'[j % 2]}\n" for j in range(400)
    )
    meta = {
        "title": f"Load test dataset {i} (bench)",
        "description": "Synthetic rows for the load test.",
        "licence": "CC0-1.0",
        "format": "csv",
        "label": "label",
        "columns": [
            {"name": "x", "type": "numeric", "min": 0.0, "max": 1.0},
            {"name": "y", "type": "numeric", "min": 0.0, "max": 1.0},
            {"name": "label", "type": "categorical", "categories": ["a", "b"]},
        ],
        "privacy": {"epsilon_total": 10.0, "delta": 1e-5, "max_epsilon_per_run": 2.0},
        "price": {"per_run": "1.00", "per_epsilon": "0.50", "currency": "EUR"},
    }
    return meta, body.encode()


def prepare(home: Path, extra: dict[str, str], datasets: int) -> tuple[list[str], str]:
    """``market init``, two accounts, ``datasets`` listings; the researcher's token."""
    import httpx  # noqa: F401 - fail early when the client library is missing

    from market import create_app
    from market.accounts import services as accounts

    env = _env(home, extra)
    _market(["init"], env)
    overrides: dict[str, Any] = {"home": str(home)}
    if "MARKET_DATABASE_URL" in extra:
        overrides["database"] = {"url": extra["MARKET_DATABASE_URL"]}
    if extra.get("MARKET_QUEUE_BACKEND") == "redis":
        overrides["queue"] = {"backend": "redis", "redis_url": extra["MARKET_QUEUE_REDIS_URL"]}
    app = create_app(overrides)
    market = app.extensions["market"]
    client = app.test_client()
    with market.database.write() as session:
        for email, role in (("owner@load.example", "owner"), ("buyer@load.example", "researcher")):
            accounts.create_user(
                session, email=email, role=role, password=PASSWORD, passwords=market.passwords
            )

    def token(email: str) -> dict[str, str]:
        body = {"email": email, "password": PASSWORD}
        answer = client.post("/api/v1/tokens", json=body).get_json()
        return {"Authorization": f"Bearer {answer['token']}"}

    owner = token("owner@load.example")
    ids = []
    for i in range(datasets):
        meta, body = _listing(i)
        draft = client.post("/api/v1/datasets", json=meta, headers=owner)
        if draft.status_code >= 400:
            raise RuntimeError(f"draft refused: {draft.get_json()}")
        listed = client.put(
            f"/api/v1/datasets/{draft.get_json()['id']}/file",
            data=body,
            headers={**owner, "Content-Type": "text/csv"},
        )
        if listed.status_code >= 400:
            raise RuntimeError(f"upload refused: {listed.get_json()}")
        ids.append(str(listed.get_json()["id"]))
    buyer = token("buyer@load.example")["Authorization"]
    market.database.dispose()
    return ids, buyer


def wait_ready(base: str, auth: str, dataset_id: str, procs: list[subprocess.Popen]) -> None:
    """Until a catalog page, a dataset page and a quote all answer (the first budget question
    imports Opacus): a condition with a generous deadline, never a fixed sleep."""
    import httpx

    deadline = time.monotonic() + READY_DEADLINE_S
    headers = {"Authorization": auth}
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a server process exited with status {proc.returncode}")
        try:
            with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
                if (
                    client.get("/api/v1/datasets").status_code == 200
                    and client.get(f"/api/v1/datasets/{dataset_id}").status_code == 200
                    and client.post("/api/v1/quotes", json=quote_body(dataset_id)).status_code
                    == 201
                ):
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{base} not ready in {READY_DEADLINE_S:.0f} s")


def quote_body(dataset_id: str) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "model": {"template": "logistic_regression"},
        "epsilon": 1.0,
        "epochs": 5,
        "batch_size": 64,
        "learning_rate": 0.1,
    }


def run_load(
    base: str, auth: str, ids: list[str], *, seconds: float, clients: int, seed: int
) -> dict[str, Any]:
    """Closed loop: each client sends its next request when the last one returns. Every
    client sends at least one request, however late its thread starts on a busy machine."""
    import httpx

    names = [name for name, _ in MIX]
    weights = [weight for _, weight in MIX]
    latencies: dict[str, list[float]] = {name: [] for name in names}
    errors: dict[str, int] = dict.fromkeys(names, 0)
    samples: list[str] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client_loop(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        mine: dict[str, list[float]] = {name: [] for name in names}
        failed: dict[str, int] = dict.fromkeys(names, 0)
        notes: list[str] = []
        sent = 0
        with httpx.Client(base_url=base, headers={"Authorization": auth}, timeout=120) as c:
            while sent == 0 or time.perf_counter() < stop_at:
                op = rng.choices(names, weights)[0]
                dataset = rng.choice(ids)
                started = time.perf_counter()
                try:
                    if op == "catalog":
                        r = c.get("/api/v1/datasets", params={"page": 1})
                        ok = r.status_code == 200
                    elif op == "dataset":
                        r = c.get(f"/api/v1/datasets/{dataset}")
                        ok = r.status_code == 200
                    else:
                        r = c.post("/api/v1/quotes", json=quote_body(dataset))
                        ok = r.status_code == 201
                    detail = f"{op}: {r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, detail = False, f"{op}: {type(exc).__name__} {exc}"
                sent += 1
                if ok:
                    mine[op].append(time.perf_counter() - started)
                else:
                    failed[op] += 1
                    if len(notes) < 3:
                        notes.append(detail)
        with lock:
            for name in names:
                latencies[name].extend(mine[name])
                errors[name] += failed[name]
            samples.extend(notes)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started

    def figures(values: list[float], failed: int) -> dict[str, Any]:
        values = sorted(values)
        out: dict[str, Any] = {"requests": len(values) + failed, "errors": failed}
        if values:
            p99 = (
                statistics.quantiles(values, n=100, method="inclusive")[98]
                if len(values) > 1
                else values[0]
            )
            out.update(
                p50_ms=1000 * statistics.median(values), p99_ms=1000 * p99, max_ms=1000 * values[-1]
            )
        return out

    every = [x for name in names for x in latencies[name]]
    total = figures(every, sum(errors.values()))
    total["seconds"] = elapsed
    total["rps"] = total["requests"] / elapsed
    return {
        "total": total,
        "operations": {name: figures(latencies[name], errors[name]) for name in names},
        "error_samples": samples[:10],
    }


def _postgres_database(admin_url: str) -> tuple[str, Any] | None:
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"market_load_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        reason = str(exc.orig).strip().splitlines()[0]
        print(f"note: PostgreSQL at {admin_url} unavailable ({reason}): skipped", file=sys.stderr)
        return None
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    return url, (admin, name)


def _redis_ok(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url)
        client.ping()
        client.flushdb()
        return True
    except redis.exceptions.RedisError as exc:
        print(f"note: Redis at {url} unavailable ({exc}): skipped", file=sys.stderr)
        return False


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any] | None:
    home = Path(tempfile.mkdtemp(prefix=f"bench-load-{backend}-"))
    extra: dict[str, str] = {}
    cleanup = None
    if backend == "postgres":
        if not _redis_ok(args.redis):
            return None
        made = _postgres_database(args.postgres)
        if made is None:
            return None
        url, cleanup = made
        extra = {
            "MARKET_DATABASE_URL": url,
            "MARKET_QUEUE_BACKEND": "redis",
            "MARKET_QUEUE_REDIS_URL": args.redis,
        }
    procs: list[subprocess.Popen] = []
    log = (home / "serve.log").open("ab")
    try:
        ids, auth = prepare(home, extra, args.datasets)
        env = _env(home, extra)
        port = free_port()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "market.cli", "serve", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=log,
            )
        )
        if backend == "postgres":  # the Redis queue: workers run on their own
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "market.cli", "worker"], env=env, stdout=log, stderr=log
                )
            )
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, auth, ids[0], procs)
        run_load(base, auth, ids, seconds=args.warmup, clients=args.clients, seed=0)
        result = run_load(base, auth, ids, seconds=args.seconds, clients=args.clients, seed=1)
        result["backend"] = backend
        return result
    finally:
        for proc in procs:
            stop(proc)
        log.close()
        if cleanup is not None:
            admin, name = cleanup
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per backend")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--datasets", type=int, default=5)
    parser.add_argument("--backends", default="embedded,postgres")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "MARKET_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
        help="an admin URL: a scratch database is created there and dropped afterwards",
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks it starts")
    parser.add_argument("--json", help="write the raw figures here")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.warmup, args.clients, args.datasets = 1.0, 0.2, 2, 1
        args.backends = "embedded"

    results = []
    for backend in args.backends.split(","):
        r = run_backend(backend.strip(), args)
        if r is not None:
            results.append(r)
    if not results:
        print("no backend could be measured", file=sys.stderr)
        return 1

    print(f"market serve (gunicorn 1 worker x 8 threads); {args.clients} clients, "
          f"{args.seconds:g} s per backend, {args.datasets} datasets; mix "
          + ", ".join(f"{n} {w:.0%}" for n, w in MIX)
          + f"; {os.cpu_count()} cores shared by client and server")  # fmt: skip
    print(f"{'backend':<10}{'operation':<10}{'requests':>10}{'errors':>8}"
          f"{'p50 ms':>9}{'p99 ms':>9}")  # fmt: skip
    for r in results:
        rows = [*r["operations"].items(), ("all", r["total"])]
        for name, x in rows:
            p50, p99 = x.get("p50_ms", float("nan")), x.get("p99_ms", float("nan"))
            print(f"{r['backend']:<10}{name:<10}{x['requests']:>10}{x['errors']:>8}"
                  f"{p50:>9.1f}{p99:>9.1f}")  # fmt: skip
        for sample in r["error_samples"]:
            print(f"note: {r['backend']} error: {sample}", file=sys.stderr)
    write_json(args.json, {"args": vars(args), "results": results})
    return 1 if any(r["total"]["errors"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
