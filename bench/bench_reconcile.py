"""The nightly reconciliation, measured.

    .venv/bin/python bench/bench_reconcile.py diff [--customers 1000000] [--scalar-sample 20000] [--repeat 3]
    .venv/bin/python bench/bench_reconcile.py e2e  [--customers 100000]
    .venv/bin/python bench/bench_reconcile.py preview [--customers 1000000] [--repeat 5]

diff: diff and plan (compute_differences + build_plan) for --customers customers x 8 fields, from two DataFrames
built exactly as the pull assets hold them (WARP's `column::text`, HubSpot's strings: amounts as HubSpot keeps
numbers, "1500.5"; services ";"-joined; HubSpot's rows in another order). Per field about 2% changed in WARP
only, 2% in HubSpot only, 0.5% on both sides, 0.5% never agreed, 0.2% invalid in HubSpot; 10% of WARP's emails
in mixed case. The baseline, in the same run: the scalar path row by row (company found by a dict lookup, each
field decided by decide(), which normalises both values itself) over the first --scalar-sample customers,
extrapolated linearly; both are checked to plan the same rows on that sample. Peak memory: the growth of the
peak resident set during one diff+plan (Linux, VmHWM reset first) and tracemalloc's peak of a further run.

e2e: the eight assets materialized in process (Parquet IO manager, in-process executor, as reconciliation_job
runs them) over --customers customers seeded by demo_seed (every kind of difference, each case
customers // 1000 times), against a private PostgreSQL (fsync on) and the sandbox in a process of its own with
its rate limit off. Wall time per step and in all, peak memory of this process during the run, and HubSpot
calls from the sandbox's counters against ceil(N/100) + ceil(D/50) + 2 ceil(W/100).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from warp_sync_pipeline.core.decision import AGREED, Action, Observed, decide  # noqa: E402
from warp_sync_pipeline.core.field_state import StateValue, warp_changed_at  # noqa: E402
from warp_sync_pipeline.core.fields import SEEDED_RULES, FieldRules  # noqa: E402
from warp_sync_pipeline.core.reconcile import build_plan, compute_differences, history_needed  # noqa: E402
from warp_sync_pipeline.core.reconcile.frames import (  # noqa: E402
    ATTR_PULLED_AT,
    BAN,
    COMPANY_ID,
    COMPANY_UPDATED_AT,
    CUSTOMER_CREATED_AT,
    CUSTOMER_ID,
    CUSTOMER_UPDATED_AT,
    KIND,
    LINK_STATUS,
    OPEN_CONFLICTS,
    STATE_WARP,
    STATE_WARP_CHANGED_AT,
    WARP_RAW,
    col,
    rules_to_attr,
)
from warp_sync_pipeline.core.reconcile.history import CHANGED_AT, PROPERTY  # noqa: E402
from warp_sync_pipeline.core.reconcile.plan import ACTION, FIELD, REASON  # noqa: E402
from warp_sync_pipeline.core.reconcile.pull import needs_change_times  # noqa: E402

RULES = FieldRules(SEEDED_RULES)
SERVICES = [("", '{"data": false, "voice": false, "messaging": false}'),
            ("voice", '{"data": false, "voice": true, "messaging": false}'),
            ("voice;data", '{"data": true, "voice": true, "messaging": false}'),
            ("voice;messaging;data", '{"data": true, "voice": true, "messaging": true}')]
STATUSES = ["PENDING", "ACTIVE", "SUSPENDED", "CLOSED"]
TERMS = ["", "PREPAID", "NET15", "NET30", "NET45", "NET60"]
INVALID_HUBSPOT = {"ban": "ZT-bogus", "company_name": "", "status": "DORMANT", "credit_limit": "12.345",
                   "current_balance": "abc", "services": "fax", "payment_terms": "NET90",
                   "contact_email": "not-an-email"}


# --- memory helpers (Linux) ---------------------------------------------------------------------------------


def _status_kb(key: str) -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # VmHWM (peak RSS) back to the current RSS
        return True
    except OSError:
        return False


# --- the two frames as the pulls hold them ------------------------------------------------------------------


def _s(values: np.ndarray | pd.Series) -> pd.Series:
    return pd.Series(values).astype("str")


def _forms(field: str, ids: np.ndarray) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(WARP text, HubSpot string, comparable text) of value number `ids` for one field."""
    n = pd.Series(ids)
    if field == "ban":
        text = "ZT-" + _s(n % 1_000_000_000).str.zfill(9)
        return text, text, text
    if field == "company_name":
        text = "Customer " + _s(n) + " Telecom"
        return text, text, text
    if field == "contact_email":
        text = "ops" + _s(n) + "@example.com"
        return text, text, text
    if field in ("credit_limit", "current_balance"):
        cents = (n * 7919) % 100_000_000
        warp = _s(cents // 100) + "." + _s(cents % 100).str.zfill(2)  # numeric(14,2)::text
        whole, frac = _s(cents // 100), _s(cents % 100).str.zfill(2).str.rstrip("0")
        hubspot = whole.where(frac == "", whole + "." + frac)  # HubSpot keeps numbers: 1500.50 reads 1500.5
        return warp, hubspot.astype("str"), warp
    if field == "services":
        pick = (n % len(SERVICES)).to_numpy()
        listed = np.array([s for s, _ in SERVICES], dtype=object)[pick]
        json = np.array([j for _, j in SERVICES], dtype=object)[pick]
        return _s(json), _s(listed), _s(listed)
    vocab = STATUSES if field == "status" else TERMS
    text = _s(np.array(vocab, dtype=object)[(n % len(vocab)).to_numpy()])
    return text, text, text


def build_pulls(n: int, seed: int = 11, drift: float = 0.052, aligned: bool = True, rules: FieldRules | None = None
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`drift`: share of each field's values that differ in some way (the mix below, scaled). `rules`: what the
    pull serves (default RULES; a preview's pull reads change times for the draft's LATEST_WINS fields too)."""
    rules = rules or RULES
    rng = np.random.default_rng(seed)
    base = np.arange(n, dtype=np.int64) * 4
    company_ids = _s(40_000_000_001 + np.arange(n))
    epoch = np.datetime64("2026-01-01T00:00:00", "ms").astype(np.int64)

    def times(spread_ms: int) -> pd.Series:
        return pd.Series(pd.to_datetime(epoch + rng.integers(0, spread_ms, n), unit="ms", utc=True))

    warp: dict[str, pd.Series] = {
        CUSTOMER_ID: _s(pd.Series(np.arange(n)).map("00000000-0000-4000-8000-{:012d}".format)),
        COMPANY_ID: company_ids,
        LINK_STATUS: _s(np.full(n, "linked", dtype=object)),
        CUSTOMER_UPDATED_AT: times(86_400_000),
        CUSTOMER_CREATED_AT: times(3_600_000),
    }
    hubspot: dict[str, pd.Series] = {COMPANY_ID: company_ids, COMPANY_UPDATED_AT: times(86_400_000)}
    for field, rule in rules.items():
        roll = rng.random(n) * (0.052 / drift)  # per 5.2%: 2% WARP only, 2% HubSpot only, 0.5% both, ...
        warp_moved = (roll < 0.02) | ((roll >= 0.04) & (roll < 0.045))
        hub_moved = (roll >= 0.02) & (roll < 0.045)
        never_agreed = (roll >= 0.045) & (roll < 0.05)  # ... 0.5% never agreed, 0.2% invalid in HubSpot
        invalid = (roll >= 0.05) & (roll < 0.052)
        if field == "ban":  # BANs do not move in WARP; drift in HubSpot only
            warp_moved[:] = False
        w_text, _, agreed = _forms(field, base)
        w_new, _, _ = _forms(field, base + 1)
        _, h_text, _ = _forms(field, base)
        _, h_new, _ = _forms(field, base + 2)
        w = w_text.where(~warp_moved, w_new)
        if field == "contact_email":
            w = w.where(rng.random(n) >= 0.1, w.str.upper())
        h = h_text.where(~hub_moved, h_new).where(~invalid, INVALID_HUBSPOT[field])
        warp[col(field, WARP_RAW)] = w.astype("str")
        warp[col(field, AGREED)] = agreed.where(~never_agreed).astype("str")
        hubspot[rule.hubspot_property] = h.astype("str")
        if needs_change_times(rule):
            _, _, w_cmp = _forms(field, base + np.where(warp_moved, 1, 0))
            warp[col(field, STATE_WARP)] = w_cmp.astype("str")
            warp[col(field, STATE_WARP_CHANGED_AT)] = times(86_400_000)
    warp[BAN] = warp[col("ban", WARP_RAW)]
    # As the pull lists them: a few customers (0.05%) with a conflict waiting in review.
    in_review = rng.random(n) < 0.0005
    warp[OPEN_CONFLICTS] = _s(np.where(in_review, ",contact_email,", None)).astype("str")
    warp_df = pd.DataFrame(warp)
    # HubSpot lists companies by id, and the WARP pull holds customers in their company id's order: the two
    # frames arrive side by side (unaligned: HubSpot's rows shuffled, as if the pull had not sorted).
    hub_df = pd.DataFrame(hubspot)
    if not aligned:
        hub_df = hub_df.iloc[rng.permutation(n)].reset_index(drop=True)
    for frame in (warp_df, hub_df):
        frame.attrs = {ATTR_PULLED_AT: "2026-01-02T00:00:00+00:00", "rules": rules_to_attr(RULES)}
    return warp_df, hub_df


def synthetic_history(differences: pd.DataFrame, rules: FieldRules | None = None) -> pd.DataFrame:
    """What hubspot_property_history would hold: a change time per needed company and property."""
    ids, properties = history_needed(differences, rules or RULES)
    return history_rows(ids, properties)


def history_rows(ids: list[str], properties: list[str]) -> pd.DataFrame:
    """A change time for each of those companies and properties (what HubSpot's history read returns)."""
    rows = [(company, prop) for company in ids for prop in properties]
    return pd.DataFrame({
        COMPANY_ID: pd.Series([c for c, _ in rows], dtype="str"),
        PROPERTY: pd.Series([p for _, p in rows], dtype="str"),
        CHANGED_AT: pd.Series(pd.Timestamp("2026-01-01T12:00:00Z"), index=range(len(rows))).astype(
            "datetime64[us, UTC]"),
    })


def diff_and_plan(warp: pd.DataFrame, hubspot: pd.DataFrame, history: pd.DataFrame | None) -> pd.DataFrame:
    differences = compute_differences(warp, hubspot, RULES)
    return build_plan(differences, synthetic_history(differences) if history is None else history, RULES)


def scalar_plan(warp: pd.DataFrame, hubspot: pd.DataFrame, rows: int, history: pd.DataFrame
                ) -> tuple[float, set[tuple[str, str, str, str]]]:
    """The baseline: each customer's company by dict lookup, each field by decide() (which normalises)."""
    sample = warp.iloc[:rows].to_dict("records")
    companies = {r[COMPANY_ID]: r for r in hubspot.to_dict("records")}
    changed = {(r[COMPANY_ID], r[PROPERTY]): r[CHANGED_AT].to_pydatetime() for r in history.to_dict("records")}
    from warp_sync_pipeline.core.normalize import InvalidFieldValue, comparable

    started = time.perf_counter()
    out = set()
    for row in sample:
        company = companies[row[COMPANY_ID]]
        for field, rule in RULES.items():
            w, h, a = row[col(field, WARP_RAW)], company[rule.hubspot_property], row[col(field, AGREED)]
            w, h, a = (None if isinstance(v, float) else v for v in (w, h, a))  # NaN = missing
            w_at = h_at = None
            if needs_change_times(rule):
                state, state_at = row[col(field, STATE_WARP)], row[col(field, STATE_WARP_CHANGED_AT)]
                try:
                    current = comparable(field, w)
                except InvalidFieldValue:
                    current = None
                recorded = None if pd.isna(state) else StateValue(state, None if pd.isna(state_at) else state_at)
                w_at = warp_changed_at(recorded, current, created_at=row[CUSTOMER_CREATED_AT],
                                       updated_at=row[CUSTOMER_UPDATED_AT], watched_since=rule.watched_since)
                h_at = changed.get((row[COMPANY_ID], rule.hubspot_property))
            d = decide(rule, None if a is None else Observed(a), Observed(w, w_at), Observed(h, h_at))
            reviewed = isinstance(row[OPEN_CONFLICTS], str) and f",{field}," in row[OPEN_CONFLICTS]
            if d.action is not Action.IN_SYNC or a != d.value or reviewed:
                out.add((row[CUSTOMER_ID], field, d.action.value, d.reason.value))
    return time.perf_counter() - started, out


def bench_diff(args: argparse.Namespace) -> None:
    print(f"# diff + plan: Python {platform.python_version()}, pandas {pd.__version__}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    rss0 = _status_kb("VmRSS")
    started = time.perf_counter()
    warp, hubspot = build_pulls(args.customers, drift=args.drift, aligned=not args.unaligned)
    print(f"built the two pull frames: {args.customers:,} customers x {len(RULES)} fields, {args.drift:.1%} of each "
          f"field's values differing, {'HubSpot rows shuffled' if args.unaligned else 'frames in company id order'}, in "
          f"{time.perf_counter() - started:.1f} s; they take ~{(_status_kb('VmRSS') - rss0) / 1024:.0f} MiB")
    history = synthetic_history(compute_differences(warp.iloc[:2000], hubspot, RULES))  # warm-up
    differences = compute_differences(warp, hubspot, RULES)
    history = synthetic_history(differences)
    del differences
    timings, peak = [], None
    for attempt in range(args.repeat):
        resettable = _reset_peak() if attempt == 0 else False
        before = _status_kb("VmRSS")
        started = time.perf_counter()
        plan = diff_and_plan(warp, hubspot, history)
        timings.append(time.perf_counter() - started)
        if resettable:
            peak = (_status_kb("VmHWM") - before) / 1024
    best, median = min(timings), statistics.median(timings)
    counts = plan.attrs["counts"]
    print(f"diff + plan: best {best:.3f} s, median {median:.3f} s over {args.repeat} ({', '.join(f'{t:.3f}' for t in timings)})")
    print(f"  pairs {counts['pairs']:,}, differing {counts['pairs_differing']:,}, fields differing "
          f"{counts['fields_differing']:,}, history companies {history[COMPANY_ID].nunique():,}, plan rows {len(plan):,}")
    split = time.perf_counter()
    differences = compute_differences(warp, hubspot, RULES)
    diff_s = time.perf_counter() - split
    split = time.perf_counter()
    build_plan(differences, history, RULES)
    print(f"  of which compute_differences {diff_s:.3f} s, build_plan {time.perf_counter() - split:.3f} s")
    if peak is not None:
        print(f"peak memory: RSS +{peak:.0f} MiB over the inputs during diff + plan "
              f"(process peak {_status_kb('VmHWM') / 1024:.0f} MiB)")
    tracemalloc.start()
    diff_and_plan(warp, hubspot, history)
    print(f"peak traced allocations during diff + plan: {tracemalloc.get_traced_memory()[1] / 2**20:.0f} MiB")
    tracemalloc.stop()

    rows = min(args.scalar_sample, args.customers)
    seconds, expected = scalar_plan(warp, hubspot, rows, history)
    sample_ids = set(warp[CUSTOMER_ID].iloc[:rows])
    got = {(r[CUSTOMER_ID], r[FIELD], r[ACTION], r[REASON]) for r in
           plan[plan[KIND].isin(["change", "agreement"]) & plan[CUSTOMER_ID].isin(sample_ids)].to_dict("records")}
    assert got == expected, f"the vectorized plan and the scalar path disagree on {len(got ^ expected)} rows"
    extrapolated = seconds * args.customers / rows
    print(f"scalar path row by row: {seconds:.2f} s for {rows:,} customers -> {extrapolated:.1f} s extrapolated to "
          f"{args.customers:,} (same {len(expected):,} plan rows on the sample)")
    print(f"ratio: vectorized {extrapolated / best:.0f}x faster (best), {extrapolated / median:.0f}x (median)")


# --- a rule draft's preview ---------------------------------------------------------------------------------


def bench_preview(args: argparse.Namespace) -> None:
    """The live diff + plan (the baseline) and a draft's preview (its own diff + plan from the same frames and the
    comparison), timed alternately in one run. The draft switches credit_limit from HUBSPOT_WINS to LATEST_WINS
    and contact_email from LATEST_WINS to MANUAL; the pull serves both (rules_for_pull)."""
    from warp_sync_pipeline.core.fields import Strategy
    from warp_sync_pipeline.core.reconcile.preview import preview_draft, rules_for_pull

    draft = FieldRules(replace(rule, strategy={"credit_limit": Strategy.LATEST_WINS,
                                               "contact_email": Strategy.MANUAL}.get(name, rule.strategy))
                       for name, rule in RULES.items())
    print(f"# rule draft preview: Python {platform.python_version()}, pandas {pd.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    warp, hubspot = build_pulls(args.customers, drift=args.drift, rules=rules_for_pull(RULES, draft))
    differences = compute_differences(warp, hubspot, RULES)
    history = synthetic_history(differences)
    live_plan = build_plan(differences, history, RULES)
    live_times, preview_times = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        differences = compute_differences(warp, hubspot, RULES)
        live_plan = build_plan(differences, history, RULES)
        live_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        preview = preview_draft("bench", [], warp=warp, hubspot=hubspot, live_differences=differences,
                                live_history=history, live_plan=live_plan, live=RULES, draft=draft,
                                fetch_history=history_rows)
        preview_times.append(time.perf_counter() - started)
    live, previewed = statistics.median(live_times), statistics.median(preview_times)
    print(f"live diff + plan: median {live:.3f} s ({', '.join(f'{t:.3f}' for t in live_times)})")
    print(f"draft preview (diff + plan under the draft, history it adds, comparison): median {previewed:.3f} s "
          f"({', '.join(f'{t:.3f}' for t in preview_times)})")
    print("  per field, live -> draft: " + "; ".join(
        f"{name} conflicts {sides['live']['conflicts']:,}->{sides['draft']['conflicts']:,}, to WARP "
        f"{sides['live']['to_warp']:,}->{sides['draft']['to_warp']:,}" for name, sides in preview.fields.items()
        if sides["live"] != sides["draft"]))
    print(f"  records treated differently: {preview.records_total:,}")
    print(f"ratio: preview / live diff + plan = {previewed / live:.2f} (target at most 2)")


# --- end to end ---------------------------------------------------------------------------------------------


def _start_sandbox(token: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "HUBSPOT_ACCESS_TOKEN": token, "HUBSPOT_CLIENT_SECRET": "bench-secret"}
    env.pop("HUBSPOT_WEBHOOK_TARGET_URL", None)
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "warp-sync"), "sandbox", "--port", "0", "--rate-limit", "0",
         "--search-per-second", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "listening on" in line:
            return process, line.rsplit(" ", 1)[-1].strip()
    raise RuntimeError("the sandbox did not start")


def bench_e2e(args: argparse.Namespace) -> None:
    import dagster as dg
    import sqlalchemy as sa

    from hubspot_sandbox.control import SandboxControl
    from warp_sync_pipeline.core.db import make_engine, with_database
    from warp_sync_pipeline.core.hubspot import HubSpotClient
    from warp_sync_pipeline.core.migrations import upgrade
    from warp_sync_pipeline.defs.reconciliation import RECONCILIATION_ASSETS, ReconciliationSettings
    from warp_sync_pipeline.devstack.demo_seed import seed_demo
    from warp_sync_pipeline.devstack.localpg import ensure_database, throwaway_server
    from warp_sync_pipeline.resources.database import DatabaseResource
    from warp_sync_pipeline.resources.email import EmailResource
    from warp_sync_pipeline.resources.hubspot import HubSpotResource
    from warp_sync_pipeline.resources.parquet_io import ParquetIOManager

    token = "pat-bench"
    # Always a private cluster of its own, fsync on (not WARP_TEST_DATABASE_URL): the figures compare runs.
    with throwaway_server("bench", use_test_server=False) as (admin, _description):
        frames = Path(tempfile.mkdtemp(prefix="bench-frames-"))
        sandbox, base_url = _start_sandbox(token)
        try:
            ensure_database(admin, "bench")
            url = with_database(admin, "bench")
            engine = make_engine(url)
            upgrade(engine)
            print(f"# end to end: Python {platform.python_version()}, {os.cpu_count()} CPUs, private PostgreSQL (fsync "
                  f"on), sandbox in its own process, rate limit off; load average {os.getloadavg()[0]:.1f}")
            started = time.perf_counter()
            with HubSpotClient(base_url, token) as client, SandboxControl(base_url) as control:
                seeded = seed_demo(engine, client=client, seed_companies=control.seed, customers=args.customers)
                print(f"seeded {len(seeded.data.customers):,} customers and {len(seeded.data.companies):,} companies in "
                      f"{time.perf_counter() - started:.1f} s")
                control.reset_counters()
                resources = {
                    "db": DatabaseResource(url=url),
                    "hubspot": HubSpotResource(base_url=base_url, access_token=token, database_url=url,
                                               requests_per_10s=100_000),
                    "email": EmailResource(),
                    "parquet_io_manager": ParquetIOManager(base_dir=str(frames)),
                    "reconciliation": ReconciliationSettings(allow_mass_write=args.incremental_share > 0),
                }
                _reset_peak()
                rss_before = _status_kb("VmRSS")
                started = time.perf_counter()
                with dg.instance_for_test() as instance:
                    result = dg.materialize(RECONCILIATION_ASSETS, resources=resources, instance=instance,
                                            tags={"warp/flow": "reconciliation"})
                wall = time.perf_counter() - started
                peak = _status_kb("VmHWM")
                calls = control.counters()
            steps = {e.step_key: e.event_specific_data.duration_ms / 1000 for e in result.get_step_success_events()}
            report = result.output_for_node("reconciliation_report")
            n = len(seeded.data.companies) - sum(1 for c in seeded.data.companies if c.archived)
            d = result.output_for_node("hubspot_property_history")[COMPANY_ID].nunique()
            w = len({r.company_id for r in result.output_for_node("hubspot_writeback").records})
            budget = math.ceil(n / 100) + math.ceil(d / 50) + 2 * math.ceil(w / 100)
            # What a run pod's emptyDir must hold (docs/DEPLOY.md): every frame the run wrote.
            on_disk = sum(f.stat().st_size for f in frames.rglob("*") if f.is_file())
            print(f"wall time {wall:.1f} s for {args.customers:,} customers; peak RSS {peak / 1024:.0f} MiB "
                  f"(+{(peak - rss_before) / 1024:.0f} MiB over the process before the run); frames on disk "
                  f"{on_disk / 2**20:.0f} MiB")
            print("| step | seconds |\n|---|---:|")
            for step, seconds in steps.items():
                print(f"| {step} | {seconds:.2f} |")
            print(f"HubSpot calls: {calls['total']} (N={n:,} companies, D={d:,} with history, W={w:,} written: "
                  f"bound ceil(N/100)+ceil(D/50)+2ceil(W/100) = {budget})")
            for endpoint, count in sorted(calls["by_endpoint"].items()):
                print(f"  {endpoint}: {count}")
            print("counts:", {k: v for k, v in report.counts.items() if v})
            with engine.connect() as conn:
                print("run rows:", conn.execute(sa.text("SELECT status FROM hubspot_reconciliation_runs")).scalars().all())
            if args.incremental_share > 0:
                _bench_incremental(args, engine, base_url, token, {**resources}, wall, calls["total"])
            engine.dispose()
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)
            shutil.rmtree(frames, ignore_errors=True)


def _bench_incremental(args: argparse.Namespace, engine: Any, base_url: str, token: str,
                       resources: dict[str, Any], full_wall: float, full_calls: int) -> None:
    """After the full run: --incremental-share of the customers changed in WARP and as many companies in HubSpot,
    then an incremental run, its wall time and HubSpot calls by endpoint beside the full run's."""
    import dagster as dg
    import sqlalchemy as sa

    from hubspot_sandbox.control import SandboxControl
    from warp_sync_pipeline.core.hubspot import CompanyUpdate, HubSpotClient
    from warp_sync_pipeline.defs.reconciliation import RECONCILIATION_ASSETS, ReconciliationSettings

    share = args.incremental_share
    # The sandbox's search index has no lag: a window may end when the run starts (HubSpot's is lagged by
    # WARP_RECONCILE_INDEX_LAG_SECONDS, so a real run leaves the last minute to the next one).
    os.environ["WARP_RECONCILE_INDEX_LAG_SECONDS"] = "0"
    with engine.begin() as conn:
        warp_moved = conn.execute(sa.text(
            "UPDATE customers SET credit_limit = coalesce(credit_limit, 0) + 1 WHERE id IN (SELECT id FROM customers "
            "WHERE hubspot_link_status = 'linked' ORDER BY md5(id::text) LIMIT :n)"),
            {"n": int(args.customers * share)}).rowcount
        companies = conn.execute(sa.text(
            "SELECT external_ids ->> 'hubspot_company_id' FROM customers WHERE hubspot_link_status = 'linked' "
            "ORDER BY md5(ban) LIMIT :n"), {"n": int(args.customers * share)}).scalars().all()
    with HubSpotClient(base_url, token) as client, SandboxControl(base_url) as control:
        outcomes = client.batch_update_companies(
            [CompanyUpdate(c, {"warp_credit_limit": str(900_000 + i)}) for i, c in enumerate(companies)])
        hubspot_moved = sum(1 for o in outcomes if o.company is not None)
        control.reset_counters()
        started = time.perf_counter()
        with dg.instance_for_test() as instance:
            result = dg.materialize(RECONCILIATION_ASSETS, instance=instance, tags={"warp/flow": "reconciliation"},
                                    resources={**resources,
                                               "reconciliation": ReconciliationSettings(mode="incremental")})
        wall = time.perf_counter() - started
        calls = control.counters()
    scope = result.output_for_node("reconciliation_scope")
    described = scope.get("describe") or {}
    print(f"incremental run ({scope['mode']}): {warp_moved:,} customers changed in WARP, {hubspot_moved:,} companies "
          f"in HubSpot; scope {described.get('customers', 0):,} customers, {described.get('companies', 0):,} "
          f"companies; search {described.get('search_calls')} calls in {described.get('search_windows')} window(s); "
          f"churn {described.get('churn')}; {described}")
    print(f"wall time {wall:.1f} s (full run {full_wall:.1f} s: ratio {full_wall / wall:.1f}x); HubSpot calls "
          f"{calls['total']} (full run {full_calls})")
    for endpoint, count in sorted(calls["by_endpoint"].items()):
        print(f"  {endpoint}: {count}")
    steps = {e.step_key: e.event_specific_data.duration_ms / 1000 for e in result.get_step_success_events()}
    print("incremental run's steps: " + ", ".join(f"{step} {seconds:.2f} s" for step, seconds in steps.items()))
    # Each HubSpot step's own tally: searches (the scope), counterpart reads (the pull), history reads, and the
    # write-back's compare-and-set re-reads beside its updates.
    for step in ("reconciliation_scope", "hubspot_companies", "hubspot_property_history", "hubspot_writeback"):
        [materialization] = result.asset_materializations_for_node(step)
        by_kind = materialization.metadata["hubspot_requests_by_kind"].value
        print(f"  {step}: " + (", ".join(f"{kind.rsplit('/', 1)[-1]} {n}" for kind, n in by_kind.items()) or "none"))


def bench_sweep(args: argparse.Namespace) -> None:
    """A full sweep's HubSpot pull both ways on one portal, alternated --repeat times: the list API (the baseline)
    and the CRM Exports API, their calls (the sandbox's counters) and wall times (medians), the frames compared."""
    import secrets

    from hubspot_sandbox.control import SandboxControl
    from warp_sync_pipeline.core.hubspot import HubSpotClient
    from warp_sync_pipeline.core.reconcile.pull import export_hubspot_companies, pull_hubspot_companies

    token = f"pat-bench-{secrets.token_hex(8)}"
    sandbox, base_url = _start_sandbox(token)
    try:
        with HubSpotClient(base_url, token, time_budget_s=600, request_timeout_s=600) as client, \
                SandboxControl(base_url, timeout=600) as control:
            client.ensure_properties()
            statuses = ["PENDING", "ACTIVE", "SUSPENDED", "CLOSED"]
            started = time.perf_counter()
            for start in range(0, args.customers, 20_000):
                control.seed([{"name": f"Company {n}, Ltd.", "warp_ban": f"ZT-{n:09d}",
                               "warp_status": statuses[n % 4], "warp_credit_limit": f"{n % 9973}.50",
                               "warp_services": "voice;data" if n % 3 else "voice",
                               "warp_contact_email": f"billing{n}@acme{n % 97}.example"}
                              for n in range(start, min(start + 20_000, args.customers))])
            print(f"# sweep: {args.customers:,} companies seeded in {time.perf_counter() - started:.1f} s; "
                  f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, sandbox in its own process, rate "
                  f"limit off, the export completing on its first status read after the start")
            control.configure(export_status_polls=0)
            properties = ["name", "warp_ban", "warp_status", "warp_credit_limit", "warp_services",
                          "warp_contact_email", "hs_merged_object_ids"]
            ways = {"list API": lambda: pull_hubspot_companies(client, properties),
                    "export": lambda: export_hubspot_companies(client, properties, poll_seconds=0.1,
                                                               timeout_seconds=600)}
            walls: dict[str, list[float]] = {name: [] for name in ways}
            calls: dict[str, int] = {}
            frames: dict[str, pd.DataFrame] = {}
            for _ in range(args.repeat):
                for name, pull in ways.items():
                    control.reset_counters()
                    began = time.perf_counter()
                    frames[name] = pull()
                    walls[name].append(time.perf_counter() - began)
                    calls[name] = control.counters()["total"]
            same = frames["export"].sort_values("company_id", ignore_index=True).equals(
                frames["list API"].sort_values("company_id", ignore_index=True))
            for name in ways:
                print(f"{name}: {calls[name]:,} HubSpot calls; wall median {statistics.median(walls[name]):.2f} s "
                      f"(runs: {', '.join(f'{w:.2f}' for w in walls[name])})")
            ratio = statistics.median(walls["list API"]) / statistics.median(walls["export"])
            print(f"ratio list/export: {ratio:.2f}x in wall time, {calls['list API'] / calls['export']:.0f}x in "
                  f"calls; the two frames equal: {same}")
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    diff = sub.add_parser("diff")
    diff.add_argument("--customers", type=int, default=1_000_000)
    diff.add_argument("--scalar-sample", type=int, default=20_000)
    diff.add_argument("--repeat", type=int, default=3)
    diff.add_argument("--unaligned", action="store_true",
                      help="shuffle HubSpot's rows (the join then gathers every column into WARP's order)")
    diff.add_argument("--drift", type=float, default=0.01,
                      help="share of each field's values that differ (0.01: ~8%% of customers differ somewhere)")
    e2e = sub.add_parser("e2e")
    e2e.add_argument("--customers", type=int, default=100_000)
    e2e.add_argument("--incremental-share", type=float, default=0.0,
                     help="then change this share on each side and time an incremental run beside the full one")
    preview = sub.add_parser("preview")
    preview.add_argument("--customers", type=int, default=1_000_000)
    preview.add_argument("--repeat", type=int, default=5)
    preview.add_argument("--drift", type=float, default=0.01)
    sweep = sub.add_parser("sweep", help="a full sweep's HubSpot pull by the list API and by an export")
    sweep.add_argument("--customers", type=int, default=100_000)
    sweep.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    {"diff": bench_diff, "e2e": bench_e2e, "preview": bench_preview, "sweep": bench_sweep}[args.command](args)


if __name__ == "__main__":
    main()
