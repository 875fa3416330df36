"""End to end over real HTTP: the sandbox's sales rep edits companies, the sandbox delivers signed webhooks to
a running receiver, and the processor (the Dagster job) applies them to WARP."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from tests.plugins.inbound import at, customer_row, event_rows, queue_rows, set_agreed
from tests.plugins.signing import ROUTE
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.outbound import drain_queue
from warp_sync_pipeline.defs.inbound import hubspot_webhook_events_job
from warp_sync_pipeline.devstack.localpg import free_port
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.hubspot import HubSpotResource
from webhook_receiver.app import close_app, create_app


@pytest.fixture
def receiver_url(database_url: str, sandbox: Any) -> Iterator[str]:
    """The receiver on a real HTTP server, trusting the sandbox's client secret; the sandbox delivers to it."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = create_app({"DATABASE_URL": database_url, "HUBSPOT_CLIENT_SECRET": sandbox.client_secret,
                      "WARP_PUBLIC_BASE_URL": base_url})
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="test-receiver", daemon=True)
    thread.start()
    try:
        yield base_url
    finally:
        sandbox.control.configure(webhook_target_url=None)
        server.shutdown()
        thread.join(timeout=10)
        close_app(app)


def _deliver(sandbox: Any) -> list[dict[str, Any]]:
    assert sandbox.control.flush_webhooks(timeout=20) == 0
    deliveries = sandbox.control.deliveries()
    assert deliveries and {d["status"] for d in deliveries} == {200}, deliveries
    return deliveries


def _run_job(database_url: str, sandbox: Any) -> dict[str, Any]:
    with dg.instance_for_test() as instance:
        result = hubspot_webhook_events_job.execute_in_process(
            instance=instance,
            resources={
                "db": DatabaseResource(url=database_url),
                "hubspot": HubSpotResource(base_url=sandbox.base_url, access_token=sandbox.access_token),
            },
        )
    assert result.success
    return result.output_for_node("apply_hubspot_webhook_events")


@pytest.mark.parametrize("repeat_event_ids", [False, True], ids=["unique_event_ids", "one_event_id_for_all"])
def test_a_reps_edits_reach_warp_through_signed_webhooks(
    engine: sa.Engine, database_url: str, sandbox: Any, warp_hubspot: HubSpotClient, receiver_url: str,
    make_customer: Callable, repeat_event_ids: bool,
) -> None:
    # HubSpot warns eventId is not unique: with every event under one id, none may be taken for another's repeat.
    sandbox.control.configure(webhook_repeat_event_ids=repeat_event_ids)
    # Companies made before the webhook target is set: their own creation events are not delivered.
    edited = warp_hubspot.create_company({"name": "Acme Telecom", "warp_ban": "ZT-500000001", "warp_status": "ACTIVE",
                                     "warp_credit_limit": "5000", "warp_payment_terms": "NET30"})
    deleted = warp_hubspot.create_company({"name": "Doomed Ltd", "warp_ban": "ZT-500000002"})
    survivor = warp_hubspot.create_company({"name": "Initech Holdings"})
    merged = warp_hubspot.create_company({"name": "Initech", "warp_ban": "ZT-500000004"})
    acme = make_customer("Acme Telecom", ban="ZT-500000001", company_id=edited.id, credit_limit=Decimal("5000"),
                         payment_terms="NET30")
    doomed = make_customer("Doomed Ltd", ban="ZT-500000002", company_id=deleted.id)
    globex = make_customer("Globex", ban="ZT-500000003")  # in WARP, not yet in HubSpot
    initech = make_customer("Initech", ban="ZT-500000004", company_id=merged.id)
    for field, value in (("credit_limit", "5000.00"), ("status", "ACTIVE"), ("payment_terms", "NET30")):
        set_agreed(engine, acme, field, value, at(8))
    sandbox.control.configure(webhook_target_url=receiver_url + ROUTE)

    sandbox.control.rep_edit(edited.id, {"warp_credit_limit": "10000", "warp_status": "SUSPENDED",
                                         "warp_payment_terms": "NET45"})
    sandbox.control.rep_delete(deleted.id)
    sandbox.control.rep_merge(survivor.id, merged.id)
    created = sandbox.control.rep_create({"name": "Globex Corporation", "warp_ban": "ZT-500000003"})
    deliveries = _deliver(sandbox)
    assert {e["status"] for e in event_rows(engine)} == {"pending"}
    if repeat_event_ids:
        assert len({event_id for d in deliveries for event_id in d["event_ids"]}) == 1

    summary = _run_job(database_url, sandbox)

    assert summary["failed"] == 0 and summary["processed"] >= 6
    row = customer_row(engine, acme)
    assert (row["credit_limit"], row["payment_terms"], row["status"]) == (Decimal("10000.00"), "NET45", "ACTIVE")
    # The status edit is drift: WARP's value is queued back to HubSpot.
    [queued] = queue_rows(engine, acme)
    assert (queued["fields"], queued["reasons"]) == (["status"], ["drift_revert"])
    assert customer_row(engine, doomed)["hubspot_link_status"] == "deleted"
    # The merge made a new company (HubSpot's merges do): the customer follows it there.
    [merged_record] = [c for c in sandbox.control.all_companies()
                       if c["properties"].get("name") == "Initech Holdings" and not c.get("mergedInto")]
    assert merged_record["id"] not in (survivor.id, merged.id)
    row = customer_row(engine, initech)
    assert (row["external_ids"], row["hubspot_link_status"]) == ({"hubspot_company_id": merged_record["id"]},
                                                                 "linked")
    row = customer_row(engine, globex)
    assert (row["external_ids"], row["hubspot_link_status"]) == ({"hubspot_company_id": created["id"]}, "linked")
    # Its properties arrived in the same events as its creation and were applied after the link.
    assert row["company_name"] == "Globex Corporation"
    assert {e["status"] for e in event_rows(engine)} == {"processed"}


def test_a_warp_update_drained_to_hubspot_comes_back_as_an_echo_that_is_ignored_and_queues_nothing(
    engine: sa.Engine, database_url: str, sandbox: Any, warp_hubspot: HubSpotClient, receiver_url: str,
    make_customer: Callable,
) -> None:
    company = warp_hubspot.create_company({"name": "Acme Telecom", "warp_ban": "ZT-500000011", "warp_credit_limit": "5000"})
    customer = make_customer("Acme Telecom", ban="ZT-500000011", company_id=company.id, credit_limit=Decimal("5000"))
    set_agreed(engine, customer, "credit_limit", "5000.00", at(8))
    sandbox.control.configure(webhook_target_url=receiver_url + ROUTE)

    # Billing raises the limit in plain SQL; the outbox trigger queues it and the drain sends it.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET credit_limit = 7000 WHERE id = :id"), {"id": customer})
    drain_queue(engine, warp_hubspot, run_id="drain-for-echo")
    assert warp_hubspot.get_company(company.id, properties=["warp_credit_limit"]).get("warp_credit_limit") == "7000"
    deliveries = _deliver(sandbox)
    assert sum(d["event_count"] for d in deliveries) == 1
    before = customer_row(engine, customer)

    summary = _run_job(database_url, sandbox)

    [event] = event_rows(engine)
    assert (event["property_name"], event["status"]) == ("warp_credit_limit", "ignored")
    assert event["reason"].startswith("ECHO: ") and summary["reasons"] == {"ECHO": 1}
    assert customer_row(engine, customer) == before
    assert [row["status"] for row in queue_rows(engine, customer)] == ["done"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM hubspot_write_ledger")).scalar_one() == "matched"
