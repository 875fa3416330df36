"""Webhook delivery to a local HTTP server: payloads, v1/v3 signatures checked independently here,
retries re-signed with a fresh timestamp, batches of at most 100 events, at most 10 in flight."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import httpx
import pytest

from tests.hubspot_sandbox.conftest import COMPANIES, ReceivedRequest, WebhookReceiver, create_company
from tests.plugins.sandbox import SandboxHandle

# HubSpot's v3 rule: these escapes are decoded in the URI before signing.
V3_DECODE = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(",
             "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


def expected_v1(secret: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + body).hexdigest()


def expected_v3(secret: str, url: str, body: bytes, timestamp: str) -> str:
    for escape, char in V3_DECODE.items():
        url = url.replace(escape, char)
    message = b"POST" + url.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def assert_signed(request: ReceivedRequest, secret: str, url: str) -> None:
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["x-hubspot-signature-version"] == "v1"
    assert hmac.compare_digest(headers["x-hubspot-signature"], expected_v1(secret, request.body))
    timestamp = headers["x-hubspot-request-timestamp"]
    assert abs(int(timestamp) - time.time() * 1000) < 60_000  # a fresh epoch-ms timestamp
    assert hmac.compare_digest(headers["x-hubspot-signature-v3"], expected_v3(secret, url, request.body, timestamp))


@pytest.fixture
def hooked(sandbox: SandboxHandle, webhook_receiver: WebhookReceiver, warp_api: httpx.Client) -> httpx.Client:
    sandbox.control.configure(webhook_target_url=webhook_receiver.url)
    return warp_api


def delivered(sandbox: SandboxHandle, receiver: WebhookReceiver) -> list[dict]:
    assert sandbox.control.flush_webhooks(timeout=15) == 0
    return receiver.events()


def test_api_create_sends_creation_and_property_changes_signed_v1_and_v3(
        sandbox: SandboxHandle, webhook_receiver: WebhookReceiver, hooked: httpx.Client) -> None:
    before = int(time.time() * 1000)
    company = create_company(hooked, name="Acme", warp_ban="ZT-000000001")
    events = delivered(sandbox, webhook_receiver)
    for request in webhook_receiver.requests:
        assert_signed(request, sandbox.client_secret, webhook_receiver.url)
    [creation] = [e for e in events if e["subscriptionType"] == "company.creation"]
    assert creation["objectId"] == int(company["id"])
    assert creation["changeFlag"] == "NEW" and creation["attemptNumber"] == 0
    assert creation["portalId"] == 62515 and creation["appId"] == 54321
    assert creation["changeSource"] == "INTEGRATION" and creation["sourceId"] == "54321"
    assert isinstance(creation["eventId"], int) and isinstance(creation["subscriptionId"], int)
    assert before <= creation["occurredAt"] <= int(time.time() * 1000)
    changes = {e["propertyName"]: e for e in events if e["subscriptionType"] == "company.propertyChange"}
    assert set(changes) == {"name", "warp_ban"}  # system properties are not sent
    assert changes["warp_ban"]["propertyValue"] == "ZT-000000001"
    assert changes["warp_ban"]["changeSource"] == "INTEGRATION"  # the echo of our own write
    assert len({e["eventId"] for e in events}) == len(events)


def test_api_update_sends_one_event_per_changed_property(
        sandbox: SandboxHandle, webhook_receiver: WebhookReceiver, hooked: httpx.Client) -> None:
    company = create_company(hooked, name="Acme", warp_status="ACTIVE")
    delivered(sandbox, webhook_receiver)
    webhook_receiver.requests.clear()
    hooked.patch(f"{COMPANIES}/{company['id']}", json={"properties": {
        "warp_status": "ACTIVE", "warp_credit_limit": "250.00", "name": "Acme Ltd"}})
    events = delivered(sandbox, webhook_receiver)
    assert sorted((e["propertyName"], e["propertyValue"]) for e in events) == [
        ("name", "Acme Ltd"), ("warp_credit_limit", "250")]


def test_rep_edit_delete_and_merge_come_from_the_crm_ui(
        sandbox: SandboxHandle, webhook_receiver: WebhookReceiver, hooked: httpx.Client) -> None:
    ids = sandbox.control.seed([{"name": "A"}, {"name": "B"}, {"name": "C"}])  # seeding sends nothing
    sandbox.control.rep_edit(ids[0], {"warp_status": "SUSPENDED"}, user_id=123)
    sandbox.control.rep_merge(ids[0], ids[1], user_id=123)
    sandbox.control.rep_delete(ids[2], user_id=123)
    events = delivered(sandbox, webhook_receiver)
    by_type = {e["subscriptionType"]: e for e in events}
    assert set(by_type) == {"company.propertyChange", "company.merge", "company.deletion"}
    for event in events:
        assert event["changeSource"] == "CRM_UI" and event["sourceId"] == "userId:123"
    change = by_type["company.propertyChange"]
    assert (change["objectId"], change["propertyName"], change["propertyValue"]) == (int(ids[0]), "warp_status",
                                                                                     "SUSPENDED")
    merge = by_type["company.merge"]
    assert merge["primaryObjectId"] == int(ids[0]) and merge["mergedObjectIds"] == [int(ids[1])]
    # The merge made a new company: the event names it as newObjectId (and objectId).
    survivor = next(c for c in sandbox.control.all_companies() if c["id"] not in ids)
    assert merge["newObjectId"] == int(survivor["id"]) and merge["objectId"] == int(survivor["id"])
    assert merge["numberOfPropertiesMoved"] == 0
    assert by_type["company.deletion"]["objectId"] == int(ids[2])


def test_api_archive_and_merge_send_events_too(
        sandbox: SandboxHandle, webhook_receiver: WebhookReceiver, hooked: httpx.Client) -> None:
    ids = sandbox.control.seed([{"name": "A"}, {"name": "B", "city": "Oslo"}, {"name": "C"}])
    hooked.post(f"{COMPANIES}/merge", json={"primaryObjectId": ids[0], "objectIdToMerge": ids[1]})
    hooked.post(f"{COMPANIES}/batch/archive", json={"inputs": [{"id": ids[2]}]})
    events = delivered(sandbox, webhook_receiver)
    kinds = sorted(e["subscriptionType"] for e in events)
    assert kinds == ["company.deletion", "company.merge"]
    merge = next(e for e in events if e["subscriptionType"] == "company.merge")
    assert merge["changeSource"] == "INTEGRATION" and merge["numberOfPropertiesMoved"] == 1


def test_subscribed_properties_filter_changes(
        sandbox: SandboxHandle, webhook_receiver: WebhookReceiver, hooked: httpx.Client) -> None:
    sandbox.control.configure(webhook_subscribed_properties=["warp_status"])
    create_company(hooked, name="Acme", warp_status="ACTIVE")
    events = delivered(sandbox, webhook_receiver)
    assert sorted((e["subscriptionType"], e.get("propertyName")) for e in events) == [
        ("company.creation", None), ("company.propertyChange", "warp_status")]


def test_v3_signature_covers_the_decoded_uri_with_its_query(
        sandbox: SandboxHandle, webhook_receiver: WebhookReceiver, warp_api: httpx.Client) -> None:
    url = webhook_receiver.url + "?tenant=a%3Ab%2Cc&x=%40y"
    sandbox.control.configure(webhook_target_url=url)
    create_company(warp_api, name="Acme")
    delivered(sandbox, webhook_receiver)
    request = webhook_receiver.requests[0]
    assert request.path.endswith("?tenant=a%3Ab%2Cc&x=%40y")
    assert_signed(request, sandbox.client_secret, url)
    timestamp = request.headers["X-HubSpot-Request-Timestamp"]
    undecoded = base64.b64encode(hmac.new(sandbox.client_secret.encode(), b"POST" + url.encode() + request.body
                                          + timestamp.encode(), hashlib.sha256).digest()).decode()
    assert request.headers["X-HubSpot-Signature-v3"] != undecoded


def test_failures_are_retried_and_each_attempt_is_re_signed(
        sandbox: SandboxHandle, webhook_receiver: WebhookReceiver, hooked: httpx.Client) -> None:
    webhook_receiver.respond = lambda n: (500, 0.0) if n < 2 else (204, 0.0)
    create_company(hooked, name="Acme")
    delivered(sandbox, webhook_receiver)
    attempts = webhook_receiver.requests
    assert len(attempts) == 3
    assert [[e["attemptNumber"] for e in a.events] for a in attempts] == [[0, 0], [1, 1], [2, 2]]
    assert len({tuple(e["eventId"] for e in a.events) for a in attempts}) == 1  # the same events each time
    timestamps = [int(a.headers["X-HubSpot-Request-Timestamp"]) for a in attempts]
    assert timestamps == sorted(timestamps) and len(set(timestamps)) == 3
    for attempt in attempts:
        assert_signed(attempt, sandbox.client_secret, webhook_receiver.url)
    log = sandbox.control.deliveries()
    assert [(d["attempt_number"], d["status"], d["outcome"]) for d in log] == [
        (0, 500, "failed"), (1, 500, "failed"), (2, 204, "delivered")]


def test_an_answer_slower_than_the_timeout_counts_as_failed(
        sandbox: SandboxHandle, webhook_receiver: WebhookReceiver, hooked: httpx.Client) -> None:
    sandbox.control.configure(webhook_timeout_seconds=0.3)
    webhook_receiver.respond = lambda n: (204, 0.8) if n == 0 else (204, 0.0)
    create_company(hooked, name="Acme")
    delivered(sandbox, webhook_receiver)
    assert len(webhook_receiver.requests) == 2
    first, second = sandbox.control.deliveries()
    assert first["outcome"] == "failed" and "Timeout" in first["error"]
    assert second["outcome"] == "delivered" and second["attempt_number"] == 1


def test_a_429_is_retried_after_its_retry_after(
        sandbox: SandboxHandle, webhook_receiver: WebhookReceiver, hooked: httpx.Client) -> None:
    webhook_receiver.respond = lambda n: (429, 0.0) if n == 0 else (204, 0.0)
    create_company(hooked, name="Acme")
    delivered(sandbox, webhook_receiver)
    first, second = webhook_receiver.requests
    assert second.received_at - first.received_at >= 0.4  # the backoff alone would be ~0.02 s


def test_delivery_gives_up_after_the_last_retry(
        sandbox: SandboxHandle, webhook_receiver: WebhookReceiver, hooked: httpx.Client) -> None:
    sandbox.control.configure(webhook_max_retries=2)
    webhook_receiver.respond = lambda n: (503, 0.0)
    create_company(hooked, name="Acme")
    delivered(sandbox, webhook_receiver)
    assert len(webhook_receiver.requests) == 3
    assert [d["outcome"] for d in sandbox.control.deliveries()] == ["failed"] * 3


def test_batches_hold_at_most_100_events_and_none_is_lost(
        sandbox: SandboxHandle, webhook_receiver: WebhookReceiver, hooked: httpx.Client) -> None:
    for start in range(0, 300, 100):
        response = hooked.post(f"{COMPANIES}/batch/create", json={"inputs": [
            {"properties": {"name": f"company {i}"}} for i in range(start, start + 100)]})
        assert response.status_code == 201
    events = delivered(sandbox, webhook_receiver)
    sizes = [len(r.events) for r in webhook_receiver.requests]
    assert max(sizes) == 100 and all(size <= 100 for size in sizes)
    assert len(events) == 600 and len({e["eventId"] for e in events}) == 600


def test_at_most_10_requests_in_flight(
        sandbox: SandboxHandle, webhook_receiver: WebhookReceiver, hooked: httpx.Client) -> None:
    sandbox.control.configure(webhook_max_events_per_request=5)
    webhook_receiver.respond = lambda n: (204, 0.2)
    response = hooked.post(f"{COMPANIES}/batch/create", json={"inputs": [
        {"properties": {"name": f"company {i}"}} for i in range(100)]})
    assert response.status_code == 201
    events = delivered(sandbox, webhook_receiver)
    assert len(events) == 200 and len(webhook_receiver.requests) == 40
    assert webhook_receiver.max_in_flight == 10
    assert sandbox.control.delivery_stats()["max_in_flight"] == 10


def test_no_target_means_no_deliveries(sandbox: SandboxHandle, webhook_receiver: WebhookReceiver,
                                       api: httpx.Client) -> None:
    create_company(api, name="Acme")
    assert sandbox.control.flush_webhooks(timeout=1) == 0
    assert webhook_receiver.requests == [] and sandbox.control.deliveries() == []


def test_reset_abandons_pending_retries(sandbox: SandboxHandle, webhook_receiver: WebhookReceiver,
                                        hooked: httpx.Client) -> None:
    sandbox.control.configure(webhook_retry_initial_seconds=5, webhook_retry_max_seconds=5)
    webhook_receiver.respond = lambda n: (500, 0.0)
    create_company(hooked, name="Acme")
    webhook_receiver.wait_for(lambda r: len(r.requests) == 1)
    sandbox.control.reset()
    assert sandbox.control.flush_webhooks(timeout=3) == 0
    assert len(webhook_receiver.requests) == 1
