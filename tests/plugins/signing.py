"""HubSpot-format events and signatures computed independently of the code under test.

Other areas' tests may import these (`from tests.plugins.signing import ...`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from typing import Any

SECRET = "test-client-secret"
PREVIOUS_SECRET = "previous-client-secret"
ROUTE = "/v1/webhooks/hubspot/company"

_event_ids = itertools.count(1_000_000)


def now_ms() -> int:
    return int(time.time() * 1000)


def v3(secret: str, method: str, signed_uri: str, body: bytes, timestamp: str) -> str:
    """HubSpot v3: base64(HMAC-SHA256(secret, method + uri + body + timestamp)); uri already decoded."""
    source = method.encode() + signed_uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def v3_headers(
    signed_uri: str, body: bytes, *, secret: str = SECRET, timestamp_ms: int | None = None, method: str = "POST"
) -> dict[str, str]:
    timestamp = str(now_ms() if timestamp_ms is None else timestamp_ms)
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": v3(secret, method, signed_uri, body, timestamp),
        "X-HubSpot-Request-Timestamp": timestamp,
    }


def v1_headers(body: bytes, *, secret: str = SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature": hashlib.sha256(secret.encode() + body).hexdigest(),
        "X-HubSpot-Signature-Version": "v1",
    }


def body_of(events: list[Any]) -> bytes:
    return json.dumps(events).encode()


def property_change(object_id: int, name: str, value: str, **extra: Any) -> dict[str, Any]:
    """A company.propertyChange event as HubSpot sends it."""
    return {
        "eventId": next(_event_ids),
        "subscriptionId": 2_345_678,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": now_ms(),
        "subscriptionType": "company.propertyChange",
        "attemptNumber": 0,
        "objectId": object_id,
        "propertyName": name,
        "propertyValue": value,
        "changeSource": "CRM_UI",
        "sourceId": "userId:45678",
        **extra,
    }


def object_event(subscription_type: str, object_id: int, **extra: Any) -> dict[str, Any]:
    """company.creation / company.deletion (no property fields), or a merge with its extra fields."""
    return {
        "eventId": next(_event_ids),
        "subscriptionId": 2_345_679,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": now_ms(),
        "subscriptionType": subscription_type,
        "attemptNumber": 0,
        "objectId": object_id,
        "changeSource": "CRM_UI",
        **extra,
    }


def merge_event(primary: int, merged: list[int], **extra: Any) -> dict[str, Any]:
    return object_event(
        "company.merge", primary, primaryObjectId=primary, mergedObjectIds=merged, newObjectId=primary,
        numberOfPropertiesMoved=3, **extra,
    )
