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
from warp_sync_pipeline.core.normalize import FieldSpec, InvalidFieldValue, comparable
from warp_sync_pipeline.core.reconcile.diff import TIME_DTYPE, bare, positions
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
    MERGED_FROM,
    OPEN_CONFLICTS,
    PAIR,
    WARP_RAW,
    col,
    equal,
    iso,
    now_utc,
    open_conflict_mask,
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
    ERROR_CODE, ERROR, DETAIL, MERGED_FROM,
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
    source = bare(differences)
    is_pair = (source[KIND] == PAIR).to_numpy(dtype=bool)
    # The diff puts its pairs first: a slice, not a copy of every column.
    pair_count = int(is_pair.sum())
    pairs = source.iloc[:pair_count] if is_pair[:pair_count].all() else source[is_pair].reset_index(drop=True)
    pairs = _with_history(pairs, history, rules)
    decisions = decide_frame(rules, pairs) if len(pairs) else None
    parts: list[pd.DataFrame] = []
    for field, rule in rules.items():
        if decisions is None:
            break
        action = decisions[col(field, "action")]
        w, h, a = (pairs[col(field, part)] for part in (WARP, HUBSPOT, AGREED))
        is_change = (action != Action.IN_SYNC.value).to_numpy(dtype=bool)
        in_review = (open_conflict_mask(pairs[OPEN_CONFLICTS], field) if OPEN_CONFLICTS in pairs.columns
                     else np.zeros(len(pairs), dtype=bool))
        # A new agreement, or one that settles an open conflict (recording it closes the conflict).
        is_agreement = ~is_change & (~equal(a, w) | in_review)
        rows = np.flatnonzero(is_change | is_agreement)
        if not len(rows):
            continue

        def take(name: str, rows: np.ndarray = rows) -> pd.Series:
            return pairs[name].take(rows).reset_index(drop=True)

        act = action.take(rows).reset_index(drop=True)
        w_rows, h_rows = take(col(field, WARP)), take(col(field, HUBSPOT))
        # The value both sides hold once done: HubSpot's for a write to WARP, WARP's for a write to HubSpot or
        # an agreement, none for a conflict or an invalid value (decide()'s choice, spelled out).
        to_warp = (act == Action.WRITE_TO_WARP.value).to_numpy(dtype=bool)
        keeps_warp = act.isin([Action.IN_SYNC.value, Action.WRITE_TO_HUBSPOT.value]).to_numpy(dtype=bool)
        value = w_rows.where(keeps_warp, h_rows.where(to_warp))
        part = pd.DataFrame({
            KIND: pd.Series(np.where(is_change[rows], CHANGE, AGREEMENT), dtype="str"),
            CUSTOMER_ID: take(CUSTOMER_ID),
            BAN: take(BAN),
            COMPANY_ID: take(COMPANY_ID),
            MATCH: take(MATCH),
            COMPANY_NAME: take(COMPANY_NAME),
            FIELD: field,
            HUBSPOT_PROPERTY: rule.hubspot_property,
            ACTION: act.astype("str"),
            REASON: decisions[col(field, "reason")].take(rows).reset_index(drop=True).astype("str"),
            WARP_RAW_VALUE: take(col(field, WARP_RAW)),
            HUBSPOT_RAW_VALUE: take(col(field, HUBSPOT_RAW)),
            WARP_VALUE: w_rows,
            HUBSPOT_VALUE: h_rows,
            AGREED_VALUE: take(col(field, AGREED)),
            WARP_TIME: take(col(field, WARP_CHANGED_AT)),
            HUBSPOT_TIME: take(col(field, HUBSPOT_CHANGED_AT)),
            VALUE: value,
        })
        parts.append(_explain_invalid(part, rules[field].spec))
    links = pairs[pairs[MATCH] == MATCH_BAN]
    if len(links):
        parts.append(pd.DataFrame({
            KIND: LINK, CUSTOMER_ID: links[CUSTOMER_ID].to_numpy(), BAN: links[BAN].to_numpy(),
            COMPANY_ID: links[COMPANY_ID].to_numpy(), MATCH: MATCH_BAN, COMPANY_NAME: links[COMPANY_NAME].to_numpy(),
            DETAIL: "unlinked customer matched by BAN",
        }))
    others = source[~is_pair]
    if len(others):
        parts.append(others[[KIND, CUSTOMER_ID, BAN, COMPANY_ID, COMPANY_NAME, DETAIL, MERGED_FROM]]
                     .reset_index(drop=True))
    plan = _conform(pd.concat([_conform(p) for p in parts], ignore_index=True) if parts else _conform(pd.DataFrame()))
    plan.attrs = _plan_attrs(plan, differences, planned_at or now_utc())
    return plan


def _with_history(pairs: pd.DataFrame, history: pd.DataFrame, rules: FieldRules) -> pd.DataFrame:
    """HubSpot change times from the property history, where it was fetched."""
    if not len(pairs) or history is None or not len(history):
        return pairs
    pairs = pairs.copy(deep=False)
    for field, rule in rules.items():
        found = history[history[PROPERTY] == rule.hubspot_property]
        if not len(found):
            continue
        where = positions(found[COMPANY_ID], pairs[COMPANY_ID])
        # Naive UTC instants: numpy takes them without building a Timestamp per row.
        times = found[CHANGED_AT].astype(TIME_DTYPE).to_numpy(dtype="datetime64[us]")[np.maximum(where, 0)]
        name = col(field, HUBSPOT_CHANGED_AT)
        fetched = pd.Series(times).dt.tz_localize("UTC").astype(TIME_DTYPE)
        pairs[name] = fetched.where(where >= 0, pairs[name].astype(TIME_DTYPE))
    return pairs


def _explain_invalid(part: pd.DataFrame, field: FieldSpec) -> pd.DataFrame:
    """Why a value could not be written (SKIP_INVALID): the normaliser's code and message, once per distinct
    value (the scalar normaliser says why; invalid values are few and repeat)."""
    reasons = part[REASON]
    codes = pd.Series(None, index=part.index, dtype="str")
    messages = pd.Series(None, index=part.index, dtype="str")
    for reason, source in ((Reason.WARP_VALUE_INVALID, WARP_RAW_VALUE), (Reason.HUBSPOT_VALUE_INVALID, HUBSPOT_RAW_VALUE)):
        rows = (reasons == reason.value).to_numpy(dtype=bool)
        if not rows.any():
            continue
        raw = part[source][rows]
        code_of: dict[object, str] = {}
        message_of: dict[object, str] = {}
        for value in raw.drop_duplicates().tolist():
            try:
                comparable(field, None if pd.isna(value) else value)
            except InvalidFieldValue as exc:
                code_of[value], message_of[value] = exc.code, exc.message
        codes[rows] = raw.map(code_of).to_numpy(dtype=object)
        messages[rows] = raw.map(message_of).to_numpy(dtype=object)
    part[ERROR_CODE] = codes
    part[ERROR] = messages
    return part


def _conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Every plan column in its type (text as `str`, times as UTC datetimes), converting only what is not."""
    out = {}
    for name in PLAN_COLUMNS:
        if name not in frame.columns:
            out[name] = pd.Series(pd.NaT if name in _TIMES else None, index=range(len(frame)),
                                  dtype=TIME_DTYPE if name in _TIMES else "str")
            continue
        values = frame[name]
        if name in _TIMES:
            out[name] = values if values.dtype == TIME_DTYPE else pd.to_datetime(values, utc=True).astype(TIME_DTYPE)
        else:
            out[name] = values if isinstance(values.dtype, pd.StringDtype) else values.astype("str")
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def brake_stats(plan: pd.DataFrame) -> BrakeStats:
    return BrakeStats(**plan.attrs[ATTR_BRAKE])


def _plan_attrs(plan: pd.DataFrame, differences: pd.DataFrame, planned_at: datetime) -> dict[str, object]:
    counts = dict(differences.attrs.get(ATTR_COUNTS, {}))
    kind = plan[KIND]
    action = plan[ACTION].where((kind == CHANGE).to_numpy(dtype=bool))
    writes = action.isin(WRITE_ACTIONS).to_numpy(dtype=bool)
    counts.update(
        planned_to_hubspot=int((action == Action.WRITE_TO_HUBSPOT.value).sum()),
        planned_to_warp=int((action == Action.WRITE_TO_WARP.value).sum()),
        manual_conflicts=int((action == Action.OPEN_CONFLICT.value).sum()),
        invalid_values=int((action == Action.SKIP_INVALID.value).sum()),
        agreements_to_record=int((kind == AGREEMENT).sum()),
        links_to_make=int((kind == LINK).sum()),
        records_to_change=int(plan[CUSTOMER_ID][writes].nunique()),
    )
    return {
        ATTR_PULLED_AT: differences.attrs.get(ATTR_PULLED_AT),
        ATTR_PLANNED_AT: iso(planned_at),
        ATTR_RULES: differences.attrs.get(ATTR_RULES),
        ATTR_COUNTS: counts,
        ATTR_BRAKE: {"records_to_change": counts["records_to_change"], "records_compared": int(counts.get("pairs", 0))},
    }
