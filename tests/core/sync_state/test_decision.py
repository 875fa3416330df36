"""The decision function, case by case: every row of DESIGN.md's field table and every strategy."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pandas as pd
import pytest

from warp_sync_pipeline.core.decision import (
    Action,
    Decision,
    Observed,
    Reason,
    build_decision_frame,
    changes,
    decide,
    decide_frame,
)
from warp_sync_pipeline.core.fields import Direction, FieldRule, Strategy

# The rules exactly as DESIGN.md's table (and the seeded mapping table) gives them.
SEEDED = {
    "ban": FieldRule("ban", "warp_ban", Direction.WARP_TO_HUBSPOT, Strategy.WARP_WINS),
    "company_name": FieldRule("company_name", "name", Direction.BIDIRECTIONAL, Strategy.LATEST_WINS),
    "status": FieldRule("status", "warp_status", Direction.WARP_TO_HUBSPOT, Strategy.WARP_WINS),
    "credit_limit": FieldRule("credit_limit", "warp_credit_limit", Direction.BIDIRECTIONAL, Strategy.HUBSPOT_WINS),
    "current_balance": FieldRule(
        "current_balance", "warp_current_balance", Direction.WARP_TO_HUBSPOT, Strategy.WARP_WINS
    ),
    "services": FieldRule("services", "warp_services", Direction.WARP_TO_HUBSPOT, Strategy.WARP_WINS),
    "payment_terms": FieldRule(
        "payment_terms", "warp_payment_terms", Direction.HUBSPOT_TO_WARP, Strategy.HUBSPOT_WINS
    ),
    "contact_email": FieldRule(
        "contact_email", "warp_contact_email", Direction.BIDIRECTIONAL, Strategy.LATEST_WINS
    ),
}

T0900 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
T0905 = datetime(2024, 3, 1, 9, 5, tzinfo=UTC)
NO_AGREED = object()  # marker: the sides never agreed


def _decide(field: str, agreed: object, warp: object, hubspot: object,
            warp_at: datetime | None = None, hubspot_at: datetime | None = None,
            rule: FieldRule | None = None) -> Decision:
    return decide(
        rule or SEEDED[field],
        None if agreed is NO_AGREED else Observed(agreed),
        Observed(warp, warp_at),
        Observed(hubspot, hubspot_at),
    )


VOICE_DATA = {"voice": True, "messaging": False, "data": True}
VOICE = {"voice": True, "messaging": False, "data": False}

CASES = [
    # (id, field, agreed, warp, hubspot, warp_at, hubspot_at, action, reason, value)
    ("ban equal", "ban", "ZT-000000001", "ZT-000000001", "ZT-000000001", None, None,
     Action.IN_SYNC, Reason.EQUAL, "ZT-000000001"),
    ("ban edited in HubSpot is reverted", "ban", "ZT-000000001", "ZT-000000001", "ZT-000000999", None, None,
     Action.WRITE_TO_HUBSPOT, Reason.HUBSPOT_DRIFT_REVERTED, "ZT-000000001"),
    ("ban missing in HubSpot", "ban", NO_AGREED, "ZT-000000001", "", None, None,
     Action.WRITE_TO_HUBSPOT, Reason.ONE_WAY_FROM_WARP, "ZT-000000001"),
    # The original note: WARP renamed at 9:00, HubSpot at 9:05; LATEST_WINS gives it to HubSpot.
    ("company_name 9:00 WARP / 9:05 HubSpot", "company_name", "Acme", "Acme Telecom", "ACME Corp", T0900, T0905,
     Action.WRITE_TO_WARP, Reason.CONFLICT_LATEST_WINS_HUBSPOT_NEWER_OR_TIE, "ACME Corp"),
    ("company_name WARP newer", "company_name", "Acme", "Acme Telecom", "ACME Corp", T0905, T0900,
     Action.WRITE_TO_HUBSPOT, Reason.CONFLICT_LATEST_WINS_WARP_NEWER, "Acme Telecom"),
    ("company_name tie goes to HubSpot", "company_name", "Acme", "Acme Telecom", "ACME Corp", T0905, T0905,
     Action.WRITE_TO_WARP, Reason.CONFLICT_LATEST_WINS_HUBSPOT_NEWER_OR_TIE, "ACME Corp"),
    ("company_name unknown time goes to HubSpot", "company_name", "Acme", "Acme Telecom", "ACME Corp", None,
     T0900, Action.WRITE_TO_WARP, Reason.CONFLICT_LATEST_WINS_TIME_UNKNOWN, "ACME Corp"),
    ("company_name only WARP changed", "company_name", "Acme", "Acme Telecom", " Acme ", T0900, T0905,
     Action.WRITE_TO_HUBSPOT, Reason.ONLY_WARP_CHANGED, "Acme Telecom"),
    ("company_name only HubSpot changed", "company_name", "Acme", "Acme", "ACME Corp", T0905, T0900,
     Action.WRITE_TO_WARP, Reason.ONLY_HUBSPOT_CHANGED, "ACME Corp"),
    ("company_name first sync", "company_name", NO_AGREED, "Acme", "ACME Corp", T0900, T0905,
     Action.WRITE_TO_WARP, Reason.NO_AGREED_VALUE_LATEST_WINS_HUBSPOT_NEWER_OR_TIE, "ACME Corp"),
    ("company_name cleared in HubSpot cannot reach WARP", "company_name", "Acme", "Acme", "", None, T0905,
     Action.SKIP_INVALID, Reason.HUBSPOT_VALUE_INVALID, None),
    # A HubSpot edit of warp_status is drift: WARP's value goes back.
    ("status edited in HubSpot is drift", "status", "ACTIVE", "ACTIVE", "SUSPENDED", T0900, T0905,
     Action.WRITE_TO_HUBSPOT, Reason.HUBSPOT_DRIFT_REVERTED, "ACTIVE"),
    ("status changed in WARP", "status", "ACTIVE", "SUSPENDED", "ACTIVE", None, None,
     Action.WRITE_TO_HUBSPOT, Reason.ONE_WAY_FROM_WARP, "SUSPENDED"),
    ("status garbage in HubSpot is reverted", "status", "ACTIVE", "ACTIVE", "DORMANT", None, None,
     Action.WRITE_TO_HUBSPOT, Reason.HUBSPOT_DRIFT_REVERTED, "ACTIVE"),
    ("credit_limit '10000' equals 10000.00", "credit_limit", "10000.00", Decimal("10000.00"), "10000", None, None,
     Action.IN_SYNC, Reason.EQUAL, "10000.00"),
    ("credit_limit both changed: HubSpot wins", "credit_limit", "5000.00", Decimal("6000"), "7000", T0905, T0900,
     Action.WRITE_TO_WARP, Reason.CONFLICT_HUBSPOT_WINS, "7000.00"),
    ("credit_limit only WARP changed", "credit_limit", "5000.00", Decimal("6000"), "5000", None, None,
     Action.WRITE_TO_HUBSPOT, Reason.ONLY_WARP_CHANGED, "6000.00"),
    ("credit_limit cleared in HubSpot", "credit_limit", "5000.00", Decimal("5000"), "", None, None,
     Action.WRITE_TO_WARP, Reason.ONLY_HUBSPOT_CHANGED, ""),
    ("credit_limit first sync", "credit_limit", NO_AGREED, Decimal("5000"), "7000", None, None,
     Action.WRITE_TO_WARP, Reason.NO_AGREED_VALUE_HUBSPOT_WINS, "7000.00"),
    ("credit_limit sub-cent in HubSpot", "credit_limit", "5000.00", Decimal("5000"), "5000.005", None, None,
     Action.SKIP_INVALID, Reason.HUBSPOT_VALUE_INVALID, None),
    ("current_balance cleared in HubSpot is reverted", "current_balance", "-12.50", Decimal("-12.50"), "",
     None, None, Action.WRITE_TO_HUBSPOT, Reason.HUBSPOT_DRIFT_REVERTED, "-12.50"),
    ("current_balance changed in WARP", "current_balance", "0.00", Decimal("99.90"), "0", None, None,
     Action.WRITE_TO_HUBSPOT, Reason.ONE_WAY_FROM_WARP, "99.90"),
    ("services in another order are equal", "services", "voice;data", VOICE_DATA, "data;voice", None, None,
     Action.IN_SYNC, Reason.EQUAL, "voice;data"),
    ("services edited in HubSpot are reverted", "services", "voice;data", VOICE_DATA, "voice", None, None,
     Action.WRITE_TO_HUBSPOT, Reason.HUBSPOT_DRIFT_REVERTED, "voice;data"),
    ("services changed in WARP", "services", "voice;data", VOICE, "voice;data", None, None,
     Action.WRITE_TO_HUBSPOT, Reason.ONE_WAY_FROM_WARP, "voice"),
    ("payment_terms changed in HubSpot", "payment_terms", "NET30", "NET30", "NET45", None, None,
     Action.WRITE_TO_WARP, Reason.ONE_WAY_FROM_HUBSPOT, "NET45"),
    ("payment_terms edited in WARP is drift", "payment_terms", "NET30", "NET60", "NET30", T0905, T0900,
     Action.WRITE_TO_WARP, Reason.WARP_DRIFT_REVERTED, "NET30"),
    ("payment_terms empty both sides", "payment_terms", NO_AGREED, None, "", None, None,
     Action.IN_SYNC, Reason.EQUAL, ""),
    ("payment_terms unknown option in HubSpot", "payment_terms", "NET30", "NET30", "NET90", None, None,
     Action.SKIP_INVALID, Reason.HUBSPOT_VALUE_INVALID, None),
    ("contact_email case and space", "contact_email", "ops@acme.com", "Ops@Acme.com", " ops@ACME.com ",
     None, None, Action.IN_SYNC, Reason.EQUAL, "ops@acme.com"),
    ("contact_email both changed, WARP newer", "contact_email", "ops@acme.com", "billing@acme.com",
     "sales@acme.com", T0905, T0900, Action.WRITE_TO_HUBSPOT, Reason.CONFLICT_LATEST_WINS_WARP_NEWER,
     "billing@acme.com"),
    ("contact_email cleared in WARP", "contact_email", "ops@acme.com", None, "ops@acme.com", None, None,
     Action.WRITE_TO_HUBSPOT, Reason.ONLY_WARP_CHANGED, ""),
]


@pytest.mark.parametrize(
    ("field", "agreed", "warp", "hubspot", "warp_at", "hubspot_at", "action", "reason", "value"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_field_table(field, agreed, warp, hubspot, warp_at, hubspot_at, action, reason, value) -> None:  # noqa: ANN001
    decision = _decide(field, agreed, warp, hubspot, warp_at, hubspot_at)
    assert (decision.action, decision.reason, decision.value) == (action, reason, value)
    # The vectorized form says the same for the same row.
    rule = SEEDED[field]
    frame = build_decision_frame(
        [rule],
        pd.DataFrame({field: pd.Series([warp], dtype=object)}),
        pd.DataFrame({rule.hubspot_property: pd.Series([hubspot], dtype="str")}),
        agreed=pd.DataFrame({field: pd.Series([None if agreed is NO_AGREED else agreed], dtype="str")}),
        warp_changed_at=pd.DataFrame({field: pd.Series([warp_at], dtype="datetime64[ns, UTC]")}),
        hubspot_changed_at=pd.DataFrame({field: pd.Series([hubspot_at], dtype="datetime64[ns, UTC]")}),
    )
    decided = decide_frame([rule], frame)
    assert decided[f"{field}__action"].iloc[0] == action
    assert decided[f"{field}__reason"].iloc[0] == reason


STRATEGY_CASES = [
    (Strategy.HUBSPOT_WINS, True, Action.WRITE_TO_WARP, Reason.CONFLICT_HUBSPOT_WINS),
    (Strategy.WARP_WINS, True, Action.WRITE_TO_HUBSPOT, Reason.CONFLICT_WARP_WINS),
    (Strategy.MANUAL, True, Action.OPEN_CONFLICT, Reason.CONFLICT_MANUAL_REVIEW),
    (Strategy.LATEST_WINS, True, Action.WRITE_TO_HUBSPOT, Reason.CONFLICT_LATEST_WINS_WARP_NEWER),
    (Strategy.HUBSPOT_WINS, False, Action.WRITE_TO_WARP, Reason.NO_AGREED_VALUE_HUBSPOT_WINS),
    (Strategy.WARP_WINS, False, Action.WRITE_TO_HUBSPOT, Reason.NO_AGREED_VALUE_WARP_WINS),
    (Strategy.MANUAL, False, Action.OPEN_CONFLICT, Reason.NO_AGREED_VALUE_MANUAL_REVIEW),
    (Strategy.LATEST_WINS, False, Action.WRITE_TO_HUBSPOT, Reason.NO_AGREED_VALUE_LATEST_WINS_WARP_NEWER),
]


@pytest.mark.parametrize(("strategy", "conflict", "action", "reason"), STRATEGY_CASES)
def test_every_strategy_settles_a_conflict_and_a_first_sync(
    strategy: Strategy, conflict: bool, action: Action, reason: Reason
) -> None:
    rule = FieldRule("credit_limit", "warp_credit_limit", Direction.BIDIRECTIONAL, strategy)
    decision = _decide("credit_limit", "100.00" if conflict else NO_AGREED, Decimal("200"), "300", T0905, T0900,
                       rule=rule)
    assert (decision.action, decision.reason) == (action, reason)
    if action is Action.OPEN_CONFLICT:
        assert decision.value is None  # MANUAL writes nothing
        assert decision.write_direction is None


@pytest.mark.parametrize("strategy", list(Strategy))
def test_a_one_way_fields_owner_wins_whatever_the_strategy(strategy: Strategy) -> None:
    rule = FieldRule("status", "warp_status", Direction.WARP_TO_HUBSPOT, strategy)
    decision = _decide("status", "ACTIVE", "CLOSED", "SUSPENDED", T0900, T0905, rule=rule)
    assert decision.action is Action.WRITE_TO_HUBSPOT
    assert decision.write_direction is Direction.WARP_TO_HUBSPOT


def test_a_value_changed_away_and_back_counts_as_unchanged() -> None:
    # HubSpot went 5000 -> 7000 -> 5000: it equals the agreed value again, so only WARP's change counts.
    decision = _decide("credit_limit", "5000.00", Decimal("6000"), "5000", None, None)
    assert decision.reason is Reason.ONLY_WARP_CHANGED


def test_invalid_values_carry_their_error() -> None:
    decision = _decide("credit_limit", "5000.00", Decimal("5000"), "5000.005")
    assert decision.error is not None and decision.error.code == "AMOUNT_TOO_PRECISE"
    # A WARP-owned field simply reverts HubSpot's garbage, and still says what was wrong with it.
    reverted = _decide("status", "ACTIVE", "ACTIVE", "DORMANT")
    assert reverted.action is Action.WRITE_TO_HUBSPOT
    assert reverted.error is not None and reverted.error.code == "INVALID_OPTION"


def test_naive_change_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _decide("company_name", "Acme", "A", "B", datetime(2024, 1, 1), T0900)


def test_decide_frame_over_every_field_at_once() -> None:
    customers = pd.Index(["c1", "c2"], name="customer_id")
    warp = pd.DataFrame(
        {
            "ban": ["ZT-000000001", "ZT-000000002"],
            "company_name": ["Acme", "Globex"],
            "status": ["ACTIVE", "ACTIVE"],
            "credit_limit": ["10000.00", "500.00"],
            "current_balance": ["0.00", "12.00"],
            "services": ['{"data": true, "voice": true, "messaging": false}', '{"data": false, "voice": true, '
                                                                              '"messaging": false}'],
            "payment_terms": ["NET30", None],
            "contact_email": ["ops@acme.com", None],
        },
        index=customers,
    )
    hubspot = pd.DataFrame(
        {
            "warp_ban": ["ZT-000000001", "ZT-000000002"],
            "name": ["Acme", "Globex"],
            "warp_status": ["ACTIVE", "SUSPENDED"],
            "warp_credit_limit": ["10000", "750"],
            "warp_current_balance": ["0", "12"],
            "warp_services": ["data;voice", "voice"],
            "warp_payment_terms": ["NET30", "NET15"],
            "warp_contact_email": ["OPS@acme.com", ""],
        },
        index=customers,
        dtype="str",
    )
    agreed = pd.DataFrame({"status": ["ACTIVE", "ACTIVE"], "credit_limit": ["10000.00", "500.00"],
                           "payment_terms": ["NET30", ""]}, index=customers, dtype="str")
    frame = build_decision_frame(SEEDED, warp, hubspot, agreed)
    decided = decide_frame(SEEDED, frame)
    assert (decided.filter(like="__action").iloc[0] == Action.IN_SYNC).all()
    diff = changes(decided, SEEDED)
    assert sorted(map(tuple, diff.to_numpy().tolist())) == [
        ("c2", "credit_limit", "WRITE_TO_WARP", "ONLY_HUBSPOT_CHANGED"),
        ("c2", "payment_terms", "WRITE_TO_WARP", "ONE_WAY_FROM_HUBSPOT"),
        ("c2", "status", "WRITE_TO_HUBSPOT", "HUBSPOT_DRIFT_REVERTED"),
    ]


def test_decide_frame_names_missing_columns() -> None:
    with pytest.raises(KeyError, match="company_name__hubspot_changed_at"):
        decide_frame([SEEDED["company_name"]], pd.DataFrame(
            {"company_name__warp": ["a"], "company_name__hubspot": ["a"], "company_name__agreed": ["a"],
             "company_name__warp_changed_at": pd.Series([T0900])}))


def test_decide_frame_refuses_naive_times() -> None:
    frame = pd.DataFrame(
        {"company_name__warp": ["a"], "company_name__hubspot": ["b"], "company_name__agreed": [None],
         "company_name__warp_changed_at": [datetime(2024, 1, 1)],
         "company_name__hubspot_changed_at": [datetime(2024, 1, 1)]}
    )
    with pytest.raises(TypeError, match="timezone-aware"):
        decide_frame([SEEDED["company_name"]], frame)


def test_decide_frame_compares_instants_whatever_the_time_zone() -> None:
    rule = SEEDED["company_name"]
    paris = pd.Series([T0905], dtype="datetime64[ns, UTC]").dt.tz_convert("Europe/Paris")  # 10:05 there
    frame = build_decision_frame(
        [rule],
        pd.DataFrame({"company_name": ["Acme Telecom"]}),
        pd.DataFrame({"name": ["ACME Corp"]}),
        agreed=pd.DataFrame({"company_name": ["Acme"]}),
        warp_changed_at=pd.DataFrame({"company_name": pd.Series([T0900], dtype="datetime64[us, UTC]")}),
        hubspot_changed_at=pd.DataFrame({"company_name": paris}),
    )
    assert decide_frame([rule], frame)["company_name__reason"].iloc[0] == (
        Reason.CONFLICT_LATEST_WINS_HUBSPOT_NEWER_OR_TIE
    )
