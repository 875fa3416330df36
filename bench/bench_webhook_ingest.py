"""Webhook ingest under gunicorn: one-statement batch store vs one INSERT per event, same run.

    .venv/bin/python bench/bench_webhook_ingest.py [--seconds 10] [--open-seconds 15] [--senders 10]
        [--worker-class gthread --workers 2 --threads 8] [--fast-unsafe]

For each store strategy ("batch", the receiver's; "per_event", the baseline) the script creates a
database on the test PostgreSQL (WARP_TEST_DATABASE_URL, or a throwaway private cluster it starts
and removes), migrates it, starts gunicorn on a free loopback port and measures:

- closed loop: `--senders` threads each POST signed 100-event batches back to back for `--seconds`:
  stored events per second, p50/p99 acknowledgement time;
- open loop: batches offered at a fixed `--rate` (default 20/s = 2,000 events/s) for `--open-seconds`,
  latency measured from each batch's scheduled send time (so a slow server cannot hide its queue);
- nothing lost: the table's row count must equal the events acknowledged (every event is distinct).

Load is bounded in time and count (`--max-batches`) and stays on loopback. Everything the script
starts is stopped, and its databases dropped, before it exits.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import itertools
import json
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from warp_sync_pipeline.core.db import make_engine, with_database  # noqa: E402
from warp_sync_pipeline.core.migrations import upgrade  # noqa: E402
from warp_sync_pipeline.devstack.localpg import _raw_connect, free_port, throwaway_server  # noqa: E402

ROUTE = "/v1/webhooks/hubspot/company"
EVENTS_PER_BATCH = 100
PROPERTY_CHANGE = (
    '{"eventId":%d,"subscriptionId":2345678,"portalId":62515,"appId":54321,"occurredAt":%d,'
    '"subscriptionType":"company.propertyChange","attemptNumber":0,"objectId":%d,'
    '"propertyName":"warp_credit_limit","propertyValue":"%d","changeSource":"CRM_UI","sourceId":"userId:45678"}'
)
CREATION = (
    '{"eventId":%d,"subscriptionId":2345679,"portalId":62515,"appId":54321,"occurredAt":%d,'
    '"subscriptionType":"company.creation","attemptNumber":0,"objectId":%d,"changeSource":"CRM_UI"}'
)


# -- load ----------------------------------------------------------------------------------------------
class Batches:
    """Distinct HubSpot-format batches (19 property changes to 1 creation), signed at send time."""

    def __init__(self, secret: str, origin: str) -> None:
        self.secret = secret.encode()
        self.signed_uri = (origin + ROUTE).encode()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def next_body(self) -> bytes:
        with self._lock:
            first = next(self._ids) * EVENTS_PER_BATCH
        now = int(time.time() * 1000)
        events = [
            (CREATION % (n, now, 10_000_000 + n)) if n % 20 == 0 else (PROPERTY_CHANGE % (n, now, 1_000 + n % 5_000, n))
            for n in range(first, first + EVENTS_PER_BATCH)
        ]
        return ("[" + ",".join(events) + "]").encode()

    def headers(self, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time() * 1000))
        source = b"POST" + self.signed_uri + body + timestamp.encode()
        signature = base64.b64encode(hmac.new(self.secret, source, hashlib.sha256).digest()).decode()
        return {"Content-Type": "application/json", "X-HubSpot-Signature-v3": signature,
                "X-HubSpot-Request-Timestamp": timestamp, "Content-Length": str(len(body))}


@dataclass
class Results:
    latencies_ms: list[float] = field(default_factory=list)
    acknowledged_events: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, latency_ms: float, status: int, received: int) -> None:
        with self.lock:
            self.latencies_ms.append(latency_ms)
            if status == 200:
                self.acknowledged_events += received
            else:
                self.failures[str(status)] = self.failures.get(str(status), 0) + 1


class Sender:
    """One keep-alive HTTP connection (reconnects after an error)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, int]:
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.conn.request("POST", ROUTE, body=body, headers=headers)
                response = self.conn.getresponse()
                payload = response.read()
                # Every event of a batch is distinct, so an acknowledged batch must leave all of them stored.
                received = json.loads(payload)["data"]["received"] if response.status == 200 else 0
                return response.status, received
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    return 599, 0
        return 599, 0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def closed_loop(port: int, batches: Batches, senders: int, seconds: float, max_batches: int) -> tuple[Results, float]:
    results = Results()
    budget = itertools.count()
    deadline = time.monotonic() + seconds

    def run() -> None:
        sender = Sender(port)
        try:
            while time.monotonic() < deadline and next(budget) < max_batches:
                body = batches.next_body()
                headers = batches.headers(body)
                start = time.perf_counter()
                status, received = sender.post(body, headers)
                results.record((time.perf_counter() - start) * 1000, status, received)
        finally:
            sender.close()

    threads = [threading.Thread(target=run) for _ in range(senders)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - started


def open_loop(port: int, batches: Batches, rate: float, seconds: float, pool: int) -> tuple[Results, float]:
    results = Results()
    local = threading.local()
    senders: list[Sender] = []

    def fire(scheduled: float) -> None:
        if not hasattr(local, "sender"):
            local.sender = Sender(port)
            senders.append(local.sender)
        body = batches.next_body()
        status, received = local.sender.post(body, batches.headers(body))
        results.record((time.perf_counter() - scheduled) * 1000, status, received)

    total = int(rate * seconds)
    with ThreadPoolExecutor(max_workers=pool) as executor:
        start = time.perf_counter() + 0.05
        for k in range(total):
            scheduled = start + k / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            executor.submit(fire, scheduled)
    elapsed = time.perf_counter() - start
    for sender in senders:
        sender.close()
    return results, elapsed


# -- stack -----------------------------------------------------------------------------------------------
class Gunicorn:
    def __init__(self, database_url: str, secret: str, strategy: str, args: argparse.Namespace) -> None:
        self.port = free_port()
        factory = f"webhook_receiver:create_app({{'WEBHOOK_STORE_STRATEGY': '{strategy}'}})"
        env = {**os.environ, "WARP_DATABASE_URL": database_url, "HUBSPOT_CLIENT_SECRET": secret}
        env.pop("WARP_PUBLIC_BASE_URL", None)
        argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}",
                "--worker-class", args.worker_class, "--workers", str(args.workers), "--threads", str(args.threads),
                "--keep-alive", "30", "--log-level", "warning", "--no-control-socket", factory]
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def admin_connection(url: str):  # noqa: ANN201 - a psycopg2 connection
    conn = _raw_connect(url)
    conn.autocommit = True
    return conn


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


@dataclass
class Phase:
    label: str
    events_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    batches: int
    acknowledged: int
    failures: dict[str, int]


def measure(strategy: str, admin_url: str, args: argparse.Namespace) -> tuple[Phase, Phase, int, int]:
    name = f"warp_bench_{strategy}_{uuid.uuid4().hex[:8]}"
    conn = admin_connection(admin_url)
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    try:
        engine = make_engine(url, poolclass=sa.pool.NullPool)
        upgrade(engine)
        secret = secrets.token_hex(16)
        server = Gunicorn(url, secret, strategy, args)
        try:
            batches = Batches(secret, f"http://127.0.0.1:{server.port}")
            closed_loop(server.port, batches, args.senders, 1.0, 50)  # warm-up: connections, pools, caches
            with engine.begin() as c:
                warm = c.execute(sa.text("SELECT count(*) FROM hubspot_webhook_events")).scalar_one()

            results, elapsed = closed_loop(server.port, batches, args.senders, args.seconds, args.max_batches)
            with engine.begin() as c:
                after_closed = c.execute(sa.text("SELECT count(*) FROM hubspot_webhook_events")).scalar_one()
            closed = Phase("closed", (after_closed - warm) / elapsed, percentile(results.latencies_ms, 0.50),
                           percentile(results.latencies_ms, 0.99), max(results.latencies_ms, default=0),
                           len(results.latencies_ms), results.acknowledged_events, results.failures)

            results, elapsed = open_loop(server.port, batches, args.rate, args.open_seconds, args.open_pool)
            with engine.begin() as c:
                final = c.execute(sa.text("SELECT count(*) FROM hubspot_webhook_events")).scalar_one()
            opened = Phase("open", (final - after_closed) / elapsed, percentile(results.latencies_ms, 0.50),
                           percentile(results.latencies_ms, 0.99), max(results.latencies_ms, default=0),
                           len(results.latencies_ms), results.acknowledged_events, results.failures)
            expected = warm + closed.acknowledged + opened.acknowledged
            return closed, opened, final, expected
        finally:
            server.stop()
            engine.dispose()
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="closed-loop duration per strategy")
    parser.add_argument("--max-batches", type=int, default=5000, help="closed-loop cap per strategy")
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--rate", type=float, default=20.0, help="open-loop batches per second")
    parser.add_argument("--open-seconds", type=float, default=15.0)
    parser.add_argument("--open-pool", type=int, default=32, help="open-loop sender threads (in flight at most)")
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--fast-unsafe", action="store_true",
                        help="private cluster without fsync/synchronous_commit (as the test suite runs)")
    parser.add_argument("--strategies", default="batch,per_event")
    args = parser.parse_args()

    with throwaway_server("bench", fast_unsafe=args.fast_unsafe) as (admin_url, durability):
        return run(args, admin_url, durability)


def run(args: argparse.Namespace, admin_url: str, durability: str) -> int:
    print(f"# webhook ingest: Python {platform.python_version()}, {os.cpu_count()} CPUs, {durability}; gunicorn "
          f"{args.worker_class} {args.workers} workers x {args.threads} threads; {args.senders} senders; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    rows = []
    closed_rates = {}
    for strategy in args.strategies.split(","):
        closed, opened, final, expected = measure(strategy, admin_url, args)
        closed_rates[strategy] = closed.events_per_s
        lost = expected - final
        for phase in (closed, opened):
            offered = (f"closed, {args.senders} senders" if phase.label == "closed"
                       else f"open, {args.rate:g} batches/s")
            rows.append(f"| {strategy} | {offered} | {phase.batches} | {phase.events_per_s:,.0f} | "
                        f"{phase.p50_ms:.1f} | {phase.p99_ms:.1f} | {phase.max_ms:.1f} | "
                        f"{sum(phase.failures.values())} | {lost} |")
    print("| store | load | batches | events/s stored | p50 ms | p99 ms | max ms | non-200 | lost |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    if "batch" in closed_rates and "per_event" in closed_rates and closed_rates["per_event"]:
        print(f"\nratio (closed loop, batch / per_event): {closed_rates['batch'] / closed_rates['per_event']:.1f}x")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
