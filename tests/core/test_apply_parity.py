"""One way to carry a decision out on WARP, whichever flow decided it (issue 14).

Each situation goes through the webhook processor, the drain and the nightly, and every flow must leave the same
WARP value, the same field state, the same conflict and the same audit row. Before the one applier
(core.warp_apply), each flow wrote these by hand and they differed: the drain and the nightly recorded nothing of
HubSpot's value when they opened a conflict, and the nightly left open a conflict whose sides had come back to the
value they last agreed on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from tests.plugins.inbound import ms
from tests.plugins.outbound import fast_drain
from tests.plugins.reconcile import run_flow
from tests.plugins.signing import property_change
from warp_sync_pipeline.core.conflicts import open_or_update_conflict
from warp_sync_pipeline.core.decision import Observed
from warp_sync_pipeline.core.fields import FieldRules
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.outbound import drain_queue, enqueue_fields
from warp_sync_pipeline.core.reconcile import ReconcileOptions

FLOWS = ("webhook", "drain", "nightly")
AGREED_EMAIL = "billing@linked.example"  # what make_linked agrees on


@dataclass(frozen=True)
class _Change:
    """HubSpot's change of one customer's field, as each flow learns of it."""

    customer: UUID
    company: str
    field: str
    prop: str
    value: str
    at: datetime


def _carry_out(flow: str, engine: sa.Engine, hubspot: HubSpotClient, change: _Change, store: Callable,
               process: Callable) -> None:
    if flow == "webhook":
        store([property_change(int(change.company), change.prop, change.value, occurredAt=ms(change.at))])
        process(hubspot=hubspot)
    elif flow == "drain":
        with engine.begin() as conn:  # the drain decides queued fields: queue it as a WARP change would
            enqueue_fields(conn, change.customer, [change.field], reason="test")
        drain_queue(engine, hubspot, settings=fast_drain())
    else:
        run_flow(engine, hubspot, ReconcileOptions(allow_mass_write=True))  # one customer of one: all changed


def _left(engine: sa.Engine, customer: UUID, field: str) -> dict[str, Any]:
    """What the flow left on WARP for this field, time stamps aside (each flow reads at its own moment)."""
    with engine.connect() as conn:
        value = conn.execute(sa.text(f"SELECT {field}::text FROM customers WHERE id = :id"), {"id": customer}).scalar()
        state = conn.execute(sa.text(
            "SELECT agreed_value, warp_value, hubspot_value FROM hubspot_field_state "
            "WHERE customer_id = :id AND warp_field = :f"), {"id": customer, "f": field}).one()
        conflicts = conn.execute(sa.text(
            "SELECT status, warp_value, hubspot_value, resolution FROM hubspot_conflicts "
            "WHERE customer_id = :id AND warp_field = :f ORDER BY id"), {"id": customer, "f": field}).all()
        audit = conn.execute(sa.text(
            "SELECT outcome, action, reason, old_value, new_value FROM hubspot_sync_log "
            "WHERE customer_id = :id AND warp_field = :f ORDER BY id DESC LIMIT 1"),
            {"id": customer, "f": field}).first()  # the nightly's agreements are counted, not audited
    return {"value": value, "state": tuple(state), "conflicts": [tuple(c) for c in conflicts],
            "audit": None if audit is None else tuple(audit)}


@pytest.mark.parametrize("flow", FLOWS)
def test_hubspots_change_is_written_to_warp_alike_by_every_flow(
    flow: str, engine: sa.Engine, sandbox: Any, warp_hubspot: HubSpotClient, make_linked: Callable,
    store: Callable, process: Callable,
) -> None:
    ((customer, company),) = make_linked(1)
    changed_at = datetime.now(UTC) - timedelta(minutes=5)
    sandbox.control.rep_edit(company, {"warp_credit_limit": "2500"}, timestamp=ms(changed_at))

    _carry_out(flow, engine, warp_hubspot,
               _Change(customer, company, "credit_limit", "warp_credit_limit", "2500", changed_at), store, process)

    assert _left(engine, customer, "credit_limit") == {
        "value": "2500.00",
        "state": ("2500.00", "2500.00", "2500.00"),
        "conflicts": [],
        "audit": ("applied", "WRITE_TO_WARP", "ONLY_HUBSPOT_CHANGED", "1000.00", "2500.00"),
    }


@pytest.mark.parametrize("flow", FLOWS)
def test_a_manual_conflict_is_opened_alike_by_every_flow(
    flow: str, engine: sa.Engine, sandbox: Any, warp_hubspot: HubSpotClient, make_linked: Callable,
    store: Callable, process: Callable,
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_field_mappings SET strategy = 'MANUAL' WHERE warp_field = 'contact_email'"))
    ((customer, company),) = make_linked(1)
    changed_at = datetime.now(UTC) - timedelta(minutes=5)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET contact_email = 'warp@acme.example' WHERE id = :id"),
                     {"id": customer})
    sandbox.control.rep_edit(company, {"warp_contact_email": "hub@acme.example"}, timestamp=ms(changed_at))

    _carry_out(flow, engine, warp_hubspot,
               _Change(customer, company, "contact_email", "warp_contact_email", "hub@acme.example", changed_at),
               store, process)

    assert _left(engine, customer, "contact_email") == {
        "value": "warp@acme.example",
        # HubSpot's value is recorded by every flow that saw it (the drain and the nightly recorded nothing).
        "state": (AGREED_EMAIL, "warp@acme.example", "hub@acme.example"),
        "conflicts": [("open", "warp@acme.example", "hub@acme.example", None)],
        "audit": ("conflict", "OPEN_CONFLICT", "CONFLICT_MANUAL_REVIEW", "warp@acme.example", "hub@acme.example"),
    }


@pytest.mark.parametrize("flow", FLOWS)
def test_a_conflict_whose_sides_came_back_to_the_agreed_value_is_closed_by_every_flow(
    flow: str, engine: sa.Engine, sandbox: Any, warp_hubspot: HubSpotClient, rules: FieldRules,
    make_linked: Callable, store: Callable, process: Callable,
) -> None:
    ((customer, company),) = make_linked(1)
    with engine.begin() as conn:  # the sides parted and a conflict was opened; both are back at the agreed value
        open_or_update_conflict(conn, customer_id=customer, rule=rules["contact_email"],
                                reason="CONFLICT_MANUAL_REVIEW", agreed=AGREED_EMAIL,
                                warp=Observed("a@acme.example"), hubspot=Observed("b@acme.example"),
                                detected_by="webhook")
    changed_at = datetime.now(UTC)
    sandbox.control.rep_edit(company, {"warp_contact_email": AGREED_EMAIL}, timestamp=ms(changed_at))

    _carry_out(flow, engine, warp_hubspot,
               _Change(customer, company, "contact_email", "warp_contact_email", AGREED_EMAIL, changed_at),
               store, process)

    left = _left(engine, customer, "contact_email")
    assert (left["value"], left["state"][0], left["conflicts"]) == (
        AGREED_EMAIL, AGREED_EMAIL, [("superseded", "a@acme.example", "b@acme.example", "sides_agree")])
