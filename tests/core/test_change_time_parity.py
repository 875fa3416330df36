"""One rule for when WARP's value changed, whichever flow decides (issue 14).

The same situation goes through the webhook processor, the drain (a manual push) and the nightly: a LATEST_WINS
field with no agreed value and no WARP change recorded, the row touched later by a link change, and HubSpot's value
changed in between. When the outbox trigger has watched the field since before the row was inserted, WARP's value
dates from the row's creation, so HubSpot's is newer; when the row is older than the watching (data from before
warp-sync), a change may have gone unseen, so WARP's time is the row's last change and WARP's is newer. Every path
must say the same. Before, the nightly always took `updated_at`, the webhook path always the creation, and the drain
knew no time at all (time unknown): the same inputs were decided three ways.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from tests.plugins.inbound import ms
from tests.plugins.reconcile import plan_only
from tests.plugins.signing import property_change
from warp_sync_pipeline.core.decision import Action, Reason
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.outbound import push_customer
from warp_sync_pipeline.core.reconcile.frames import BAN, CHANGE, KIND
from warp_sync_pipeline.core.reconcile.plan import ACTION, FIELD, REASON

HUBSPOT_NEWER = (Action.WRITE_TO_WARP.value, Reason.NO_AGREED_VALUE_LATEST_WINS_HUBSPOT_NEWER_OR_TIE.value)
WARP_NEWER = (Action.WRITE_TO_HUBSPOT.value, Reason.NO_AGREED_VALUE_LATEST_WINS_WARP_NEWER.value)
FLOWS = ("webhook", "drain", "nightly")


def _situation(engine: sa.Engine, sandbox: Any, hubspot: HubSpotClient, make_customer: Callable[..., UUID],
               *, watched_since_insert: bool) -> tuple[UUID, str, str, datetime]:
    """(customer, BAN, company id, when HubSpot's name changed)."""
    hubspot.ensure_properties()
    with engine.connect() as conn:
        watching = conn.execute(sa.text(
            "SELECT applied_at FROM warp_schema_migrations WHERE version = '007'")).scalar_one()
    now = datetime.now(UTC)
    if watched_since_insert:  # inserted after the trigger came, renamed in HubSpot since, linked now
        inserted = watching + (now - watching) / 3
        renamed_in_hubspot = watching + 2 * (now - watching) / 3
    else:  # inserted before warp-sync was installed
        inserted, renamed_in_hubspot = watching - timedelta(days=3), watching - timedelta(days=1)
    customer = make_customer("Acme Rockets", created_at=inserted, hubspot_link_status="unlinked")
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM customers WHERE id = :id"), {"id": customer}).mappings().one()
    values = {"name": "Acme Rockets", "warp_ban": row["ban"], "warp_status": row["status"]}
    [company] = sandbox.control.seed([{"properties": values, "createdAt": ms(inserted), "updatedAt": ms(inserted)}])
    # Linked today: a link change touches updated_at, not a mapped value (the trigger records nothing).
    with engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE customers SET hubspot_link_status = 'linked', "
            "external_ids = jsonb_build_object('hubspot_company_id', CAST(:company AS text)) WHERE id = :id"),
            {"company": company, "id": customer})
    sandbox.control.rep_edit(company, {"name": "Acme Rocket Holdings"}, timestamp=ms(renamed_in_hubspot))
    return customer, row["ban"], company, renamed_in_hubspot


def _audited(engine: sa.Engine, customer: UUID) -> tuple[str, str]:
    with engine.connect() as conn:
        entry = conn.execute(sa.text(
            "SELECT action, reason FROM hubspot_sync_log WHERE customer_id = :id AND warp_field = 'company_name' "
            "ORDER BY id DESC LIMIT 1"), {"id": customer}).one()
    return entry.action, entry.reason


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize(("watched_since_insert", "expected"), [(True, HUBSPOT_NEWER), (False, WARP_NEWER)],
                         ids=["watched-since-insert", "older-than-warp-sync"])
def test_every_flow_dates_an_unrecorded_warp_value_by_the_same_rule(
    flow: str, watched_since_insert: bool, expected: tuple[str, str], engine: sa.Engine, sandbox: Any,
    warp_hubspot: HubSpotClient, make_customer: Callable[..., UUID], store: Callable, process: Callable,
) -> None:
    customer, ban, company, renamed = _situation(engine, sandbox, warp_hubspot, make_customer,
                                                 watched_since_insert=watched_since_insert)

    if flow == "webhook":
        store([property_change(int(company), "name", "Acme Rocket Holdings", occurredAt=ms(renamed))])
        process(hubspot=warp_hubspot)
        decided = _audited(engine, customer)
    elif flow == "drain":
        push_customer(engine, warp_hubspot, customer, actor="test")
        decided = _audited(engine, customer)
    else:
        plan = plan_only(engine, warp_hubspot).plan
        [row] = plan[(plan[KIND] == CHANGE) & (plan[BAN] == ban) & (plan[FIELD] == "company_name")].to_dict("records")
        decided = (row[ACTION], row[REASON])

    assert decided == expected
    if flow != "nightly" and expected == HUBSPOT_NEWER:  # the nightly only plans here; the others carried it out
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT company_name FROM customers WHERE id = :id"),
                                {"id": customer}).scalar_one() == "Acme Rocket Holdings"
