"""The route through Flask's test client: trusted batches stored, every rejection class stores nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.plugins.signing import (
    PREVIOUS_SECRET,
    ROUTE,
    SECRET,
    body_of,
    merge_event,
    now_ms,
    object_event,
    property_change,
    v1_headers,
    v3_headers,
)
from webhook_receiver import create_app
from webhook_receiver.webhooks import raw_request_uri

LOCAL = "http://localhost"


def make_app(database_url: str, **config: Any) -> Flask:
    return create_app({"DATABASE_URL": database_url, "TESTING": True, "HUBSPOT_CLIENT_SECRET": SECRET, **config})


@pytest.fixture
def client(database_url: str) -> FlaskClient:
    return make_app(database_url).test_client()


def count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM hubspot_webhook_events")).scalar_one()


def post(client: FlaskClient, body: bytes, headers: dict[str, str], path: str = ROUTE, **kwargs: Any):  # noqa: ANN201
    return client.post(path, data=body, headers=headers, **kwargs)


def test_a_signed_batch_is_stored_and_answered_with_counts(client: FlaskClient, engine: sa.Engine) -> None:
    events = [property_change(1, "warp_credit_limit", "10000"), object_event("company.creation", 2),
              object_event("company.deletion", 3), merge_event(4, [5]), object_event("company.restore", 6)]
    body = body_of(events)
    response = post(client, body, v3_headers(LOCAL + ROUTE, body))
    assert response.status_code == 200
    assert response.get_json() == {
        "success": True, "data": {"received": 5, "stored": 5, "duplicates": 0, "ignored": 1},
    }
    assert count(engine) == 5


def test_a_redelivery_is_acknowledged_and_counted_as_duplicates(client: FlaskClient, engine: sa.Engine) -> None:
    events = [property_change(1, "name", "Acme"), object_event("company.deletion", 2), merge_event(3, [4])]
    first = body_of(events)
    assert post(client, first, v3_headers(LOCAL + ROUTE, first)).status_code == 200
    retry = body_of([{**e, "attemptNumber": 1} for e in events])
    response = post(client, retry, v3_headers(LOCAL + ROUTE, retry))
    assert response.status_code == 200
    assert response.get_json()["data"] == {"received": 3, "stored": 0, "duplicates": 3, "ignored": 0}
    assert count(engine) == 3


def test_the_signature_covers_the_raw_query_after_hubspots_decoding(client: FlaskClient, engine: sa.Engine) -> None:
    body = body_of([object_event("company.creation", 11)])
    path = ROUTE + "?portal=62515&tag=a%3Ab%2Fc%40d%20e&x=%253A"
    signed = LOCAL + ROUTE + "?portal=62515&tag=a:b/c@d%20e&x=%253A"
    assert post(client, body, v3_headers(LOCAL + path, body), path).status_code == 401
    assert post(client, body, v3_headers(signed, body), path).status_code == 200
    assert count(engine) == 1


def test_the_public_base_url_replaces_scheme_and_host(database_url: str, engine: sa.Engine) -> None:
    client = make_app(database_url, WARP_PUBLIC_BASE_URL="https://hooks.example.com/").test_client()
    body = body_of([object_event("company.creation", 12)])
    assert post(client, body, v3_headers(LOCAL + ROUTE, body)).status_code == 401
    assert post(client, body, v3_headers("https://hooks.example.com" + ROUTE, body)).status_code == 200
    assert count(engine) == 1


def test_behind_a_trusted_proxy_the_forwarded_scheme_and_host_are_signed(database_url: str, engine: sa.Engine) -> None:
    client = make_app(database_url, TRUSTED_PROXY_HOPS=1).test_client()
    body = body_of([object_event("company.creation", 13)])
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "warp.example.com"}
    response = post(client, body, {**forwarded, **v3_headers("https://warp.example.com" + ROUTE, body)})
    assert response.status_code == 200
    assert count(engine) == 1


def test_a_future_timestamp_within_five_minutes_is_accepted(client: FlaskClient, engine: sa.Engine) -> None:
    body = body_of([object_event("company.creation", 14)])
    headers = v3_headers(LOCAL + ROUTE, body, timestamp_ms=now_ms() + 4 * 60_000)
    assert post(client, body, headers).status_code == 200


def test_a_batch_signed_with_the_previous_secret_is_accepted_during_a_rotation(database_url: str, engine: sa.Engine) -> None:
    body = body_of([object_event("company.creation", 15)])
    headers = v3_headers(LOCAL + ROUTE, body, secret=PREVIOUS_SECRET)
    assert post(make_app(database_url).test_client(), body, headers).status_code == 401
    rotating = make_app(database_url, HUBSPOT_CLIENT_SECRET="new-secret", HUBSPOT_CLIENT_SECRET_PREVIOUS=PREVIOUS_SECRET)
    assert post(rotating.test_client(), body, headers).status_code == 200
    assert count(engine) == 1


def test_v1_signatures_are_accepted_only_when_enabled(database_url: str, engine: sa.Engine) -> None:
    body = body_of([object_event("company.creation", 16)])
    refused = post(make_app(database_url).test_client(), body, v1_headers(body))
    assert (refused.status_code, refused.get_json()["error"]["code"]) == (401, "SIGNATURE_VERSION_DISABLED")
    assert count(engine) == 0
    enabled = make_app(database_url, WARP_WEBHOOK_ALLOW_V1="true").test_client()
    assert post(enabled, body, v1_headers(body)).status_code == 200


def _unsigned(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json"}


def _signed(body: bytes) -> dict[str, str]:
    return v3_headers(LOCAL + ROUTE, body)


def _with(**changes: str | None) -> Callable[[bytes], dict[str, str]]:
    def build(body: bytes) -> dict[str, str]:
        headers = v3_headers(LOCAL + ROUTE, body)
        for name, value in changes.items():
            key = name.replace("_", "-")
            if value is None:
                headers.pop(key)
            else:
                headers[key] = value
        return headers
    return build


GOOD = body_of([property_change(21, "name", "Acme")])


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (GOOD, _unsigned, 401, "SIGNATURE_MISSING"),
        (GOOD, _with(**{"X_HubSpot_Signature_v3": "AAAA" * 11}), 401, "SIGNATURE_INVALID"),
        (GOOD, _with(**{"X_HubSpot_Signature_v3": "s\u00efgn\u00e9"}), 401, "SIGNATURE_INVALID"),
        (GOOD, _with(**{"X_HubSpot_Request_Timestamp": None}), 401, "TIMESTAMP_MISSING"),
        (GOOD, _with(**{"X_HubSpot_Request_Timestamp": "soon"}), 401, "TIMESTAMP_INVALID"),
        (GOOD, _with(**{"X_HubSpot_Request_Timestamp": "\u00b9\u00b2\u00b3"}), 401, "TIMESTAMP_INVALID"),
        (GOOD, lambda b: v3_headers(LOCAL + ROUTE, b, timestamp_ms=now_ms() - 301_000), 401, "TIMESTAMP_OUT_OF_WINDOW"),
        (GOOD, lambda b: v3_headers(LOCAL + ROUTE, b, timestamp_ms=now_ms() + 301_000), 401, "TIMESTAMP_OUT_OF_WINDOW"),
        (GOOD, lambda b: v3_headers(LOCAL + ROUTE, b, secret="not-ours"), 401, "SIGNATURE_INVALID"),
        (GOOD, v1_headers, 401, "SIGNATURE_VERSION_DISABLED"),
        (b"[" + b'{"eventId": 1, "pad": "' + b"x" * 40_000 + b'"}]', _signed, 413, "PAYLOAD_TOO_LARGE"),
        (b"this is not json", _signed, 400, "INVALID_JSON"),
        (b"\xff\xfe\x00[", _signed, 400, "INVALID_JSON"),
        (b'{"eventId": 1, "subscriptionType": "company.creation"}', _signed, 400, "NOT_AN_ARRAY"),
        (body_of([object_event("company.creation", i + 1) for i in range(101)]), _signed, 400, "TOO_MANY_EVENTS"),
    ],
    # Named by position and code: the bodies hold the time, and parallel workers must collect the same ids.
    ids=lambda value: value.lower() if isinstance(value, str) else "",
)
def test_every_rejection_stores_nothing_and_answers_the_json_error_shape(
    database_url: str, engine: sa.Engine, body: bytes, headers: Callable[[bytes], dict[str, str]], status: int,
    code: str,
) -> None:
    client = make_app(database_url, MAX_CONTENT_LENGTH=32_768).test_client()
    response = post(client, body, headers(body))
    assert response.status_code == status
    payload = response.get_json()
    assert payload["success"] is False
    assert payload["error"]["code"] == code
    assert payload["error"]["message"]
    assert SECRET not in response.get_data(as_text=True)
    assert count(engine) == 0


def test_without_a_client_secret_the_route_answers_503_and_stores_nothing(
    database_url: str, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HUBSPOT_CLIENT_SECRET", raising=False)
    client = create_app({"DATABASE_URL": database_url, "TESTING": True}).test_client()
    response = post(client, GOOD, v3_headers(LOCAL + ROUTE, GOOD))
    assert (response.status_code, response.get_json()["error"]["code"]) == (503, "WEBHOOKS_NOT_CONFIGURED")
    assert count(engine) == 0


def test_other_methods_answer_405_in_the_json_shape(client: FlaskClient) -> None:
    response = client.get(ROUTE)
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_with_the_database_down_the_batch_is_refused_with_503() -> None:
    from warp_sync_pipeline.devstack.localpg import free_port

    url = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nowhere"
    client = create_app({"DATABASE_URL": url, "TESTING": True, "HUBSPOT_CLIENT_SECRET": SECRET}).test_client()
    response = post(client, GOOD, v3_headers(LOCAL + ROUTE, GOOD))
    assert (response.status_code, response.get_json()["error"]["code"]) == (503, "DATABASE_UNAVAILABLE")
    assert "nowhere" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"RAW_URI": "/hook?a=%3A", "PATH_INFO": "/hook", "QUERY_STRING": "a=%3A"}, "/hook?a=%3A"),
        ({"REQUEST_URI": "/hook%2Fx?b=1", "PATH_INFO": "/hook/x"}, "/hook%2Fx?b=1"),
        ({"RAW_URI": "http://example.com/hook?q=1"}, "/hook?q=1"),
        ({"PATH_INFO": "/hook", "QUERY_STRING": ""}, "/hook"),
        ({"SCRIPT_NAME": "/warp", "PATH_INFO": "/hook path", "QUERY_STRING": "a=b%20c"}, "/warp/hook%20path?a=b%20c"),
    ],
)
def test_the_raw_request_uri_comes_from_the_server_or_is_rebuilt(environ: dict[str, str], expected: str) -> None:
    assert raw_request_uri(environ) == expected
