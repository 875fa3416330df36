"""Company creation, deletion and merge events: the link between a customer and its company."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from tests.plugins.inbound import customer_row, event_rows, reason_codes, sync_log
from tests.plugins.signing import merge_event, object_event, property_change
from warp_sync_pipeline.core.fields import FieldRules
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.ledger import LedgerWrite, record_writes


def _link(engine: sa.Engine, customer: Any) -> tuple[str | None, str]:
    row = customer_row(engine, customer)
    return row["external_ids"].get("hubspot_company_id"), row["hubspot_link_status"]


def test_a_created_company_holding_our_ban_is_linked_to_that_customer(
    engine: sa.Engine, rules: FieldRules, warp_hubspot: HubSpotClient, make_customer: Callable, store: Callable,
    process: Callable,
) -> None:
    customer = make_customer("Globex", ban="ZT-123456789")
    company = warp_hubspot.create_company({"name": "Globex", "warp_ban": "ZT-123456789"})
    # A write recorded by BAN before the company id was known (the create flow's ledger entries).
    record_writes(engine, [LedgerWrite(rules["company_name"], "Globex", ban="ZT-123456789")])
    store([object_event("company.creation", int(company.id))])

    summary = process(hubspot=warp_hubspot)

    assert summary.processed == 1
    assert _link(engine, customer) == (company.id, "linked")
    [entry] = sync_log(engine, customer)
    assert (entry["action"], entry["old_value"], entry["new_value"]) == ("LINK_COMPANY", "unlinked", "linked")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT company_id FROM hubspot_write_ledger")).scalar_one() == company.id


def test_creation_events_that_are_not_ours_are_ignored_with_their_reason(
    engine: sa.Engine, sandbox: Any, warp_hubspot: HubSpotClient, make_customer: Callable, new_company_id: Callable,
    store: Callable, process: Callable,
) -> None:
    linked_company = new_company_id()
    make_customer(company_id=linked_company)
    foreign = warp_hubspot.create_company({"name": "Initech", "warp_ban": "ZT-000000042"})
    plain = warp_hubspot.create_company({"name": "No BAN Ltd"})
    store([object_event("company.creation", linked_company, occurredAt=1_700_000_000_001),
           object_event("company.creation", int(foreign.id), occurredAt=1_700_000_000_002),
           object_event("company.creation", int(plain.id), occurredAt=1_700_000_000_003),
           object_event("company.creation", 99_999_999_999, occurredAt=1_700_000_000_004)])
    sandbox.control.reset_counters()

    summary = process(hubspot=warp_hubspot)

    assert reason_codes(engine) == ["ALREADY_LINKED", "UNKNOWN_COMPANY", "UNKNOWN_COMPANY", "COMPANY_NOT_FOUND"]
    assert summary.ignored == 4
    # The already-linked company needed no HubSpot call; each of the others one read.
    assert sandbox.control.counters()["total"] == 3


@pytest.mark.parametrize("fault", ["outage", "token_revoked"])
def test_a_creation_that_cannot_read_hubspot_pauses_the_flows_without_spending_an_attempt_then_links(
    engine: sa.Engine, sandbox: Any, warp_hubspot: HubSpotClient, make_customer: Callable, store: Callable,
    process: Callable, fault: str,
) -> None:
    customer = make_customer("Umbrella", ban="ZT-222222222")
    company = warp_hubspot.create_company({"name": "Umbrella", "warp_ban": "ZT-222222222"})
    store([object_event("company.creation", int(company.id))])
    if fault == "outage":
        sandbox.control.set_faults(outage={"seconds": 60})
    else:
        sandbox.control.configure(access_token="revoked-token")

    # Before: the event failed, and spent its attempts (5, about 43 minutes) while the token stayed revoked.
    first = process(hubspot=warp_hubspot)

    [event] = event_rows(engine)
    assert (first.failed, event["status"], event["attempts"]) == (0, "pending", 0)
    assert first.paused and first.pause_cause == ("hubspot_outage" if fault == "outage" else "token_refused")
    assert _link(engine, customer) == (None, "unlinked")
    again = process(hubspot=warp_hubspot)  # the pause holds: nothing is claimed
    assert again.paused and again.claimed == 0

    sandbox.control.clear_faults()
    sandbox.control.configure(access_token=sandbox.access_token)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_pauses SET next_probe_at = now()"))
    second = process(hubspot=warp_hubspot)

    assert second.processed == 1 and not second.paused and event_rows(engine)[0]["status"] == "processed"
    assert _link(engine, customer) == (company.id, "linked")


def test_a_deleted_company_keeps_the_customer_and_marks_its_link(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    company = new_company_id()
    customer = make_customer(company_id=company, payment_terms="NET30")
    store([object_event("company.deletion", company, occurredAt=1_700_000_000_000),
           property_change(company, "warp_payment_terms", "NET60", occurredAt=1_700_000_000_500)])

    process()

    row = customer_row(engine, customer)
    assert (row["hubspot_link_status"], row["external_ids"]) == ("deleted", {"hubspot_company_id": str(company)})
    assert row["payment_terms"] == "NET30"
    assert reason_codes(engine) == [None, "LINK_NOT_ACTIVE"]
    [entry] = sync_log(engine, customer)
    assert (entry["action"], entry["old_value"], entry["new_value"]) == ("LINK_DELETED", "linked", "deleted")

    # Delivered again (a different eventId): nothing more changes.
    store([object_event("company.deletion", company, occurredAt=1_700_000_000_000)])
    process()
    latest = max(event_rows(engine), key=lambda e: e["id"])
    assert (latest["status"], latest["result"]["changed"]) == ("processed", False)
    assert len(sync_log(engine, customer)) == 1


def test_a_merge_re_points_the_customer_to_the_surviving_company(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    survivor, merged = new_company_id(), new_company_id()
    customer = make_customer(company_id=merged)
    event = merge_event(survivor, [merged])
    store([event])

    process()

    assert _link(engine, customer) == (str(survivor), "linked")
    [entry] = sync_log(engine, customer)
    assert (entry["action"], entry["old_value"], entry["new_value"]) == ("LINK_REPOINTED", str(merged), str(survivor))
    # Applied again: nothing left to move.
    store([{**event, "eventId": event["eventId"] + 1}])
    process()
    assert event_rows(engine)[-1]["result"]["action"] == "MERGE_NOTHING_TO_MOVE"
    assert len(sync_log(engine, customer)) == 1


def test_a_merge_into_a_new_object_id_re_points_to_it(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    primary, merged, new = new_company_id(), new_company_id(), new_company_id()
    customer = make_customer(company_id=primary)
    store([object_event("company.merge", primary, primaryObjectId=primary, mergedObjectIds=[merged],
                        newObjectId=new)])

    process()

    assert _link(engine, customer) == (str(new), "linked")


def test_a_merge_into_a_company_another_customer_holds_marks_both_for_review(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    survivor, merged = new_company_id(), new_company_id()
    holder = make_customer("Holder", company_id=survivor)
    mover = make_customer("Mover", company_id=merged)
    store([merge_event(survivor, [merged])])

    summary = process()

    assert summary.processed == 1
    assert _link(engine, holder) == (str(survivor), "review")
    assert _link(engine, mover) == (str(merged), "review")
    assert {e["action"] for e in sync_log(engine)} == {"LINK_REVIEW"}
    with engine.connect() as conn:  # both customers' leases were taken and given back
        assert conn.execute(sa.text("SELECT count(*) FROM hubspot_customer_leases")).scalar_one() == 0


def test_a_merge_of_companies_we_do_not_know_is_ignored(
    engine: sa.Engine, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    store([merge_event(new_company_id(), [new_company_id()])])

    process()

    assert reason_codes(engine) == ["UNKNOWN_COMPANY"]


def test_at_the_same_instant_a_link_is_made_before_properties_apply_and_ended_after(
    engine: sa.Engine, warp_hubspot: HubSpotClient, make_customer: Callable, new_company_id: Callable, store: Callable,
    process: Callable,
) -> None:
    created = warp_hubspot.create_company({"name": "Hooli", "warp_ban": "ZT-333333333"})
    newcomer = make_customer("Hooli", ban="ZT-333333333", payment_terms="NET30")
    leaving = new_company_id()
    leaver = make_customer("Leaver", company_id=leaving, payment_terms="NET30")
    instant = 1_760_000_000_000
    # eventIds in the "wrong" order: HubSpot does not promise theirs mean anything.
    store([property_change(int(created.id), "warp_payment_terms", "NET15", occurredAt=instant, eventId=1),
           object_event("company.creation", int(created.id), occurredAt=instant, eventId=2),
           object_event("company.deletion", leaving, occurredAt=instant, eventId=3),
           property_change(leaving, "warp_payment_terms", "NET60", occurredAt=instant, eventId=4)])

    process(hubspot=warp_hubspot)

    assert _link(engine, newcomer) == (created.id, "linked")
    assert customer_row(engine, newcomer)["payment_terms"] == "NET15"
    assert _link(engine, leaver) == (str(leaving), "deleted")
    assert customer_row(engine, leaver)["payment_terms"] == "NET60"
