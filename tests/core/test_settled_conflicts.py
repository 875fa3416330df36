"""A conflict the sides have since settled leaves the review queue, whichever flow sees them agree (issue 14).

Only the webhook processor closed such a conflict; the drain and the nightly recorded the agreement and left the
conflict open, so a person was asked to pick between two values that were already the same. Every flow now records
agreements through core.agreements, which closes the conflict as superseded (resolution `sides_agree`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from tests.plugins.inbound import ms
from tests.plugins.outbound import fast_drain
from tests.plugins.reconcile import plan_only, run_flow
from tests.plugins.signing import property_change
from warp_sync_pipeline.core.conflicts import open_or_update_conflict
from warp_sync_pipeline.core.decision import Observed
from warp_sync_pipeline.core.fields import FieldRules
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.outbound import drain_queue
from warp_sync_pipeline.core.reconcile import ReconcileOptions, write_to_warp

SETTLED = "both@acme.example"


def _open_conflict_then_settle(engine: sa.Engine, sandbox: Any, rules: FieldRules, customer: UUID, company: str) -> int:
    """A conflict on contact_email (WARP said a@, HubSpot b@), then both sides come to hold the same value."""
    rule = rules["contact_email"]
    with engine.begin() as conn:
        ref = open_or_update_conflict(conn, customer_id=customer, rule=rule, reason="CONFLICT_MANUAL_REVIEW",
                                      agreed="billing@linked.example", warp=Observed("a@acme.example"),
                                      hubspot=Observed("b@acme.example"), detected_by="webhook")
    with engine.begin() as conn:  # WARP's change is queued by the trigger
        conn.execute(sa.text("UPDATE customers SET contact_email = :v WHERE id = :id"), {"v": SETTLED, "id": customer})
    sandbox.control.rep_edit(company, {rule.hubspot_property: SETTLED})
    return ref.id


def _conflict(engine: sa.Engine, conflict_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT status, resolution, resolved_value, closed_by FROM hubspot_conflicts WHERE id = :id"),
            {"id": conflict_id}).mappings().one())


@pytest.mark.parametrize(("flow", "closed_by"), [("webhook", "webhook"), ("drain", "queue"),
                                                  ("nightly", "reconciliation")])
def test_a_conflict_the_sides_settled_is_superseded_by_every_flow(
    flow: str, closed_by: str, engine: sa.Engine, sandbox: Any, warp_hubspot: HubSpotClient, rules: FieldRules,
    make_linked: Callable, store: Callable, process: Callable,
) -> None:
    ((customer, company),) = make_linked(1)
    conflict_id = _open_conflict_then_settle(engine, sandbox, rules, customer, company)

    if flow == "webhook":
        store([property_change(int(company), "warp_contact_email", SETTLED, occurredAt=ms(_now(engine)))])
        process(hubspot=warp_hubspot)
    elif flow == "drain":
        drain_queue(engine, warp_hubspot, settings=fast_drain())
    else:
        run_flow(engine, warp_hubspot)

    assert _conflict(engine, conflict_id) == {"status": "superseded", "resolution": "sides_agree",
                                              "resolved_value": SETTLED, "closed_by": closed_by}


def test_a_conflict_detected_after_the_nightlys_pull_stays_open(
    engine: sa.Engine, sandbox: Any, warp_hubspot: HubSpotClient, rules: FieldRules, make_linked: Callable,
) -> None:
    ((customer, company),) = make_linked(1)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET contact_email = :v WHERE id = :id"), {"v": SETTLED, "id": customer})
    sandbox.control.rep_edit(company, {rules["contact_email"].hubspot_property: SETTLED})
    planned = plan_only(engine, warp_hubspot)  # the sides agree as of this pull
    with engine.begin() as conn:  # then they part again, and the webhook path opens a conflict
        ref = open_or_update_conflict(conn, customer_id=customer, rule=rules["contact_email"],
                                      reason="CONFLICT_MANUAL_REVIEW", agreed=SETTLED, warp=Observed("x@acme.example"),
                                      hubspot=Observed("y@acme.example"), detected_by="webhook")

    write_to_warp(planned.plan, engine=engine, rules=rules, options=ReconcileOptions(), run_id="late", enabled=True)

    assert _conflict(engine, ref.id)["status"] == "open"


def _now(engine: sa.Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()


def test_the_nightly_records_every_part_of_the_field_state_as_the_live_flows_do(
    engine: sa.Engine, sandbox: Any, warp_hubspot: HubSpotClient, rules: FieldRules, make_linked: Callable,
) -> None:
    # HubSpot's value moved: the nightly writes it to WARP, and the field state says so on all three parts (it left
    # HubSpot's part at the old value, unlike the webhook path and the drain).
    ((customer, company),) = make_linked(1)
    sandbox.control.rep_edit(company, {rules["credit_limit"].hubspot_property: "2500"})

    run_flow(engine, warp_hubspot, ReconcileOptions(allow_mass_write=True))  # one of one customer trips the brake

    with engine.connect() as conn:
        state = conn.execute(sa.text(
            "SELECT agreed_value, warp_value, hubspot_value FROM hubspot_field_state "
            "WHERE customer_id = :id AND warp_field = 'credit_limit'"), {"id": customer}).one()
    assert tuple(state) == ("2500.00", "2500.00", "2500.00")
