"""Fields as data: a new `customers` column of a type warp-sync knows is mapped by inserting one row, and every flow
follows it with no code change: the outbox trigger and the drain carry WARP's change to HubSpot, a webhook carries
HubSpot's back, and the nightly settles a difference no event reported."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from tests.plugins.inbound import ms
from tests.plugins.outbound import company_values, fast_drain, queue_rows
from tests.plugins.reconcile import run_flow
from tests.plugins.signing import property_change
from warp_sync_pipeline.core.fields import FieldType, load_rules
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.outbound import drain_queue
from warp_sync_pipeline.core.reconcile import ReconcileOptions


def employees(engine: sa.Engine, customer_id: object) -> int | None:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT employees FROM customers WHERE id = :id"), {"id": customer_id}).scalar()


def test_a_new_integer_column_is_synced_by_every_flow_once_one_row_maps_it(
    engine: sa.Engine, sandbox: object, warp_hubspot: HubSpotClient, hubspot_client: HubSpotClient,
    make_linked: Callable, store: Callable, process: Callable,
) -> None:
    [(customer, company)] = make_linked(1)
    # The data team's change: a column WARP added, the HubSpot property for it, and one mapping row. No release.
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE customers ADD COLUMN employees integer CHECK (employees >= 0)"))
    warp_hubspot.create_property({"name": "warp_employees", "label": "Employees", "type": "number",
                                  "fieldType": "number", "groupName": "companyinformation"})
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO hubspot_field_mappings (warp_field, hubspot_property, direction, strategy, field_type, minimum) "
            "VALUES ('employees', 'warp_employees', 'BIDIRECTIONAL', 'WARP_WINS', 'integer', 0)"))
        assert load_rules(conn)["employees"].spec.type is FieldType.INTEGER

    # WARP -> HubSpot: the outbox trigger queues the field, the drain writes it (no agreed value yet: WARP wins).
    # Under LATEST_WINS HubSpot's never-set property has no change time, and the rule gives HubSpot a tie it cannot
    # date: its empty value would win. Map a new field with its owner winning, then switch (a draft shows the move).
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET employees = 42 WHERE id = :id"), {"id": customer})
    [row] = queue_rows(engine, customer)
    assert row["fields"] == ["employees"]
    report = drain_queue(engine, warp_hubspot, settings=fast_drain())
    assert report.sent == 1, report
    assert company_values(sandbox, company)["warp_employees"] == "42"

    # HubSpot -> WARP: a rep's edit arrives as a webhook and lands, without echoing back.
    store([property_change(int(company), "warp_employees", "50", occurredAt=ms(datetime.now(UTC)))])
    summary = process()
    assert (summary.processed, summary.failed) == (1, 0)
    assert employees(engine, customer) == 50
    assert [r["status"] for r in queue_rows(engine, customer)] == ["done"]  # the drain's row; nothing queued back

    # A change no event reported: the nightly finds it and copies it to WARP (only HubSpot moved from the agreed 50).
    warp_hubspot.update_company(company, {"warp_employees": "61"})
    run = run_flow(engine, hubspot_client, ReconcileOptions(allow_mass_write=True))  # one customer: 100% moves
    assert employees(engine, customer) == 61
    [written] = [r for r in run.warp_summary.records if r.field == "employees"]
    assert (written.old, written.new, written.reason) == ("50", "61", "ONLY_HUBSPOT_CHANGED")
