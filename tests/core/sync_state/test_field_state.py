"""Per-field state: upsert, read, never moving backwards in time, and the frame the reconciliation reads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pandas as pd
import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.decision import Action, build_decision_frame, decide_frame
from warp_sync_pipeline.core.field_state import (
    FieldStateUpdate,
    StateValue,
    field_state_frame,
    read_field_state,
    upsert_field_state,
)
from warp_sync_pipeline.core.fields import FieldRules
from warp_sync_pipeline.core.normalize import InvalidFieldValue

T1 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
T2 = T1 + timedelta(minutes=5)


def test_upsert_and_read(engine: sa.Engine, make_customer: Callable[..., UUID]) -> None:
    customer = make_customer()
    with engine.begin() as conn:
        upsert_field_state(conn, [
            FieldStateUpdate(customer, "credit_limit", agreed=StateValue(Decimal("10000"), T1),
                             warp=StateValue("10000", T1), hubspot=StateValue("10000.0", T1)),
            FieldStateUpdate(customer, "services", warp=StateValue({"voice": True, "data": True}, T1)),
        ])
    with engine.connect() as conn:
        state = read_field_state(conn, [customer])
    credit = state[(customer, "credit_limit")]
    assert credit.agreed == StateValue("10000.00", T1)  # stored in comparable form
    assert credit.hubspot == StateValue("10000.00", T1)
    services = state[(customer, "services")]
    assert (services.agreed, services.warp, services.hubspot) == (None, StateValue("voice;data", T1), None)


def test_a_partial_update_keeps_the_other_parts(engine: sa.Engine, make_customer: Callable[..., UUID]) -> None:
    customer = make_customer()
    with engine.begin() as conn:
        upsert_field_state(conn, [FieldStateUpdate(customer, "company_name", agreed=StateValue("Acme", T1),
                                                    warp=StateValue("Acme", T1))])
        upsert_field_state(conn, [FieldStateUpdate(customer, "company_name", hubspot=StateValue("ACME", T2))])
    with engine.connect() as conn:
        state = read_field_state(conn, [customer], fields=["company_name"])[(customer, "company_name")]
    assert (state.agreed, state.warp, state.hubspot) == (
        StateValue("Acme", T1), StateValue("Acme", T1), StateValue("ACME", T2)
    )


def test_a_late_observation_never_overwrites_a_newer_one(
    engine: sa.Engine, make_customer: Callable[..., UUID]
) -> None:
    customer = make_customer()
    with engine.begin() as conn:
        upsert_field_state(conn, [FieldStateUpdate(customer, "contact_email", hubspot=StateValue("b@x.io", T2))])
        # An event that occurred earlier arrives later: it changes nothing.
        upsert_field_state(conn, [FieldStateUpdate(customer, "contact_email", hubspot=StateValue("a@x.io", T1))])
    with engine.connect() as conn:
        state = read_field_state(conn, [customer])[(customer, "contact_email")]
    assert state.hubspot == StateValue("b@x.io", T2)


def test_one_call_applies_its_updates_in_order_across_many_customers(
    engine: sa.Engine, make_customer: Callable[..., UUID]
) -> None:
    # One call may name a (customer, field) more than once: the updates apply as if one by one, in order,
    # so a later update with an older time changes nothing and one with a newer time wins.
    customers = [make_customer(f"Co {n}") for n in range(3)]
    T3 = T2 + timedelta(minutes=5)
    with engine.begin() as conn:
        given = upsert_field_state(conn, [
            FieldStateUpdate(customers[0], "contact_email", hubspot=StateValue("b@x.io", T2)),
            FieldStateUpdate(customers[1], "contact_email", hubspot=StateValue("c@x.io", T1)),
            FieldStateUpdate(customers[0], "contact_email", hubspot=StateValue("a@x.io", T1)),  # older: kept out
            FieldStateUpdate(customers[1], "contact_email", hubspot=StateValue("d@x.io", T3)),  # newer: wins
            FieldStateUpdate(customers[2], "contact_email", hubspot=StateValue("e@x.io", None)),
            FieldStateUpdate(customers[2], "contact_email", hubspot=StateValue("f@x.io", T1)),  # no time: written
            FieldStateUpdate(customers[0], "contact_email", warp=StateValue("w@x.io", T1)),
        ])
    with engine.connect() as conn:
        state = read_field_state(conn, customers, fields=["contact_email"])
    assert given == 7
    assert state[(customers[0], "contact_email")].hubspot == StateValue("b@x.io", T2)
    assert state[(customers[0], "contact_email")].warp == StateValue("w@x.io", T1)
    assert state[(customers[1], "contact_email")].hubspot == StateValue("d@x.io", T3)
    assert state[(customers[2], "contact_email")].hubspot == StateValue("f@x.io", T1)


def test_an_empty_value_is_recorded_as_empty_not_as_absent(
    engine: sa.Engine, make_customer: Callable[..., UUID]
) -> None:
    customer = make_customer()
    with engine.begin() as conn:
        upsert_field_state(conn, [FieldStateUpdate(customer, "payment_terms", agreed=StateValue(None, T1))])
    with engine.connect() as conn:
        assert read_field_state(conn, [customer])[(customer, "payment_terms")].agreed == StateValue("", T1)


def test_bad_updates_are_refused(engine: sa.Engine, make_customer: Callable[..., UUID]) -> None:
    customer = make_customer()
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="needs the time"):
            upsert_field_state(conn, [FieldStateUpdate(customer, "status", agreed=StateValue("ACTIVE"))])
        with pytest.raises(InvalidFieldValue):
            upsert_field_state(conn, [FieldStateUpdate(customer, "status", warp=StateValue("DORMANT"))])
        with pytest.raises(KeyError):
            upsert_field_state(conn, [FieldStateUpdate(customer, "external_ids", warp=StateValue("{}"))])


def test_the_state_frame_feeds_decide_frame(
    engine: sa.Engine, make_customer: Callable[..., UUID], rules: FieldRules
) -> None:
    synced, fresh = make_customer(), make_customer()
    with engine.begin() as conn:
        upsert_field_state(conn, [
            FieldStateUpdate(synced, "credit_limit", agreed=StateValue("500", T1)),
            FieldStateUpdate(synced, "company_name", agreed=StateValue("Acme", T1), hubspot=StateValue("Acme", T2)),
        ])
        state = field_state_frame(conn, rules, [synced, fresh])
    assert list(state.index) == [str(synced)]
    assert state.loc[str(synced), "credit_limit__agreed"] == "500.00"
    assert state.loc[str(synced), "company_name__state_hubspot_changed_at"] == pd.Timestamp(T2)
    assert pd.isna(state.loc[str(synced), "status__agreed"])

    index = pd.Index([str(synced), str(fresh)])
    warp = pd.DataFrame({"credit_limit": ["700.00", "700.00"]}, index=index)
    hubspot = pd.DataFrame({"warp_credit_limit": ["500", "500"]}, index=index)
    agreed = state.reindex(index)[["credit_limit__agreed"]].rename(columns=lambda name: name.split("__")[0])
    rule = [rules["credit_limit"]]
    decided = decide_frame(rule, build_decision_frame(rule, warp, hubspot, agreed))
    # The synced customer changed in WARP only; the fresh one never agreed, so HubSpot wins.
    assert decided["credit_limit__reason"].tolist() == ["ONLY_WARP_CHANGED", "NO_AGREED_VALUE_HUBSPOT_WINS"]
    assert decided["credit_limit__action"].tolist() == [Action.WRITE_TO_HUBSPOT, Action.WRITE_TO_WARP]
