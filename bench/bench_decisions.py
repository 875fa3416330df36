"""The field decisions for 1,000,000 customers x 8 fields: decide_frame() vs decide() row by row, same run.

    .venv/bin/python bench/bench_decisions.py [--customers 1000000] [--scalar-sample 50000] [--repeat 3]

Builds one decision frame (comparable text in pandas `str` columns, change times as datetime64[ms, UTC]) with
a realistic mix per field: ~90% equal, ~3% changed in WARP only, ~3% in HubSpot only, ~2% changed on both
sides, ~1% never agreed, ~0.5% invalid values, ~5% unknown change times; the rules are the seeded ones.

- vectorized: decide_frame() over all rows and fields, best and median of --repeat runs;
- scalar baseline: decide() per row and field over the first --scalar-sample rows (values pre-extracted to
  Python lists, which favours the baseline), extrapolated linearly to all rows; the two are checked to
  give the same action and reason on that sample;
- peak memory: the growth of the process's peak resident set during decide_frame (peak reset before it,
  Linux), the peak of numpy/Python allocations during it (tracemalloc, one extra untimed run), and the
  resident set of the input frame;
- also timed, for the reconciliation's planning: comparable_series() over the raw HubSpot strings of all
  eight fields (the vectorized normalisation decide_frame's input needs).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from warp_sync_pipeline.core.decision import (  # noqa: E402
    AGREED,
    HUBSPOT,
    HUBSPOT_CHANGED_AT,
    WARP,
    WARP_CHANGED_AT,
    Action,
    Observed,
    Reason,
    column,
    decide,
    decide_frame,
)
from warp_sync_pipeline.core.fields import SEEDED_RULES  # noqa: E402
from warp_sync_pipeline.core.normalize import comparable_series  # noqa: E402

RULES = list(SEEDED_RULES)

# A raw value each field's type refuses: what an NA (invalid) cell means, handed to the scalar baseline.
INVALID_RAW = {
    "ban": "ZT-bogus",
    "company_name": "",
    "status": "DORMANT",
    "credit_limit": "12.345",
    "current_balance": "abc",
    "services": "fax",
    "payment_terms": "NET90",
    "contact_email": "not-an-email",
}


def _text(values: np.ndarray | pd.Series, index: pd.RangeIndex) -> pd.Series:
    return pd.Series(values, index=index).astype("str")


def _values(field: str, ids: np.ndarray, index: pd.RangeIndex) -> pd.Series:
    """Comparable text of one value per customer; `ids` picks which value (so other ids = other values)."""
    if field == "ban":
        return "ZT-" + _text(ids % 1_000_000_000, index).str.zfill(9)
    if field == "company_name":
        return "Customer " + _text(ids, index) + " Telecom"
    if field == "contact_email":
        return "ops" + _text(ids, index) + "@example.com"
    if field in ("credit_limit", "current_balance"):
        cents = (ids * 7919) % 100_000_000
        return _text(cents // 100, index) + "." + _text(cents % 100, index).str.zfill(2)
    vocab = {
        "status": ["PENDING", "ACTIVE", "SUSPENDED", "CLOSED"],
        "payment_terms": ["", "PREPAID", "NET15", "NET30", "NET45", "NET60"],
        "services": ["", "voice", "messaging", "data", "voice;messaging", "voice;data", "messaging;data",
                     "voice;messaging;data"],
    }[field]
    return _text(np.array(vocab, dtype=object)[ids % len(vocab)], index)


def build_frame(n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.RangeIndex(n, name="customer")
    base_ids = np.arange(n, dtype=np.int64) * 4  # ids + 1 / + 2 / + 3 give a different value
    columns: dict[str, pd.Series] = {}
    epoch = np.datetime64("2024-03-01T09:00:00", "ms").astype(np.int64)
    for rule in RULES:
        field = rule.warp_field
        roll = rng.random(n)
        warp_ids = base_ids + np.where((roll < 0.03) | ((roll >= 0.06) & (roll < 0.08)), 1, 0)
        hubspot_ids = base_ids + np.where((roll >= 0.03) & (roll < 0.08), 2, 0)
        agreed = _values(field, base_ids, index).where(~((roll >= 0.08) & (roll < 0.09)))  # ~1% never agreed
        warp = _values(field, warp_ids, index)
        hubspot = _values(field, hubspot_ids, index)
        hubspot = hubspot.where(~((roll >= 0.09) & (roll < 0.095)))  # ~0.5% invalid in HubSpot
        columns[column(field, WARP)] = warp
        columns[column(field, HUBSPOT)] = hubspot
        columns[column(field, AGREED)] = agreed
        for part in (WARP_CHANGED_AT, HUBSPOT_CHANGED_AT):
            ms = epoch + rng.integers(0, 3_600_000, n)
            times = pd.Series(pd.to_datetime(ms, unit="ms", utc=True), index=index)
            columns[column(field, part)] = times.where(rng.random(n) >= 0.05)  # ~5% unknown
    return pd.DataFrame(columns, index=index)


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM (peak RSS) to the current RSS
        return True
    except OSError:
        return False


def scalar_decisions(frame: pd.DataFrame, rows: int) -> tuple[float, list[list[tuple[Action, Reason]]]]:
    """decide() per row and field over the first `rows` rows; returns seconds and the decisions."""
    sample = frame.iloc[:rows]
    inputs = []
    for rule in RULES:
        field = rule.warp_field

        def listed(part: str, sample: pd.Series = sample, field: str = field) -> list:
            return [None if pd.isna(v) else v for v in sample[column(field, part)].tolist()]

        hubspot = [INVALID_RAW[field] if v is None else v for v in listed(HUBSPOT)]
        warp = [INVALID_RAW[field] if v is None else v for v in listed(WARP)]
        wt = [None if pd.isna(v) else v.to_pydatetime() for v in sample[column(field, WARP_CHANGED_AT)]]
        ht = [None if pd.isna(v) else v.to_pydatetime() for v in sample[column(field, HUBSPOT_CHANGED_AT)]]
        inputs.append((rule, listed(AGREED), warp, hubspot, wt, ht))
    started = time.perf_counter()
    out: list[list[tuple[Action, Reason]]] = []
    for rule, agreed, warp, hubspot, wt, ht in inputs:
        decided = []
        for a, w, h, w_at, h_at in zip(agreed, warp, hubspot, wt, ht, strict=True):
            d = decide(rule, None if a is None else Observed(a), Observed(w, w_at), Observed(h, h_at))
            decided.append((d.action, d.reason))
        out.append(decided)
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--scalar-sample", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(f"python {platform.python_version()}, pandas {pd.__version__}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs")
    rss_start = _status_kb("VmRSS")
    started = time.perf_counter()
    frame = build_frame(args.customers)
    print(f"built frame: {args.customers:,} customers x {len(RULES)} fields in {time.perf_counter() - started:.1f} s,"
          f" frame RSS ~{(_status_kb('VmRSS') - rss_start) / 1024:.0f} MiB")

    decide_frame(RULES, frame.iloc[:1000])  # warm-up
    timings = []
    peak_extra_mib = None
    for attempt in range(args.repeat):
        resettable = _reset_peak() if attempt == 0 else False
        rss_before = _status_kb("VmRSS")
        started = time.perf_counter()
        decided = decide_frame(RULES, frame)
        timings.append(time.perf_counter() - started)
        if resettable:
            peak_extra_mib = (_status_kb("VmHWM") - rss_before) / 1024
    best, median = min(timings), statistics.median(timings)
    print(f"vectorized decide_frame: best {best:.3f} s, median {median:.3f} s over {args.repeat} runs "
          f"({', '.join(f'{t:.3f}' for t in timings)})")
    if peak_extra_mib is not None:
        print(f"peak memory during decide_frame: RSS +{peak_extra_mib:.0f} MiB over the input "
              f"(process peak {_status_kb('VmHWM') / 1024:.0f} MiB)")
    # RSS growth understates working memory that reuses freed heap pages; tracemalloc sees numpy's buffers.
    tracemalloc.start()
    decide_frame(RULES, frame)
    traced_peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(f"peak traced allocations (numpy/Python) during decide_frame: {traced_peak_mib:.0f} MiB")

    rows = min(args.scalar_sample, args.customers)
    scalar_seconds, scalar = scalar_decisions(frame, rows)
    extrapolated = scalar_seconds * args.customers / rows
    for position, rule in enumerate(RULES):
        actions = decided[column(rule.warp_field, "action")].iloc[:rows].tolist()
        reasons = decided[column(rule.warp_field, "reason")].iloc[:rows].tolist()
        assert [(Action(a), Reason(r)) for a, r in zip(actions, reasons, strict=True)] == scalar[position], (
            f"{rule.warp_field}: decide_frame and decide disagree"
        )
    print(f"scalar decide() row by row: {scalar_seconds:.2f} s for {rows:,} rows x {len(RULES)} fields "
          f"-> {extrapolated:.1f} s extrapolated to {args.customers:,} (same decisions on the sample)")
    print(f"ratio: vectorized is {extrapolated / best:.0f}x faster (best), {extrapolated / median:.0f}x (median)")

    reasons_total = pd.concat([decided[column(r.warp_field, "action")].astype("str") for r in RULES])
    print("actions:", reasons_total.value_counts().to_dict())

    raw = {rule.warp_field: frame[column(rule.warp_field, HUBSPOT)].fillna(INVALID_RAW[rule.warp_field])
           for rule in RULES}
    started = time.perf_counter()
    for rule in RULES:
        comparable_series(rule.spec, raw[rule.warp_field])
    print(f"comparable_series over the raw HubSpot strings of all {len(RULES)} fields: "
          f"{time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
