"""The one decision function: what to do with one field of one customer, and why.

`decide()` decides one field (the webhook path calls it per event); `decide_frame()` applies the same rules to
a DataFrame of customers with numpy operations, no Python loop per row (the nightly reconciliation), and a
property test proves the two give the same action and reason for every input. The rules (DESIGN.md, "Field
rules"), on values compared in their normalised form:

1. Equal: IN_SYNC (EQUAL).
2. One-way field: the owner's value is written to the other side, whatever changed there. When the other
   side moved away from the last agreed value, that was drift and is reverted (HUBSPOT_DRIFT_REVERTED /
   WARP_DRIFT_REVERTED); otherwise the owner changed, or nothing was agreed yet (ONE_WAY_FROM_WARP /
   ONE_WAY_FROM_HUBSPOT).
3. Two-way field, only one side moved from the agreed value: that side wins (ONLY_WARP_CHANGED /
   ONLY_HUBSPOT_CHANGED).
4. Two-way field, both moved (CONFLICT_...) or no agreed value yet (NO_AGREED_VALUE_...): the strategy
   decides. HUBSPOT_WINS / WARP_WINS; MANUAL opens a review item and writes nothing; LATEST_WINS compares the
   two change times: WARP strictly newer wins (..._LATEST_WINS_WARP_NEWER), a tie goes to HubSpot, the source
   of truth (..._LATEST_WINS_HUBSPOT_NEWER_OR_TIE), and when either change time is unknown the times cannot
   be compared, so HubSpot wins too, under a reason of its own (..._LATEST_WINS_TIME_UNKNOWN).
5. Invalid values (see normalize.py): an invalid value is unequal to everything, so a one-way field whose
   non-owning side holds garbage is simply reverted. When the chosen write would carry an invalid value,
   nothing is written: SKIP_INVALID with WARP_VALUE_INVALID / HUBSPOT_VALUE_INVALID, for a person to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import numpy as np
import pandas as pd

from warp_sync_pipeline.core.fields import Direction, FieldRule, Strategy
from warp_sync_pipeline.core.normalize import InvalidFieldValue, comparable, comparable_series


class Action(StrEnum):
    IN_SYNC = "IN_SYNC"
    WRITE_TO_HUBSPOT = "WRITE_TO_HUBSPOT"
    WRITE_TO_WARP = "WRITE_TO_WARP"
    OPEN_CONFLICT = "OPEN_CONFLICT"
    SKIP_INVALID = "SKIP_INVALID"


class Reason(StrEnum):
    """Stable codes: flows log them, reports count them. Add new ones at the end."""

    EQUAL = "EQUAL"
    ONE_WAY_FROM_WARP = "ONE_WAY_FROM_WARP"
    HUBSPOT_DRIFT_REVERTED = "HUBSPOT_DRIFT_REVERTED"
    ONE_WAY_FROM_HUBSPOT = "ONE_WAY_FROM_HUBSPOT"
    WARP_DRIFT_REVERTED = "WARP_DRIFT_REVERTED"
    ONLY_WARP_CHANGED = "ONLY_WARP_CHANGED"
    ONLY_HUBSPOT_CHANGED = "ONLY_HUBSPOT_CHANGED"
    CONFLICT_HUBSPOT_WINS = "CONFLICT_HUBSPOT_WINS"
    CONFLICT_WARP_WINS = "CONFLICT_WARP_WINS"
    CONFLICT_LATEST_WINS_WARP_NEWER = "CONFLICT_LATEST_WINS_WARP_NEWER"
    CONFLICT_LATEST_WINS_HUBSPOT_NEWER_OR_TIE = "CONFLICT_LATEST_WINS_HUBSPOT_NEWER_OR_TIE"
    CONFLICT_LATEST_WINS_TIME_UNKNOWN = "CONFLICT_LATEST_WINS_TIME_UNKNOWN"
    CONFLICT_MANUAL_REVIEW = "CONFLICT_MANUAL_REVIEW"
    NO_AGREED_VALUE_HUBSPOT_WINS = "NO_AGREED_VALUE_HUBSPOT_WINS"
    NO_AGREED_VALUE_WARP_WINS = "NO_AGREED_VALUE_WARP_WINS"
    NO_AGREED_VALUE_LATEST_WINS_WARP_NEWER = "NO_AGREED_VALUE_LATEST_WINS_WARP_NEWER"
    NO_AGREED_VALUE_LATEST_WINS_HUBSPOT_NEWER_OR_TIE = "NO_AGREED_VALUE_LATEST_WINS_HUBSPOT_NEWER_OR_TIE"
    NO_AGREED_VALUE_LATEST_WINS_TIME_UNKNOWN = "NO_AGREED_VALUE_LATEST_WINS_TIME_UNKNOWN"
    NO_AGREED_VALUE_MANUAL_REVIEW = "NO_AGREED_VALUE_MANUAL_REVIEW"
    WARP_VALUE_INVALID = "WARP_VALUE_INVALID"
    HUBSPOT_VALUE_INVALID = "HUBSPOT_VALUE_INVALID"


R = Reason
A = Action
REASON_ACTION: Mapping[Reason, Action] = {
    R.EQUAL: A.IN_SYNC,
    R.ONE_WAY_FROM_WARP: A.WRITE_TO_HUBSPOT,
    R.HUBSPOT_DRIFT_REVERTED: A.WRITE_TO_HUBSPOT,
    R.ONE_WAY_FROM_HUBSPOT: A.WRITE_TO_WARP,
    R.WARP_DRIFT_REVERTED: A.WRITE_TO_WARP,
    R.ONLY_WARP_CHANGED: A.WRITE_TO_HUBSPOT,
    R.ONLY_HUBSPOT_CHANGED: A.WRITE_TO_WARP,
    R.CONFLICT_HUBSPOT_WINS: A.WRITE_TO_WARP,
    R.CONFLICT_WARP_WINS: A.WRITE_TO_HUBSPOT,
    R.CONFLICT_LATEST_WINS_WARP_NEWER: A.WRITE_TO_HUBSPOT,
    R.CONFLICT_LATEST_WINS_HUBSPOT_NEWER_OR_TIE: A.WRITE_TO_WARP,
    R.CONFLICT_LATEST_WINS_TIME_UNKNOWN: A.WRITE_TO_WARP,
    R.CONFLICT_MANUAL_REVIEW: A.OPEN_CONFLICT,
    R.NO_AGREED_VALUE_HUBSPOT_WINS: A.WRITE_TO_WARP,
    R.NO_AGREED_VALUE_WARP_WINS: A.WRITE_TO_HUBSPOT,
    R.NO_AGREED_VALUE_LATEST_WINS_WARP_NEWER: A.WRITE_TO_HUBSPOT,
    R.NO_AGREED_VALUE_LATEST_WINS_HUBSPOT_NEWER_OR_TIE: A.WRITE_TO_WARP,
    R.NO_AGREED_VALUE_LATEST_WINS_TIME_UNKNOWN: A.WRITE_TO_WARP,
    R.NO_AGREED_VALUE_MANUAL_REVIEW: A.OPEN_CONFLICT,
    R.WARP_VALUE_INVALID: A.SKIP_INVALID,
    R.HUBSPOT_VALUE_INVALID: A.SKIP_INVALID,
}

# How the strategy settles a conflict (both changed) or a field with no agreed value yet.
_RESOLUTION: Mapping[tuple[bool, Strategy, str], Reason] = {
    (conflict, strategy, outcome): R[f"{'CONFLICT' if conflict else 'NO_AGREED_VALUE'}_{suffix}"]
    for conflict in (True, False)
    for strategy, outcome, suffix in (
        (Strategy.HUBSPOT_WINS, "", "HUBSPOT_WINS"),
        (Strategy.WARP_WINS, "", "WARP_WINS"),
        (Strategy.MANUAL, "", "MANUAL_REVIEW"),
        (Strategy.LATEST_WINS, "warp_newer", "LATEST_WINS_WARP_NEWER"),
        (Strategy.LATEST_WINS, "hubspot_newer_or_tie", "LATEST_WINS_HUBSPOT_NEWER_OR_TIE"),
        (Strategy.LATEST_WINS, "time_unknown", "LATEST_WINS_TIME_UNKNOWN"),
    )
}


@dataclass(frozen=True)
class Observed:
    """A value as one side holds it (either side's representation, or comparable text) and when it changed.

    `changed_at` must be timezone-aware; None means unknown.
    """

    value: object
    changed_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: Reason
    # The comparable value both sides hold once the decision is carried out (IN_SYNC and writes).
    value: str | None = None
    # Why a value could not be used (SKIP_INVALID), or an invalid value on the side that lost.
    error: InvalidFieldValue | None = None

    @property
    def write_direction(self) -> Direction | None:
        if self.action is Action.WRITE_TO_HUBSPOT:
            return Direction.WARP_TO_HUBSPOT
        if self.action is Action.WRITE_TO_WARP:
            return Direction.HUBSPOT_TO_WARP
        return None


def decide(rule: FieldRule, agreed: Observed | None, warp: Observed, hubspot: Observed) -> Decision:
    """Decide one field. `agreed` is None when the two sides never agreed on a value.

    Side values that cannot be normalised do not raise (see rule 5 above); an agreed value that cannot is a
    corrupt state row and raises InvalidFieldValue.
    """
    w, w_error = _comparable_or_invalid(rule, warp.value)
    h, h_error = _comparable_or_invalid(rule, hubspot.value)
    a = None if agreed is None else comparable(rule.spec, agreed.value)
    reason = _reason(rule, a, w, h, _aware(warp.changed_at), _aware(hubspot.changed_at))
    action = REASON_ACTION[reason]
    if action is Action.WRITE_TO_HUBSPOT and w is None:
        return Decision(Action.SKIP_INVALID, Reason.WARP_VALUE_INVALID, None, w_error)
    if action is Action.WRITE_TO_WARP and h is None:
        return Decision(Action.SKIP_INVALID, Reason.HUBSPOT_VALUE_INVALID, None, h_error)
    if action is Action.OPEN_CONFLICT:
        value = None
    elif action is Action.WRITE_TO_WARP:
        value = h
    else:  # IN_SYNC or WRITE_TO_HUBSPOT: WARP's value is the one both will hold
        value = w
    return Decision(action, reason, value, w_error or h_error)


def _comparable_or_invalid(rule: FieldRule, value: object) -> tuple[str | None, InvalidFieldValue | None]:
    try:
        return comparable(rule.spec, value), None
    except InvalidFieldValue as exc:
        return None, exc


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise ValueError("change times must be timezone-aware")
    return moment


def _reason(
    rule: FieldRule, a: str | None, w: str | None, h: str | None, wt: datetime | None, ht: datetime | None
) -> Reason:
    # w or h None: invalid, unequal to everything. a None: no agreed value.
    if w is not None and w == h:
        return Reason.EQUAL
    if rule.direction is Direction.WARP_TO_HUBSPOT:
        return Reason.HUBSPOT_DRIFT_REVERTED if a is not None and h != a else Reason.ONE_WAY_FROM_WARP
    if rule.direction is Direction.HUBSPOT_TO_WARP:
        return Reason.WARP_DRIFT_REVERTED if a is not None and w != a else Reason.ONE_WAY_FROM_HUBSPOT
    if a is not None and w == a:
        return Reason.ONLY_HUBSPOT_CHANGED
    if a is not None and h == a:
        return Reason.ONLY_WARP_CHANGED
    if rule.strategy is Strategy.LATEST_WINS:
        if wt is None or ht is None:
            outcome = "time_unknown"
        else:
            outcome = "warp_newer" if wt > ht else "hubspot_newer_or_tie"
    else:
        outcome = ""
    return _RESOLUTION[(a is not None, rule.strategy, outcome)]


# --- the vectorized form ---------------------------------------------------------------------------------------
#
# Input: one row per customer (any index), and per mapped field these columns (see `column()`):
#   {field}__warp                 WARP's value, comparable text ("" = empty); NA = invalid value
#   {field}__hubspot              HubSpot's value, likewise
#   {field}__agreed               last agreed comparable text ("" = agreed on empty); NA = no agreed value
#   {field}__warp_changed_at      timezone-aware datetimes, NaT = unknown; required only for
#   {field}__hubspot_changed_at   BIDIRECTIONAL + LATEST_WINS fields
# `comparable_series()` produces the value columns from raw columns (and `build_decision_frame()` assembles
# the whole frame). Output: same index, {field}__action and {field}__reason as Categoricals.

WARP = "warp"
HUBSPOT = "hubspot"
AGREED = "agreed"
WARP_CHANGED_AT = "warp_changed_at"
HUBSPOT_CHANGED_AT = "hubspot_changed_at"

ACTIONS: tuple[Action, ...] = tuple(Action)
REASONS: tuple[Reason, ...] = tuple(Reason)
_CODE = {reason: np.int8(position) for position, reason in enumerate(REASONS)}
_ACTION_CODE_OF_REASON = np.array([ACTIONS.index(REASON_ACTION[r]) for r in REASONS], dtype=np.int8)
_ACTION_CATEGORIES = pd.CategoricalDtype(list(ACTIONS))
_REASON_CATEGORIES = pd.CategoricalDtype(list(REASONS))


def column(field: str, part: str) -> str:
    return f"{field}__{part}"


def required_columns(rule: FieldRule) -> list[str]:
    parts = [WARP, HUBSPOT, AGREED]
    if rule.direction is Direction.BIDIRECTIONAL and rule.strategy is Strategy.LATEST_WINS:
        parts += [WARP_CHANGED_AT, HUBSPOT_CHANGED_AT]
    return [column(rule.warp_field, part) for part in parts]


def _rule_list(rules: Mapping[str, FieldRule] | Iterable[FieldRule]) -> list[FieldRule]:
    return list(rules.values()) if isinstance(rules, Mapping) else list(rules)


def decide_frame(rules: Mapping[str, FieldRule] | Iterable[FieldRule], frame: pd.DataFrame) -> pd.DataFrame:
    """decide() for every row and rule at once; {field}__action and {field}__reason columns."""
    rule_list = _rule_list(rules)
    missing = [name for rule in rule_list for name in required_columns(rule) if name not in frame.columns]
    if missing:
        raise KeyError(f"decide_frame needs columns {missing}")
    out: dict[str, pd.Categorical] = {}
    for rule in rule_list:
        codes = reason_codes(rule, frame)
        out[column(rule.warp_field, "action")] = pd.Categorical.from_codes(
            _ACTION_CODE_OF_REASON[codes], dtype=_ACTION_CATEGORIES
        )
        out[column(rule.warp_field, "reason")] = pd.Categorical.from_codes(codes, dtype=_REASON_CATEGORIES)
    return pd.DataFrame(out, index=frame.index)


def reason_codes(rule: FieldRule, frame: pd.DataFrame) -> np.ndarray:
    """One field's reasons as int8 positions in REASONS (the core of decide_frame)."""
    field = rule.warp_field
    w = frame[column(field, WARP)]
    h = frame[column(field, HUBSPOT)]
    a = frame[column(field, AGREED)]
    w_ok = w.notna().to_numpy(dtype=bool)
    h_ok = h.notna().to_numpy(dtype=bool)
    a_ok = a.notna().to_numpy(dtype=bool)
    eq_wh = _equal(w, h)
    eq_wa = _equal(w, a)
    eq_ha = _equal(h, a)

    c = _CODE
    if rule.direction is Direction.WARP_TO_HUBSPOT:
        drift = a_ok & ~eq_ha
        codes = np.where(drift, c[R.HUBSPOT_DRIFT_REVERTED], c[R.ONE_WAY_FROM_WARP])
    elif rule.direction is Direction.HUBSPOT_TO_WARP:
        drift = a_ok & ~eq_wa
        codes = np.where(drift, c[R.WARP_DRIFT_REVERTED], c[R.ONE_WAY_FROM_HUBSPOT])
    else:
        if rule.strategy is Strategy.LATEST_WINS:
            wt = _times(frame, column(field, WARP_CHANGED_AT))
            ht = _times(frame, column(field, HUBSPOT_CHANGED_AT))
            known = ~np.isnat(wt) & ~np.isnat(ht)
            outcome = np.where(known, np.where(wt > ht, 0, 1), 2)
            outcomes = ("warp_newer", "hubspot_newer_or_tie", "time_unknown")
            conflict = np.array([c[_RESOLUTION[(True, rule.strategy, o)]] for o in outcomes])[outcome]
            fresh = np.array([c[_RESOLUTION[(False, rule.strategy, o)]] for o in outcomes])[outcome]
        else:
            conflict = c[_RESOLUTION[(True, rule.strategy, "")]]
            fresh = c[_RESOLUTION[(False, rule.strategy, "")]]
        # eq_wa / eq_ha imply an agreed value (NA equals nothing).
        codes = np.where(
            eq_wa,
            c[R.ONLY_HUBSPOT_CHANGED],
            np.where(eq_ha, c[R.ONLY_WARP_CHANGED], np.where(a_ok, conflict, fresh)),
        )
    codes = np.where(eq_wh, c[R.EQUAL], codes).astype(np.int8)
    action = _ACTION_CODE_OF_REASON[codes]
    codes[(action == ACTIONS.index(A.WRITE_TO_HUBSPOT)) & ~w_ok] = c[R.WARP_VALUE_INVALID]
    codes[(action == ACTIONS.index(A.WRITE_TO_WARP)) & ~h_ok] = c[R.HUBSPOT_VALUE_INVALID]
    return codes


def _equal(x: pd.Series, y: pd.Series) -> np.ndarray:
    """Element-wise equality where NA equals nothing (not even NA)."""
    if x.dtype != y.dtype:
        x, y = x.astype("str"), y.astype("str")
    both = x.notna().to_numpy(dtype=bool) & y.notna().to_numpy(dtype=bool)
    return (x == y).to_numpy(dtype=bool, na_value=False) & both


def _times(frame: pd.DataFrame, name: str) -> np.ndarray:
    values = frame[name]
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.to_numpy(dtype=f"datetime64[{values.dt.unit}]")  # UTC instants
    if pd.api.types.is_datetime64_dtype(values.dtype):
        raise TypeError(f"{name}: change times must be timezone-aware")
    if values.isna().all():
        return np.full(len(values), np.datetime64("NaT"), dtype="datetime64[ns]")
    raise TypeError(f"{name}: expected timezone-aware datetimes, got {values.dtype}")


def build_decision_frame(
    rules: Mapping[str, FieldRule] | Iterable[FieldRule],
    warp_values: pd.DataFrame,
    hubspot_values: pd.DataFrame,
    agreed: pd.DataFrame | None = None,
    warp_changed_at: pd.DataFrame | None = None,
    hubspot_changed_at: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Assemble decide_frame's input from raw columns sharing one index (one row per customer).

    warp_values: columns named by WARP field (WARP's values or their text); hubspot_values: columns named by
    HubSpot property (HubSpot's strings); agreed: comparable text by WARP field, NA = none (absent = none);
    the change-time frames by WARP field (absent = unknown).
    """
    columns: dict[str, pd.Series] = {}
    index = warp_values.index
    unknown = pd.Series(pd.NaT, index=index, dtype="datetime64[ns, UTC]")
    for rule in _rule_list(rules):
        field = rule.warp_field
        columns[column(field, WARP)] = comparable_series(rule.spec, warp_values[field])
        columns[column(field, HUBSPOT)] = comparable_series(rule.spec, hubspot_values[rule.hubspot_property])
        if agreed is not None and field in agreed.columns:
            columns[column(field, AGREED)] = agreed[field].astype("str")
        else:
            columns[column(field, AGREED)] = pd.Series(pd.NA, index=index, dtype="str")
        for part, times in ((WARP_CHANGED_AT, warp_changed_at), (HUBSPOT_CHANGED_AT, hubspot_changed_at)):
            columns[column(field, part)] = (
                times[field] if times is not None and field in times.columns else unknown
            )
    return pd.DataFrame(columns, index=index)


def changes(decisions: pd.DataFrame, rules: Mapping[str, FieldRule] | Iterable[FieldRule]) -> pd.DataFrame:
    """The decisions that are not IN_SYNC, one row per customer and field (index kept as a column)."""
    index_name = decisions.index.name or "index"
    parts: list[pd.DataFrame] = []
    for rule in _rule_list(rules):
        action = decisions[column(rule.warp_field, "action")]
        differs = (action != Action.IN_SYNC).to_numpy(dtype=bool)
        if differs.any():
            parts.append(
                pd.DataFrame(
                    {
                        index_name: decisions.index[differs],
                        "field": rule.warp_field,
                        "action": action[differs].astype("str").to_numpy(),
                        "reason": decisions[column(rule.warp_field, "reason")][differs].astype("str").to_numpy(),
                    }
                )
            )
    if not parts:
        return pd.DataFrame({index_name: [], "field": [], "action": [], "reason": []})
    return pd.concat(parts, ignore_index=True)
