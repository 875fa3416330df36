"""The plan: each difference decided by the one decision function (vectorized), plus links, orphans and
duplicates, in long form (one row per customer and field that needs something done).

Row kinds: `change` (an action other than IN_SYNC: a write either way, a MANUAL conflict, an invalid value),
`agreement` (in sync, but the agreed value on record is missing or stale), `link` (an unlinked customer matched
by BAN), and the orphan and duplicate kinds of the diff. attrs: pulled_at, planned_at, counts and the brake's
figures (how many records the plan would change, out of how many compared).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from warp_sync_pipeline.core.decision import (
    AGREED,
    HUBSPOT,
    HUBSPOT_CHANGED_AT,
    WARP,
    WARP_CHANGED_AT,
    Action,
    Reason,
    decide_frame,
)
from warp_sync_pipeline.core.fields import FieldRules
from warp_sync_pipeline.core.normalize import InvalidFieldValue, comparable
from warp_sync_pipeline.core.reconcile.diff import TIME_DTYPE
from warp_sync_pipeline.core.reconcile.frames import (
    AGREEMENT,
    ATTR_BRAKE,
    ATTR_COUNTS,
    ATTR_PLANNED_AT,
    ATTR_PULLED_AT,
    ATTR_RULES,
    BAN,
    CHANGE,
    COMPANY_ID,
    COMPANY_NAME,
    CUSTOMER_ID,
    DETAIL,
    HUBSPOT_RAW,
    KIND,
    LINK,
    MATCH,
    MATCH_BAN,
    PAIR,
    WARP_RAW,
    col,
    equal,
    iso,
    now_utc,
)
from warp_sync_pipeline.core.reconcile.history import CHANGED_AT, PROPERTY
from warp_sync_pipeline.core.reconcile.options import BrakeStats

FIELD = "field"
HUBSPOT_PROPERTY = "hubspot_property"
ACTION = "action"
REASON = "reason"
WARP_RAW_VALUE = "warp_raw"
HUBSPOT_RAW_VALUE = "hubspot_raw"
WARP_VALUE = "warp_value"
HUBSPOT_VALUE = "hubspot_value"
AGREED_VALUE = "agreed_value"
WARP_TIME = "warp_changed_at"
HUBSPOT_TIME = "hubspot_changed_at"
VALUE = "value"  # the comparable value both sides hold once a write is done
ERROR_CODE = "error_code"
ERROR = "error"

PLAN_COLUMNS = [
    KIND, CUSTOMER_ID, BAN, COMPANY_ID, MATCH, COMPANY_NAME, FIELD, HUBSPOT_PROPERTY, ACTION, REASON,
    WARP_RAW_VALUE, HUBSPOT_RAW_VALUE, WARP_VALUE, HUBSPOT_VALUE, AGREED_VALUE, WARP_TIME, HUBSPOT_TIME, VALUE,
    ERROR_CODE, ERROR, DETAIL,
]
_TIMES = (WARP_TIME, HUBSPOT_TIME)
WRITE_ACTIONS = (Action.WRITE_TO_HUBSPOT.value, Action.WRITE_TO_WARP.value)


def build_plan(
    differences: pd.DataFrame,
    history: pd.DataFrame,
    rules: FieldRules,
    *,
    planned_at: datetime | None = None,
) -> pd.DataFrame:
    """Decide every differing pair (history's change times filled in first) and collect what to do."""
    pairs = differences[differences[KIND] == PAIR].reset_index(drop=True)
    pairs = _with_history(pairs, history, rules)
    decisions = decide_frame(rules, pairs) if len(pairs) else None
    parts: list[pd.DataFrame] = []
    for field, rule in rules.items():
        if decisions is None:
            break
        action = decisions[col(field, "action")].astype("str").to_numpy(dtype=object)
        reason = decisions[col(field, "reason")].astype("str").to_numpy(dtype=object)
        w, h, a = (pairs[col(field, part)] for part in (WARP, HUBSPOT, AGREED))
        is_change = action != Action.IN_SYNC.value
        is_agreement = ~is_change & ~equal(a, w)
        rows = np.flatnonzero(is_change | is_agreement)
        if not len(rows):
            continue
        act = action[rows]
        w_rows = w.take(rows).to_numpy(dtype=object)
        h_rows = h.take(rows).to_numpy(dtype=object)
        value = np.where(
            act == Action.WRITE_TO_WARP.value, h_rows,
            np.where(np.isin(act, [Action.IN_SYNC.value, Action.WRITE_TO_HUBSPOT.value]), w_rows, None),
        )
        part = pd.DataFrame({
            KIND: np.where(is_change[rows], CHANGE, AGREEMENT),
            CUSTOMER_ID: pairs[CUSTOMER_ID].take(rows).to_numpy(),
            BAN: pairs[BAN].take(rows).to_numpy(),
            COMPANY_ID: pairs[COMPANY_ID].take(rows).to_numpy(),
            MATCH: pairs[MATCH].take(rows).to_numpy(),
            COMPANY_NAME: pairs[COMPANY_NAME].take(rows).to_numpy(),
            FIELD: field,
            HUBSPOT_PROPERTY: rule.hubspot_property,
            ACTION: act,
            REASON: reason[rows],
            WARP_RAW_VALUE: pairs[col(field, WARP_RAW)].take(rows).to_numpy(),
            HUBSPOT_RAW_VALUE: pairs[col(field, HUBSPOT_RAW)].take(rows).to_numpy(),
            WARP_VALUE: w_rows,
            HUBSPOT_VALUE: h_rows,
            AGREED_VALUE: a.take(rows).to_numpy(),
            WARP_TIME: pairs[col(field, WARP_CHANGED_AT)].take(rows).to_numpy(),
            HUBSPOT_TIME: pairs[col(field, HUBSPOT_CHANGED_AT)].take(rows).to_numpy(),
            VALUE: value,
        })
        parts.append(_explain_invalid(part, field))
    links = pairs[pairs[MATCH] == MATCH_BAN]
    if len(links):
        parts.append(pd.DataFrame({
            KIND: LINK, CUSTOMER_ID: links[CUSTOMER_ID].to_numpy(), BAN: links[BAN].to_numpy(),
            COMPANY_ID: links[COMPANY_ID].to_numpy(), MATCH: MATCH_BAN, COMPANY_NAME: links[COMPANY_NAME].to_numpy(),
            DETAIL: "unlinked customer matched by BAN",
        }))
    others = differences[differences[KIND] != PAIR]
    if len(others):
        parts.append(others[[KIND, CUSTOMER_ID, BAN, COMPANY_ID, COMPANY_NAME, DETAIL]].reset_index(drop=True))
    plan = _conform(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PLAN_COLUMNS))
    plan.attrs = _plan_attrs(plan, differences, planned_at or now_utc())
    return plan


def _with_history(pairs: pd.DataFrame, history: pd.DataFrame, rules: FieldRules) -> pd.DataFrame:
    """HubSpot change times from the property history, where it was fetched."""
    if not len(pairs) or history is None or not len(history):
        return pairs
    pairs = pairs.copy()
    company_ids = pairs[COMPANY_ID].to_numpy(dtype=object)
    for field, rule in rules.items():
        found = history[history[PROPERTY] == rule.hubspot_property]
        if not len(found):
            continue
        where = pd.Index(found[COMPANY_ID].to_numpy(dtype=object)).get_indexer(company_ids)
        times = pd.Series(found[CHANGED_AT].to_numpy()[np.maximum(where, 0)], dtype=TIME_DTYPE)
        name = col(field, HUBSPOT_CHANGED_AT)
        pairs[name] = times.where(where >= 0, pairs[name].astype(TIME_DTYPE))
    return pairs


def _explain_invalid(part: pd.DataFrame, field: str) -> pd.DataFrame:
    """Why a value could not be written (SKIP_INVALID): the normaliser's code and message, per row."""
    reasons = part[REASON].to_numpy(dtype=object)
    invalid = np.flatnonzero(np.isin(reasons, [Reason.WARP_VALUE_INVALID.value, Reason.HUBSPOT_VALUE_INVALID.value]))
    codes: list[object] = [None] * len(part)
    messages: list[object] = [None] * len(part)
    for row in invalid:  # invalid values are rare: explained one by one with the scalar normaliser
        source = WARP_RAW_VALUE if reasons[row] == Reason.WARP_VALUE_INVALID.value else HUBSPOT_RAW_VALUE
        raw = part[source].iat[row]
        try:
            comparable(field, None if pd.isna(raw) else raw)
        except InvalidFieldValue as exc:
            codes[row], messages[row] = exc.code, exc.message
    part[ERROR_CODE] = codes
    part[ERROR] = messages
    return part


def _conform(frame: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for name in PLAN_COLUMNS:
        values = frame[name] if name in frame.columns else pd.Series([None] * len(frame), dtype=object)
        out[name] = pd.to_datetime(values, utc=True).astype(TIME_DTYPE) if name in _TIMES else values.astype("str")
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def brake_stats(plan: pd.DataFrame) -> BrakeStats:
    return BrakeStats(**plan.attrs[ATTR_BRAKE])


def _plan_attrs(plan: pd.DataFrame, differences: pd.DataFrame, planned_at: datetime) -> dict[str, object]:
    counts = dict(differences.attrs.get(ATTR_COUNTS, {}))
    changes = plan[plan[KIND] == CHANGE]
    action = changes[ACTION]
    writes = changes[action.isin(WRITE_ACTIONS)]
    counts.update(
        planned_to_hubspot=int((action == Action.WRITE_TO_HUBSPOT.value).sum()),
        planned_to_warp=int((action == Action.WRITE_TO_WARP.value).sum()),
        manual_conflicts=int((action == Action.OPEN_CONFLICT.value).sum()),
        invalid_values=int((action == Action.SKIP_INVALID.value).sum()),
        agreements_to_record=int((plan[KIND] == AGREEMENT).sum()),
        links_to_make=int((plan[KIND] == LINK).sum()),
        records_to_change=int(writes[CUSTOMER_ID].nunique()),
    )
    return {
        ATTR_PULLED_AT: differences.attrs.get(ATTR_PULLED_AT),
        ATTR_PLANNED_AT: iso(planned_at),
        ATTR_RULES: differences.attrs.get(ATTR_RULES),
        ATTR_COUNTS: counts,
        ATTR_BRAKE: {"records_to_change": counts["records_to_change"], "records_compared": int(counts.get("pairs", 0))},
    }
