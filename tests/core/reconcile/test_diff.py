"""The vectorized diff and plan agree with the scalar path (comparable() and decide() row by row) on frames
full of awkward values: forms that differ but mean the same, invalid values, missing agreed values, values
that equal the agreed one only after normalisation (the diff's shortcut must never take those as equal)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from warp_sync_pipeline.core.decision import AGREED, Action, Observed, decide
from warp_sync_pipeline.core.field_state import StateValue, warp_changed_at
from warp_sync_pipeline.core.fields import SEEDED_RULES, FieldRules, Strategy
from warp_sync_pipeline.core.normalize import InvalidFieldValue, comparable
from warp_sync_pipeline.core.reconcile import build_plan, compute_differences
from warp_sync_pipeline.core.reconcile import diff as diff_module
from warp_sync_pipeline.core.reconcile.frames import (
    ATTR_PULLED_AT,
    BAN,
    COMPANY_ID,
    COMPANY_UPDATED_AT,
    CUSTOMER_CREATED_AT,
    CUSTOMER_ID,
    CUSTOMER_UPDATED_AT,
    KIND,
    LINK_STATUS,
    STATE_WARP,
    STATE_WARP_CHANGED_AT,
    WARP_RAW,
    col,
)
from warp_sync_pipeline.core.reconcile.history import empty_history
from warp_sync_pipeline.core.reconcile.plan import ACTION, FIELD, REASON
from warp_sync_pipeline.core.reconcile.pull import needs_change_times

# The seeded rules with contact_email under MANUAL review, so the plan has conflicts too; the outbox trigger has
# watched every field since 2026-01-01 (customers created before it fall back to updated_at, after it to created_at).
WATCHED_SINCE = datetime(2026, 1, 1, tzinfo=UTC)
RULES = FieldRules(
    replace(rule, strategy=Strategy.MANUAL if rule.warp_field == "contact_email" else rule.strategy,
            watched_since=WATCHED_SINCE) for rule in SEEDED_RULES
)

# Per field: WARP texts (as `column::text` gives them), HubSpot strings, and agreed values (comparable text).
POOLS = {
    "company_name": (["Acme", "Acme ", "Beta Ltd", "\x07Acme", "Gamma"], ["Acme", " Acme", "Beta Ltd", "", "Gamma\t"],
                     ["Acme", "Beta Ltd"]),
    "status": (["ACTIVE", "CLOSED"], ["ACTIVE", "CLOSED", "active", "", "DORMANT"], ["ACTIVE", "CLOSED"]),
    "credit_limit": (["1000.00", "250.50", None], ["1000", "1000.00", "250.5", "12.345", "", "abc"],
                     ["1000.00", "250.50", ""]),
    "current_balance": (["0.00", "-12.30"], ["0", "-12.3", "-0.00", "x"], ["0.00", "-12.30"]),
    "services": (['{"data": true, "voice": true, "messaging": false}', '{"data": false, "voice": false, "messaging": false}'],
                 ["voice;data", "data;voice", "", "fax"], ["voice;data", ""]),
    "payment_terms": (["NET30", None], ["NET30", "NET45", "", "NET99"], ["NET30", ""]),
    "contact_email": (["a@x.example", "A@X.example", None], ["a@x.example", "b@x.example", "", "not-mail"],
                      ["a@x.example", "b@x.example", ""]),
}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _frames(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = random.Random(seed)
    warp: dict[str, list[object]] = {name: [] for name in (CUSTOMER_ID, BAN, COMPANY_ID, LINK_STATUS,
                                                           CUSTOMER_UPDATED_AT, CUSTOMER_CREATED_AT)}
    hub: dict[str, list[object]] = {COMPANY_ID: [], COMPANY_UPDATED_AT: [], **{r.hubspot_property: [] for r in RULES.values()}}
    for field, rule in RULES.items():
        warp[col(field, WARP_RAW)] = []
        warp[col(field, AGREED)] = []
        if needs_change_times(rule):
            warp[col(field, STATE_WARP)] = []
            warp[col(field, STATE_WARP_CHANGED_AT)] = []
    for i in range(n):
        ban = f"ZT-{i:09d}"
        warp[CUSTOMER_ID].append(f"00000000-0000-0000-0000-{i:012d}")
        warp[BAN].append(ban)
        warp[COMPANY_ID].append(str(40_000_000_000 + i))
        warp[LINK_STATUS].append("linked")
        warp[CUSTOMER_UPDATED_AT].append(T0 + timedelta(minutes=rng.randrange(10_000)))
        warp[CUSTOMER_CREATED_AT].append(T0 + timedelta(minutes=rng.randrange(-5_000, 5_000)))
        hub[COMPANY_ID].append(str(40_000_000_000 + i))
        hub[COMPANY_UPDATED_AT].append(T0)
        warp[col("ban", WARP_RAW)].append(ban)
        hub["warp_ban"].append(ban if rng.random() < 0.95 else f" {ban} ")
        warp[col("ban", AGREED)].append(ban if rng.random() < 0.9 else None)
        for field, (warp_pool, hub_pool, agreed_pool) in POOLS.items():
            rule = RULES[field]
            w = rng.choice(warp_pool)
            warp[col(field, WARP_RAW)].append(w)
            # Mostly the agreed text itself (the shortcut's case), else anything from the pools.
            agreed = rng.choice(agreed_pool) if rng.random() < 0.9 else None
            warp[col(field, AGREED)].append(agreed)
            hub[rule.hubspot_property].append(agreed if agreed is not None and rng.random() < 0.6 else rng.choice(hub_pool))
            if needs_change_times(rule):
                warp[col(field, STATE_WARP)].append(rng.choice([agreed, w, None]))
                warp[col(field, STATE_WARP_CHANGED_AT)].append(rng.choice([None, T0 + timedelta(minutes=rng.randrange(10_000))]))
    times = {CUSTOMER_UPDATED_AT, CUSTOMER_CREATED_AT, COMPANY_UPDATED_AT} | {c for c in warp if c.endswith(STATE_WARP_CHANGED_AT)}
    warp_df = pd.DataFrame({k: pd.to_datetime(v, utc=True) if k in times else pd.Series(v, dtype="str")
                            for k, v in warp.items()})
    hub_df = pd.DataFrame({k: pd.to_datetime(v, utc=True) if k in times else pd.Series(v, dtype="str")
                           for k, v in hub.items()})
    warp_df.attrs[ATTR_PULLED_AT] = hub_df.attrs[ATTR_PULLED_AT] = T0.isoformat()
    return warp_df, hub_df


def _scalar(value: object, field: str) -> str | None:
    try:
        return comparable(field, value)
    except InvalidFieldValue:
        return None


def _expected(warp: pd.DataFrame, hub: pd.DataFrame) -> set[tuple[str, str, str, str]]:
    """Every row and field decided by the scalar path: (ban, field, action, reason) of what the plan must hold."""
    out = set()
    for w_row, h_row in zip(warp.to_dict("records"), hub.to_dict("records"), strict=True):
        for field, rule in RULES.items():
            w_raw = w_row[col(field, WARP_RAW)]
            h_raw = h_row[rule.hubspot_property]
            w_raw, h_raw = (None if pd.isna(v) else v for v in (w_raw, h_raw))
            agreed = w_row[col(field, AGREED)]
            agreed = None if pd.isna(agreed) else agreed
            warp_time = None
            if needs_change_times(rule):
                state, state_at = w_row[col(field, STATE_WARP)], w_row[col(field, STATE_WARP_CHANGED_AT)]
                recorded = None if pd.isna(state) else StateValue(state, None if pd.isna(state_at) else state_at)
                # The one scalar rule every flow uses; the vectorized diff must agree with it.
                warp_time = warp_changed_at(recorded, _scalar(w_raw, field), created_at=w_row[CUSTOMER_CREATED_AT],
                                            updated_at=w_row[CUSTOMER_UPDATED_AT], watched_since=rule.watched_since)
            decision = decide(rule, None if agreed is None else Observed(agreed), Observed(w_raw, warp_time),
                              Observed(h_raw, None))
            if decision.action is not Action.IN_SYNC:
                out.add((w_row[BAN], field, decision.action.value, decision.reason.value))
            elif agreed != decision.value:
                out.add((w_row[BAN], field, Action.IN_SYNC.value, decision.reason.value))
    return out


@pytest.mark.parametrize("dictionary_from", [None, 0])
def test_the_vectorized_diff_and_plan_agree_with_the_scalar_path(
    dictionary_from: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if dictionary_from is not None:  # few-valued fields normalised once per distinct value, at any size
        monkeypatch.setattr(diff_module, "_DICTIONARY_FROM", dictionary_from)
    for seed in range(3):
        warp, hub = _frames(1500, seed)
        hub = hub.sample(frac=1, random_state=seed).reset_index(drop=True)  # the join must not rely on order
        differences = compute_differences(warp, hub, RULES)
        plan = build_plan(differences, empty_history(), RULES)
        got = {(r[BAN], r[FIELD], r[ACTION], r[REASON]) for r in plan[plan[KIND].isin(["change", "agreement"])]
               .to_dict("records")}
        aligned = hub.set_index(COMPANY_ID).loc[warp[COMPANY_ID]].reset_index()
        assert got == _expected(warp, aligned)
        counts = differences.attrs["counts"]
        assert counts["pairs"] == 1500 and counts["customers"] == counts["companies"] == 1500


def test_company_ids_that_are_not_plain_numbers_still_join() -> None:
    warp, hub = _frames(50, 7)
    warp[COMPANY_ID] = ("c-" + warp[COMPANY_ID]).astype("str")
    hub[COMPANY_ID] = ("c-" + hub[COMPANY_ID]).astype("str")
    assert compute_differences(warp, hub, RULES).attrs["counts"]["pairs"] == 50
    # "007" and "7" are different ids, though both read as the number 7.
    warp2, hub2 = _frames(3, 8)
    hub2[COMPANY_ID] = pd.Series(["0" + i for i in hub2[COMPANY_ID]], dtype="str")
    counts = compute_differences(warp2, hub2, RULES).attrs["counts"]
    assert counts["pairs"] == 0 and counts["company_missing"] == 3
    assert np.all(compute_differences(warp2, hub2, RULES)[KIND].isin(["company_missing", "company_not_linked"]))


def test_few_valued_fields_normalised_once_per_value_give_comparable_series_result() -> None:
    from warp_sync_pipeline.core.normalize import comparable_series
    from warp_sync_pipeline.core.reconcile.diff import normalised

    values = {
        "services": ["voice;data", "data;voice", None, "fax", "", '{"data": true, "voice": false, "messaging": false}',
                     '{"data": 1}'],
        "status": ["ACTIVE", None, "active", " CLOSED ", "", "DORMANT"],
        "payment_terms": ["NET30", None, "", "NET99", "PREPAID\t"],
    }
    for field, pool in values.items():
        raw = pd.Series(pool * 3000, dtype="str")  # past the size where the dictionary road is taken
        assert normalised(RULES[field], raw).equals(comparable_series(field, raw)), field
        # A slice keeps its row labels: the result must follow them, not positions from zero.
        picked = raw.take(np.arange(3, len(raw), 2))
        assert normalised(RULES[field], picked).equals(comparable_series(field, picked)), field


def test_the_warp_pull_holds_customers_in_company_id_order_unlinked_last() -> None:
    from warp_sync_pipeline.core.reconcile.pull import in_company_order

    frame = pd.DataFrame({COMPANY_ID: pd.Series(["9", None, "10", "2"], dtype="str"), "x": [1, 2, 3, 4]})
    assert in_company_order(frame)["x"].tolist() == [4, 1, 3, 2]  # numerically, not as text
    odd = pd.DataFrame({COMPANY_ID: pd.Series(["b", "a"], dtype="str"), "x": [1, 2]})
    assert in_company_order(odd)["x"].tolist() == [1, 2]  # ids that are not numbers: left as they are
