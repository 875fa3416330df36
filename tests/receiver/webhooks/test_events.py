"""Parsing, per-event validation, dedupe keys and the one-statement batch store, on real PostgreSQL."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from tests.plugins.signing import body_of, merge_event, object_event, property_change
from warp_sync_pipeline.core.webhooks.events import (
    BatchRejected,
    EventBatch,
    StoreCounts,
    dedupe_key,
    parse_batch,
    prepare_event,
    store_batch,
)


def rows(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.execute(sa.text("SELECT * FROM hubspot_webhook_events ORDER BY id"))
        return [dict(r._mapping) for r in result]


def count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM hubspot_webhook_events")).scalar_one()


# -- parse_batch ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "INVALID_JSON"),
        (b"[{]", "INVALID_JSON"),
        (b"\xff\xfe[]", "INVALID_JSON"),
        (b'[{"a": NaN}]', "INVALID_JSON"),
        (b'[{"a": Infinity}]', "INVALID_JSON"),
        (b'[{"a": 1e999}]', "INVALID_JSON"),
        (b"[" * 5000 + b"]" * 5000, "INVALID_JSON"),
        (b'{"eventId": 1}', "NOT_AN_ARRAY"),
        (b'"events"', "NOT_AN_ARRAY"),
        (b"null", "NOT_AN_ARRAY"),
        (body_of([{"eventId": i} for i in range(101)]), "TOO_MANY_EVENTS"),
    ],
)
def test_unreadable_bodies_are_rejected_with_a_stable_code(body: bytes, code: str) -> None:
    with pytest.raises(BatchRejected) as info:
        parse_batch(body)
    assert info.value.code == code


def test_a_full_batch_of_100_and_an_empty_one_parse() -> None:
    assert len(parse_batch(body_of([{"eventId": i} for i in range(100)]))) == 100
    assert parse_batch(b"[]") == []


# -- dedupe key ----------------------------------------------------------------------------------------
def test_the_dedupe_key_ignores_attempt_number_and_key_order_only(engine: sa.Engine) -> None:
    event = property_change(42, "warp_credit_limit", "10000")
    redelivered = {**event, "attemptNumber": 3}
    reordered = dict(reversed(list(event.items())))
    creation = object_event("company.creation", 42)
    with engine.connect() as conn:
        key = dedupe_key(conn, event)
        assert len(key) == 64
        assert dedupe_key(conn, redelivered) == dedupe_key(conn, reordered) == key
        for field, other in [("propertyValue", "10001"), ("eventId", event["eventId"] + 1),
                             ("occurredAt", event["occurredAt"] + 1), ("objectId", 43), ("changeSource", "API")]:
            assert dedupe_key(conn, {**event, field: other}) != key, field
        assert dedupe_key(conn, creation) != dedupe_key(conn, {**creation, "subscriptionType": "company.deletion"})


# -- validation by subscription type -------------------------------------------------------------------
def test_handled_events_in_hubspots_format_are_pending_with_typed_fields() -> None:
    change = prepare_event(property_change(42, "warp_credit_limit", "10000"))
    assert change["status"] == "pending"
    assert (change["object_id"], change["property_name"], change["property_value"]) == ("42", "warp_credit_limit", "10000")
    assert change["change_source"] == "CRM_UI" and change["source_id"] == "userId:45678"
    for kind in ("company.creation", "company.deletion"):
        assert prepare_event(object_event(kind, 42))["status"] == "pending"
    merge = prepare_event(merge_event(42, [43, 44]))
    assert merge["status"] == "pending"
    assert (merge["primary_object_id"], merge["merged_object_ids"]) == ("42", ["43", "44"])
    cleared = prepare_event(property_change(42, "warp_payment_terms", ""))
    assert cleared["status"] == "pending" and cleared["property_value"] == ""
    as_strings = prepare_event({**object_event("company.creation", 42), "objectId": "42", "eventId": "7"})
    assert as_strings["status"] == "pending" and as_strings["event_id"] == 7


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({k: v for k, v in property_change(1, "name", "x").items() if k != "propertyName"},
         "INVALID_EVENT: propertyName is missing"),
        ({k: v for k, v in property_change(1, "name", "x").items() if k != "propertyValue"},
         "INVALID_EVENT: propertyValue is missing"),
        (property_change(1, "", "x"), "INVALID_EVENT: propertyName must be a non-empty string"),
        (property_change(1, "name", 5), "INVALID_EVENT: propertyValue must be a string"),
        ({k: v for k, v in merge_event(1, [2]).items() if k != "mergedObjectIds"},
         "INVALID_EVENT: mergedObjectIds must be a non-empty array"),
        (merge_event(1, []), "INVALID_EVENT: mergedObjectIds must be a non-empty array"),
        ({k: v for k, v in merge_event(1, [2]).items() if k != "primaryObjectId"},
         "INVALID_EVENT: primaryObjectId is missing"),
        ({k: v for k, v in object_event("company.creation", 1).items() if k != "objectId"},
         "INVALID_EVENT: objectId is missing"),
        (object_event("company.deletion", True), "INVALID_EVENT: objectId must be a positive whole number"),
        (object_event("company.deletion", -5), "INVALID_EVENT: objectId must be a positive whole number"),
        ({**object_event("company.creation", 1), "occurredAt": "yesterday"}, "INVALID_EVENT: occurredAt must be"),
        ({**object_event("company.creation", 1), "occurredAt": 10**17}, "INVALID_EVENT: occurredAt must be"),
        ({**object_event("company.creation", 1), "eventId": 2**64}, "INVALID_EVENT: eventId must be"),
        ({**object_event("company.creation", 1), "subscriptionType": 7}, "INVALID_EVENT: subscriptionType must be"),
        (object_event("company.restore", 1), "UNHANDLED_SUBSCRIPTION_TYPE: warp-sync does not apply company.restore"),
        (object_event("contact.creation", 1), "UNHANDLED_SUBSCRIPTION_TYPE"),
        (object_event("company.associationChange", 1), "UNHANDLED_SUBSCRIPTION_TYPE"),
        ("just a string", "INVALID_EVENT: an event must be a JSON object, got a string"),
        ([1, 2], "INVALID_EVENT: an event must be a JSON object, got an array"),
        (None, "INVALID_EVENT: an event must be a JSON object, got null"),
    ],
)
def test_odd_events_are_ignored_with_their_reason(event: Any, reason: str) -> None:
    row = prepare_event(event)
    assert row["status"] == "ignored"
    assert row["reason"].startswith(reason)


# -- storing ---------------------------------------------------------------------------------------------
def test_a_batch_is_stored_with_one_insert_statement(engine: sa.Engine) -> None:
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    events = [property_change(100 + i, "name", f"Company {i}") for i in range(100)]
    counts = store_batch(engine, events)
    assert counts == StoreCounts(received=100, stored=100, duplicates=0, ignored=0)
    assert [s for s in statements if "hubspot_webhook_events" in s and s.lstrip().startswith("INSERT")] == statements
    assert len(statements) == 1
    assert count(engine) == 100


def test_stored_rows_carry_the_typed_fields_and_the_raw_payload(engine: sa.Engine) -> None:
    change = property_change(42, "warp_credit_limit", "10000", occurredAt=1_700_000_000_123)
    merge = merge_event(42, [43, 44])
    store_batch(engine, [change, merge])
    stored = {r["subscription_type"]: r for r in rows(engine)}
    got = stored["company.propertyChange"]
    assert got["status"] == "pending" and got["reason"] is None and got["attempts"] == 0
    assert got["occurred_at"] == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert (got["object_id"], got["property_name"], got["property_value"]) == ("42", "warp_credit_limit", "10000")
    assert (got["event_id"], got["portal_id"], got["app_id"]) == (change["eventId"], 62515, 54321)
    assert got["payload"] == change
    with engine.connect() as conn:
        assert bytes(got["dedupe_key"]).hex() == dedupe_key(conn, change)
    assert stored["company.merge"]["merged_object_ids"] == ["43", "44"]
    assert stored["company.merge"]["primary_object_id"] == "42"


def test_redeliveries_are_stored_once_for_every_event_type(engine: sa.Engine) -> None:
    batch = [
        property_change(1, "warp_credit_limit", "10000"),
        object_event("company.creation", 2),
        object_event("company.deletion", 3),
        merge_event(4, [5]),
        object_event("company.restore", 6),
    ]
    assert store_batch(engine, batch) == StoreCounts(received=5, stored=5, duplicates=0, ignored=1)
    retry = [{**e, "attemptNumber": e["attemptNumber"] + 4} for e in reversed(batch)]
    assert store_batch(engine, retry) == StoreCounts(received=5, stored=0, duplicates=5, ignored=0)
    assert count(engine) == 5
    assert {r["attempt_number"] for r in rows(engine)} == {0}


def test_the_same_event_twice_in_one_batch_is_stored_once(engine: sa.Engine) -> None:
    event = object_event("company.creation", 7)
    counts = store_batch(engine, [event, {**event, "attemptNumber": 1}, event])
    assert counts == StoreCounts(received=3, stored=1, duplicates=2, ignored=0)


def test_a_change_back_to_an_earlier_value_is_a_new_event(engine: sa.Engine) -> None:
    # A rep's X -> Z -> X: the second X is a different event (its own eventId and time), not a duplicate.
    first = property_change(9, "name", "X")
    back = property_change(9, "name", "X", occurredAt=first["occurredAt"] + 2000)
    store_batch(engine, [first, property_change(9, "name", "Z"), back])
    assert count(engine) == 3


def test_a_100_event_batch_with_one_malformed_event_stores_100_rows(engine: sa.Engine) -> None:
    events: list[Any] = [property_change(1000 + i, "warp_credit_limit", str(i * 10)) for i in range(99)]
    malformed = property_change(2000, "warp_credit_limit", "5")
    del malformed["objectId"]
    events.insert(37, malformed)
    counts = store_batch(engine, parse_batch(body_of(events)))
    assert counts == StoreCounts(received=100, stored=100, duplicates=0, ignored=1)
    stored = rows(engine)
    assert len(stored) == 100
    ignored = [r for r in stored if r["status"] == "ignored"]
    assert len(ignored) == 1
    assert ignored[0]["reason"] == "INVALID_EVENT: objectId is missing"
    assert ignored[0]["payload"] == malformed
    assert sum(r["status"] == "pending" for r in stored) == 99


def test_text_postgresql_cannot_hold_is_stored_ignored_and_scrubbed(engine: sa.Engine) -> None:
    event = property_change(5, "name", "A")
    body = body_of([event]).replace(b'"A"', b'"A\\u0000B\\ud800"')
    emoji = body_of([property_change(6, "name", "\U0001f600")])  # escaped pair: fine
    counts = store_batch(engine, parse_batch(body) + parse_batch(emoji))
    assert counts == StoreCounts(received=2, stored=2, duplicates=0, ignored=1)
    by_object = {r["payload"]["objectId"]: r for r in rows(engine)}
    assert by_object[5]["status"] == "ignored" and by_object[5]["reason"].startswith("UNSTORABLE_TEXT")
    assert by_object[5]["payload"]["propertyValue"] == "A\ufffdB\ufffd"
    assert by_object[6]["status"] == "pending" and by_object[6]["property_value"] == "\U0001f600"


def test_json_postgresql_refuses_is_stored_as_python_spells_it(engine: sa.Engine) -> None:
    events = EventBatch([object_event("company.creation", 9)])
    events.source_json = "[{not json"  # stands in for text Python read but PostgreSQL would not
    assert store_batch(engine, events).stored == 1
    assert rows(engine)[0]["payload"] == events[0]


def test_a_store_inside_a_callers_transaction_rolls_back_with_it(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        trans = conn.begin()
        assert store_batch(conn, [object_event("company.creation", 8)]).stored == 1
        trans.rollback()
    assert count(engine) == 0


def test_overlapping_batches_stored_concurrently_neither_deadlock_nor_duplicate(engine: sa.Engine) -> None:
    events = [property_change(3000 + i, "name", f"n{i}") for i in range(100)]
    errors: list[BaseException] = []
    stored: list[int] = []

    def deliver(seed: int) -> None:
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        try:
            for _ in range(5):
                stored.append(store_batch(engine, json.loads(json.dumps(shuffled))).stored)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sum(stored) == 100
    assert count(engine) == 100


def test_the_table_refuses_a_pending_event_without_company_or_time(engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError, match="pending_is_complete"), engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO hubspot_webhook_events (dedupe_key, status, subscription_type, payload) "
            "VALUES (sha256('x'), 'pending', 'company.creation', '{}')"
        ))
    with pytest.raises(sa.exc.IntegrityError, match="reason_when_not_applied"), engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO hubspot_webhook_events (dedupe_key, status, payload) VALUES (sha256('y'), 'ignored', '{}')"
        ))
