"""Outbound sync: create latency beyond the sandbox's own, and drain throughput against a per-row baseline.

    .venv/bin/python bench/bench_outbound.py [--creates 200] [--customers 2000] [--updates 6000] [--fast-unsafe]

The script starts a throwaway private PostgreSQL (or uses WARP_TEST_DATABASE_URL's server, creating and dropping
databases of its own) and the HubSpot sandbox in a process of its own (rate limit off: the shared request budget
is what limits us, set high here so the code's own cost is measured), then:

1. Create latency. The receiver runs under gunicorn (gthread, 1 worker x 4 threads). N times, one after the other:
   a bare `POST /crm/v3/objects/companies` to the sandbox (the baseline: HubSpot's own part, same properties),
   then `POST /v1/customers` (validation, BAN draw, savepoint insert, ledger, shared budget token, the same
   HubSpot create, link, field state, audit, commit). Reported: p50/p95 of both, the difference (what warp-sync
   adds) and the ratio.
2. Drain throughput. `--customers` customers linked to seeded sandbox companies get `--updates` plain-SQL updates
   (current_balance, status, company_name, contact_email mixed; the trigger merges them into one row per
   customer). `drain_queue` sends them; the baseline, on an identical fresh database, sends each queued row
   with its own PATCH (no batching, no reads). Reported: updates/s, rows/s and HubSpot calls per update (sandbox
   counters) for both, the ratio, and what HubSpot's real limit (80 bulk calls per 10 s) allows for each.

Everything the script starts is stopped and its databases dropped before it exits.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubspot_sandbox.control import SandboxControl  # noqa: E402
from warp_sync_pipeline.core.db import make_engine, with_database  # noqa: E402
from warp_sync_pipeline.core.field_state import FieldStateUpdate, StateValue, upsert_field_state  # noqa: E402
from warp_sync_pipeline.core.fields import load_rules  # noqa: E402
from warp_sync_pipeline.core.hubspot import BudgetSettings, HubSpotClient, RequestBudget  # noqa: E402
from warp_sync_pipeline.core.migrations import upgrade  # noqa: E402
from warp_sync_pipeline.core.normalize import to_hubspot, to_hubspot_iso  # noqa: E402
from warp_sync_pipeline.core.outbound import DrainSettings, drain_queue  # noqa: E402
from warp_sync_pipeline.devstack.localpg import _raw_connect, free_port, throwaway_server  # noqa: E402

TOKEN = "pat-bench-token"
API_TOKEN = "bench-admin-token"
# The shared budget stays on (every request takes a token in PostgreSQL, as in production) but high enough
# that it never makes us wait: the code's own cost is what is measured.
BENCH_REQUESTS_PER_10S = 1_000_000
REAL_BULK_CALLS_PER_10S = 80  # HubSpot's 100 per 10 s less the share reserved for creates


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def wait_for(url: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early")
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Database:
    def __init__(self, admin_url: str, label: str) -> None:
        self.admin_url = admin_url
        self.name = f"warp_bench_outbound_{label}_{uuid.uuid4().hex[:8]}"
        self._admin("CREATE DATABASE")
        self.url = with_database(admin_url, self.name)
        self.engine = make_engine(self.url, pool_size=5, max_overflow=5)
        upgrade(self.engine)

    def _admin(self, verb: str) -> None:
        conn = _raw_connect(self.admin_url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'{verb} "{self.name}"' + (" WITH (FORCE)" if verb.startswith("DROP") else ""))
        finally:
            conn.close()

    def drop(self) -> None:
        self.engine.dispose()
        self._admin("DROP DATABASE IF EXISTS")


# --- 1. create latency ---------------------------------------------------------------------------------------


def bench_creates(admin_url: str, sandbox_url: str, control: SandboxControl, count: int) -> dict[str, float]:
    db = Database(admin_url, "create")
    port = free_port()
    env = {**os.environ, "WARP_DATABASE_URL": db.url, "WARP_API_TOKEN": API_TOKEN, "HUBSPOT_BASE_URL": sandbox_url,
           "HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_REQUESTS_PER_10S": str(BENCH_REQUESTS_PER_10S)}
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread",
            "--workers", "1", "--threads", "4", "--keep-alive", "30", "--log-level", "warning",
            "--no-control-socket", "webhook_receiver:create_app()"]
    receiver = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", receiver, "gunicorn")
        api = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        direct = httpx.Client(base_url=sandbox_url, headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False)
        headers = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}
        # The warp_* properties first: HubSpot (and the sandbox) refuse a create naming a property that does not
        # exist, and the baseline's bare POST would otherwise come before the receiver's first create makes them.
        HubSpotClient(sandbox_url, TOKEN).ensure_properties()
        sandbox_ms: list[float] = []
        create_ms: list[float] = []
        for n in range(count + 10):  # the first 10 warm up connections and pools
            body = {"company_name": f"Bench Customer {n}", "status": "ACTIVE", "credit_limit": "2500.00",
                    "current_balance": "10.00", "services": {"voice": True, "messaging": False, "data": True},
                    "contact_email": f"billing{n}@bench.example", "payment_terms": "NET30"}
            props = {"name": body["company_name"], "warp_ban": f"ZT-8{n:08d}", "warp_status": "ACTIVE",
                     "warp_credit_limit": "2500.00", "warp_current_balance": "10.00", "warp_services": "voice;data",
                     "warp_contact_email": body["contact_email"], "warp_payment_terms": "NET30"}
            started = time.perf_counter()
            answer = direct.post("/crm/v3/objects/companies", json={"properties": props})
            middle = time.perf_counter()
            api.request("POST", "/v1/customers", body=json.dumps(body), headers=headers)
            response = api.getresponse()
            response.read()
            ended = time.perf_counter()
            if answer.status_code != 201 or response.status != 201:
                raise RuntimeError(f"create failed: sandbox {answer.status_code}, receiver {response.status}")
            if n >= 10:
                sandbox_ms.append((middle - started) * 1000)
                create_ms.append((ended - middle) * 1000)
        api.close()
        direct.close()
        calls = control.counters()["by_endpoint"].get("POST /crm/v3/objects/companies", 0)
        return {
            "sandbox_p50": percentile(sandbox_ms, 0.50), "sandbox_p95": percentile(sandbox_ms, 0.95),
            "create_p50": percentile(create_ms, 0.50), "create_p95": percentile(create_ms, 0.95),
            "creates": float(count), "sandbox_create_calls": float(calls),
        }
    finally:
        stop(receiver)
        db.drop()


# --- 2. drain throughput -------------------------------------------------------------------------------------


def prepare_queue(db: Database, control: SandboxControl, customers: int, updates: int, seed: int) -> None:
    """Linked customers with agreed state, then `updates` plain-SQL changes spread over them."""
    rules = load_rules(db.engine.connect())
    agreed_at = datetime.now(UTC) - timedelta(hours=1)
    rows = [{"ban": f"ZT-7{seed:02d}{n:06d}", "company_name": f"Drain Co {n}", "status": "ACTIVE",
             "credit_limit": Decimal("1000.00"), "current_balance": Decimal("0.00"),
             "services": {"voice": True, "messaging": False, "data": False},
             "contact_email": f"ops{n}@drain.example", "payment_terms": "NET30"} for n in range(customers)]
    company_ids: list[str] = []
    for start in range(0, customers, 1000):
        company_ids += control.seed([
            {"properties": {rules.hubspot_property(f): to_hubspot(rules[f].spec, row[f]) for f in rules},
             "createdAt": to_hubspot_iso(agreed_at), "updatedAt": to_hubspot_iso(agreed_at)}
            for row in rows[start:start + 1000]
        ])
    with db.engine.begin() as conn:
        ids = conn.execute(
            sa.text(
                "INSERT INTO customers (ban, company_name, status, credit_limit, current_balance, services, "
                "contact_email, payment_terms, external_ids, hubspot_link_status) "
                "SELECT * FROM unnest(CAST(:bans AS text[]), CAST(:names AS text[]), CAST(:statuses AS text[]), "
                "CAST(:limits AS numeric[]), CAST(:balances AS numeric[]), CAST(:services AS jsonb[]), "
                "CAST(:emails AS text[]), CAST(:terms AS text[]), CAST(:links AS jsonb[]), CAST(:linked AS text[])) "
                "RETURNING id"
            ),
            {"bans": [r["ban"] for r in rows], "names": [r["company_name"] for r in rows],
             "statuses": [r["status"] for r in rows], "limits": [r["credit_limit"] for r in rows],
             "balances": [r["current_balance"] for r in rows], "services": [json.dumps(r["services"]) for r in rows],
             "emails": [r["contact_email"] for r in rows], "terms": [r["payment_terms"] for r in rows],
             "links": [json.dumps({"hubspot_company_id": c}) for c in company_ids], "linked": ["linked"] * customers},
        ).scalars().all()
        upsert_field_state(conn, [
            FieldStateUpdate(cid, f, agreed=StateValue(row[f], agreed_at), warp=StateValue(row[f], agreed_at),
                             hubspot=StateValue(row[f], agreed_at))
            for cid, row in zip(ids, rows, strict=True) for f in rules
        ])
    rng = random.Random(seed)
    with db.engine.begin() as conn:
        for n in range(updates):
            customer = ids[rng.randrange(customers)]
            kind = n % 4
            if kind == 0:
                conn.execute(sa.text("UPDATE customers SET current_balance = :v WHERE id = :id"),
                             {"v": Decimal(n) / 4, "id": customer})
            elif kind == 1:
                conn.execute(sa.text("UPDATE customers SET status = :v WHERE id = :id"),
                             {"v": rng.choice(["ACTIVE", "SUSPENDED", "CLOSED"]), "id": customer})
            elif kind == 2:
                conn.execute(sa.text("UPDATE customers SET company_name = :v WHERE id = :id"),
                             {"v": f"Renamed {n}", "id": customer})
            else:
                conn.execute(sa.text("UPDATE customers SET contact_email = :v WHERE id = :id"),
                             {"v": f"new{n}@drain.example", "id": customer})


def client_for(db: Database, sandbox_url: str) -> HubSpotClient:
    budget = RequestBudget(db.engine, BudgetSettings(requests_per_window=BENCH_REQUESTS_PER_10S))
    return HubSpotClient(sandbox_url, TOKEN, budget=budget, time_budget_s=120, request_timeout_s=30)


def per_row_baseline(db: Database, client: HubSpotClient) -> int:
    """The naive drain: each pending row's fields sent with one PATCH of its own, then marked done."""
    rules = load_rules(db.engine.connect())
    with db.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT q.id, q.fields, c.external_ids ->> 'hubspot_company_id' AS company, c.company_name, c.status, "
            "c.current_balance, c.contact_email FROM hubspot_sync_queue q JOIN customers c ON c.id = q.customer_id "
            "WHERE q.status = 'pending' ORDER BY q.id")).mappings().all()
    for row in rows:
        props = {rules.hubspot_property(f): to_hubspot(rules[f].spec, row[f]) for f in row["fields"]}
        client.update_company(row["company"], props)
        with db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE hubspot_sync_queue SET status = 'done', finished_at = now() WHERE id = :id"),
                         {"id": row["id"]})
    return len(rows)


def bench_drain(admin_url: str, sandbox_url: str, control: SandboxControl, customers: int, updates: int,
                baseline: bool) -> dict[str, float]:
    db = Database(admin_url, "baseline" if baseline else "drain")
    client = client_for(db, sandbox_url)
    try:
        control.reset()
        HubSpotClient(sandbox_url, TOKEN).ensure_properties()
        prepare_queue(db, control, customers, updates, seed=7)
        with db.engine.connect() as conn:
            queued = conn.execute(sa.text("SELECT count(*) FROM hubspot_sync_queue WHERE status = 'pending'")).scalar_one()
        control.reset_counters()
        started = time.perf_counter()
        if baseline:
            sent_rows = per_row_baseline(db, client)
        else:
            report = drain_queue(db.engine, client, settings=DrainSettings(claim_size=500, backoff_s=0))
            if report.succeeded != queued:
                raise RuntimeError(f"drain finished {report.succeeded} of {queued} rows: {report.counts()}")
            sent_rows = report.succeeded
        elapsed = time.perf_counter() - started
        calls = sum(n for name, n in control.counters()["by_endpoint"].items() if "/crm/" in name)
        return {"seconds": elapsed, "rows": float(sent_rows), "updates": float(updates), "calls": float(calls),
                "updates_per_s": updates / elapsed, "rows_per_s": sent_rows / elapsed, "calls_per_update": calls / updates}
    finally:
        client.close()
        db.drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creates", type=int, default=200)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--updates", type=int, default=6000)
    parser.add_argument("--fast-unsafe", action="store_true", help="private cluster without fsync")
    args = parser.parse_args()

    with throwaway_server("bench", fast_unsafe=args.fast_unsafe) as (admin_url, durability):
        return run(args, admin_url, durability)


def run(args: argparse.Namespace, admin_url: str, durability: str) -> int:
    sandbox_port = free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "warp_sync_pipeline.cli", "sandbox", "--port", str(sandbox_port), "--rate-limit", "0",
         "--search-per-second", "0"],
        cwd=REPO, env={**os.environ, "HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_CLIENT_SECRET": "bench-secret"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_for(f"{sandbox_url}/_sandbox/config", sandbox, "sandbox")
        control = SandboxControl(sandbox_url)
        print(f"# outbound: Python {platform.python_version()}, {os.cpu_count()} CPUs, {durability}; "
              f"load average before: {os.getloadavg()[0]:.1f}")
        control.reset()
        created = bench_creates(admin_url, sandbox_url, control, args.creates)
        print(f"\n## create latency ({args.creates} creates, one at a time; receiver under gunicorn)\n")
        print("| measure | p50 ms | p95 ms |")
        print("|---|---:|---:|")
        print(f"| sandbox's own create (baseline) | {created['sandbox_p50']:.1f} | {created['sandbox_p95']:.1f} |")
        print(f"| POST /v1/customers | {created['create_p50']:.1f} | {created['create_p95']:.1f} |")
        print(f"| added by warp-sync | {created['create_p50'] - created['sandbox_p50']:.1f} | "
              f"{created['create_p95'] - created['sandbox_p95']:.1f} |")
        print(f"\nratio POST /v1/customers / sandbox create (p50): {created['create_p50'] / created['sandbox_p50']:.1f}x; "
              f"HubSpot creates made by the receiver: {created['sandbox_create_calls'] - args.creates - 10:.0f} "
              f"for {args.creates + 10} customers")

        drain = bench_drain(admin_url, sandbox_url, control, args.customers, args.updates, baseline=False)
        naive = bench_drain(admin_url, sandbox_url, control, args.customers, args.updates, baseline=True)
        print(f"\n## drain throughput ({args.updates} updates over {args.customers} customers)\n")
        print("| drain | rows | seconds | updates/s | rows/s | HubSpot calls | calls/update | "
              "updates/s at HubSpot's 80 bulk calls/10 s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for label, result in (("drain_queue (batch read + batch update)", drain), ("per-row PATCH (baseline)", naive)):
            ceiling = REAL_BULK_CALLS_PER_10S / 10 / result["calls_per_update"]
            print(f"| {label} | {result['rows']:.0f} | {result['seconds']:.2f} | {result['updates_per_s']:,.0f} | "
                  f"{result['rows_per_s']:,.0f} | {result['calls']:.0f} | {result['calls_per_update']:.4f} | "
                  f"{ceiling:,.0f} |")
        print(f"\nratio (updates/s, drain / baseline): {drain['updates_per_s'] / naive['updates_per_s']:.1f}x; "
              f"HubSpot calls per update: {naive['calls_per_update'] / drain['calls_per_update']:.0f}x fewer")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        stop(sandbox)
    return 0


if __name__ == "__main__":
    sys.exit(main())
