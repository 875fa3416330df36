"""decide_frame() gives the same action and reason as decide(), for every direction, strategy, change pattern,
null pattern and time order: raw values go through the vectorized normalisation on one side and the scalar
one on the other, so the two normalisations are proven to agree too."""

from __future__ import annotations

import contextlib
import itertools
import json
from datetime import UTC, datetime
from decimal import Decimal

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from warp_sync_pipeline.core.decision import (
    Action,
    Observed,
    Reason,
    build_decision_frame,
    decide,
    decide_frame,
)
from warp_sync_pipeline.core.fields import SEEDED_RULES, Direction, FieldRule, Strategy
from warp_sync_pipeline.core.normalize import FIELD_SPECS, InvalidFieldValue, comparable

PROPERTY = {rule.warp_field: rule.hubspot_property for rule in SEEDED_RULES}

# Per field: values as WARP holds them and as HubSpot sends them; several spellings of one value, empties and
# nulls, and values the other side cannot take.
ON = {"voice": True, "messaging": False, "data": True}
OFF = {"voice": False, "messaging": False, "data": False}
WARP_VALUES: dict[str, list[object]] = {
    "ban": ["ZT-000000001", "ZT-000000002", " ZT-000000001", "ZT-1", None],
    "company_name": ["Acme", "Acme ", "Globex", "", None],
    "status": ["ACTIVE", "SUSPENDED", "active", None],
    "credit_limit": [Decimal("10000.00"), Decimal("1E+4"), Decimal("250.50"), None, Decimal("-1.00"),
                     Decimal("0.001")],
    "current_balance": [Decimal("0.00"), Decimal("-12.50"), Decimal("-12.5"), None],
    "services": [ON, OFF, {"voice": True, "messaging": True, "data": True}, {"voice": "yes"}, None],
    "payment_terms": ["NET30", "NET15", None, "NET90"],
    "contact_email": ["ops@acme.com", "Ops@Acme.com", "sales@acme.com", None, "not-an-email"],
}
HUBSPOT_VALUES: dict[str, list[str | None]] = {
    "ban": ["ZT-000000001", "ZT-000000002", "", None, "zt-000000001"],
    "company_name": ["Acme", " Acme", "Globex", "", None, "Acme\x07"],
    "status": ["ACTIVE", "SUSPENDED", "", None, "DORMANT"],
    "credit_limit": ["10000", "10000.00", "250.5", "", None, "12.345", "abc", "-5"],
    "current_balance": ["0", "-12.5", "100", "", None],
    "services": ["voice;data", "data;voice", "", None, "voice;messaging;data", "fax"],
    "payment_terms": ["NET30", "NET15", "", None, "NET90"],
    "contact_email": ["ops@acme.com", "OPS@acme.com ", "sales@acme.com", "", None, "bad"],
}


def _agreed_values(field: str) -> list[str | None]:
    found: dict[str, None] = {}
    for value in [*WARP_VALUES[field], *HUBSPOT_VALUES[field]]:
        with contextlib.suppress(InvalidFieldValue):
            found.setdefault(comparable(field, value), None)
    return [None, *found]


T1 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
T2 = datetime(2024, 3, 1, 9, 5, tzinfo=UTC)
T3 = datetime(2024, 3, 1, 9, 5, 0, 1000, tzinfo=UTC)
TIMES = [None, T1, T2, T3]
RULE_SHAPES = list(itertools.product(Direction, Strategy))


def _warp_as_text(value: object) -> object:
    """WARP values as a `::text` select gives them (the reconciliation's cheap path)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _assert_frame_matches_scalar(
    rule: FieldRule, rows: list[tuple[str | None, object, object, datetime | None, datetime | None]],
    warp_as_text: bool,
) -> None:
    field = rule.warp_field
    agreed, warp, hubspot, warp_at, hubspot_at = (list(column) for column in zip(*rows, strict=True))
    warp_column = [_warp_as_text(value) for value in warp] if warp_as_text else warp
    frame = build_decision_frame(
        [rule],
        pd.DataFrame({field: pd.Series(warp_column, dtype="str" if warp_as_text else object)}),
        pd.DataFrame({rule.hubspot_property: pd.Series(hubspot, dtype="str")}),
        agreed=pd.DataFrame({field: pd.Series(agreed, dtype="str")}),
        warp_changed_at=pd.DataFrame({field: pd.Series(warp_at, dtype="datetime64[us, UTC]")}),
        hubspot_changed_at=pd.DataFrame({field: pd.Series(hubspot_at, dtype="datetime64[ms, UTC]")}),
    )
    decided = decide_frame([rule], frame)
    actions = decided[f"{field}__action"].tolist()
    reasons = decided[f"{field}__reason"].tolist()
    for position, (a, w, h, wt, ht) in enumerate(rows):
        expected = decide(rule, None if a is None else Observed(a), Observed(w, wt), Observed(h, ht))
        got = (Action(actions[position]), Reason(reasons[position]))
        assert got == (expected.action, expected.reason), (rule, rows[position])


@st.composite
def decision_cases(draw: st.DrawFn) -> tuple[FieldRule, list[tuple], bool]:
    field = draw(st.sampled_from(sorted(FIELD_SPECS)))
    direction, strategy = draw(st.sampled_from(RULE_SHAPES))
    rule = FieldRule(field, PROPERTY[field], direction, strategy)
    row = st.tuples(
        st.sampled_from(_agreed_values(field)),
        st.sampled_from(WARP_VALUES[field]),
        st.sampled_from(HUBSPOT_VALUES[field]),
        st.sampled_from(TIMES),
        st.sampled_from(TIMES),
    )
    return rule, draw(st.lists(row, min_size=1, max_size=40)), draw(st.booleans())


@settings(max_examples=300, deadline=None)
@given(decision_cases())
def test_decide_frame_agrees_with_decide(case: tuple[FieldRule, list[tuple], bool]) -> None:
    rule, rows, warp_as_text = case
    _assert_frame_matches_scalar(rule, rows, warp_as_text)


def test_decide_frame_agrees_with_decide_exhaustively() -> None:
    # Every combination of the value pools, times and rule shapes, for a text and an amount field.
    for field in ("company_name", "credit_limit"):
        rows = list(
            itertools.product(_agreed_values(field), WARP_VALUES[field], HUBSPOT_VALUES[field], TIMES, TIMES)
        )
        for direction, strategy in RULE_SHAPES:
            _assert_frame_matches_scalar(FieldRule(field, PROPERTY[field], direction, strategy), rows, False)


def test_the_pools_reach_every_reason() -> None:
    # Guards the two tests above: their inputs must produce every reason there is.
    seen: set[Reason] = set()
    for field in sorted(FIELD_SPECS):
        for direction, strategy in RULE_SHAPES:
            rule = FieldRule(field, PROPERTY[field], direction, strategy)
            for a, w, h, wt, ht in itertools.product(
                _agreed_values(field), WARP_VALUES[field], HUBSPOT_VALUES[field], TIMES, [None, T2]
            ):
                seen.add(decide(rule, None if a is None else Observed(a), Observed(w, wt), Observed(h, ht)).reason)
    assert seen == set(Reason)
