"""Error bodies HubSpot is documented to send (shared/hubspot-api.md §2), parsed into types."""

from __future__ import annotations

import json

from warp_sync_pipeline.core.hubspot import (
    UNIQUE_PROPERTIES,
    AuthFailed,
    Conflict,
    NotFound,
    RateLimited,
    SearchLimitExceeded,
    ServiceUnavailable,
    UniqueValueConflict,
    ValidationFailed,
)
from warp_sync_pipeline.core.hubspot.errors import error_from_payload


def test_a_validation_error_names_each_property_from_both_formats() -> None:
    # The Oct 2025 body: the JSON array inside `message` plus structured `errors[]`.
    entries = [{"isValid": False, "message": "1.42e-14 was not a valid number.", "error": "INVALID_INTEGER",
                "name": "amount", "localizedErrorMessage": "1.42e-14 was not a valid number.",
                "propertyValue": "1.42e-14", "portalId": 123}]
    body = {
        "status": "error",
        "message": "Property values were not valid: " + json.dumps(entries, separators=(",", ":")),
        "correlationId": "c0ffee00-0000-4000-8000-000000000001",
        "errors": [
            {"message": "1.42e-14 was not a valid number.", "code": "INVALID_INTEGER",
             "context": {"propertyName": ["amount"]}},
            {"message": "Property \"nope\" does not exist", "code": "PROPERTY_DOESNT_EXIST",
             "context": {"propertyName": ["nope"]}},
        ],
        "category": "VALIDATION_ERROR",
    }
    error = error_from_payload(body, status=400)
    assert isinstance(error, ValidationFailed)
    assert error.correlation_id == "c0ffee00-0000-4000-8000-000000000001"
    assert error.category == "VALIDATION_ERROR"
    assert [(e.name, e.code, e.value) for e in error.property_errors] == [
        ("amount", "INVALID_INTEGER", "1.42e-14"),
        ("nope", "PROPERTY_DOESNT_EXIST", None),
    ]


def test_a_409_conflict_naming_the_existing_id_is_a_unique_value_conflict() -> None:
    body = {"status": "error", "message": "Contact already exists. Existing ID: 37765128953",
            "correlationId": "x", "category": "CONFLICT"}
    error = error_from_payload(body, status=409, unique_properties=UNIQUE_PROPERTIES)
    assert isinstance(error, UniqueValueConflict)
    assert error.existing_id == "37765128953"


def test_a_400_naming_the_unique_property_as_taken_is_a_unique_value_conflict() -> None:
    entries = [{"isValid": False, "name": "warp_ban", "error": "DUPLICATE_VALUE", "propertyValue": "ZT-000000001",
                "message": "A company with warp_ban ZT-000000001 already exists. Existing ID: 42"}]
    body = {"status": "error", "category": "VALIDATION_ERROR", "correlationId": "x",
            "message": "Property values were not valid: " + json.dumps(entries)}
    error = error_from_payload(body, status=400, unique_properties=UNIQUE_PROPERTIES)
    assert isinstance(error, UniqueValueConflict)
    assert (error.property_name, error.value, error.existing_id) == ("warp_ban", "ZT-000000001", "42")


def test_a_malformed_unique_value_is_a_validation_error_not_a_conflict() -> None:
    entries = [{"isValid": False, "name": "warp_ban", "error": "INVALID_ALPHA", "propertyValue": " x",
                "message": "value has leading whitespace"}]
    body = {"status": "error", "category": "VALIDATION_ERROR",
            "message": "Property values were not valid: " + json.dumps(entries)}
    assert type(error_from_payload(body, status=400, unique_properties=UNIQUE_PROPERTIES)) is ValidationFailed


def test_a_409_without_a_unique_property_is_a_plain_conflict() -> None:
    body = {"status": "error", "message": "Property named 'warp_status' already exists.", "category": "CONFLICT"}
    error = error_from_payload(body, status=409, unique_properties=UNIQUE_PROPERTIES)
    assert type(error) is Conflict


def test_auth_rate_limit_and_not_found_bodies() -> None:
    auth = error_from_payload({"status": "error", "message": "Authentication credentials not found.",
                               "correlationId": "f0ee980f", "category": "INVALID_AUTHENTICATION"}, status=401)
    assert isinstance(auth, AuthFailed) and auth.correlation_id == "f0ee980f"
    limited = error_from_payload({"status": "error", "message": "You have reached your secondly limit.",
                                  "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"},
                                 status=429, retry_after_s=2.0)
    assert isinstance(limited, RateLimited) and limited.retry_after_s == 2.0 and not limited.daily
    daily = error_from_payload({"message": "daily", "errorType": "RATE_LIMIT", "policyName": "DAILY"}, status=429)
    assert isinstance(daily, RateLimited) and daily.daily
    missing = error_from_payload({"status": "error", "category": "OBJECT_NOT_FOUND", "message": "Object not found"},
                                 status=404)
    assert isinstance(missing, NotFound)


def test_the_search_cap_is_its_own_type() -> None:
    body = {"status": "error", "category": "VALIDATION_ERROR",
            "message": "Search results are limited to 10,000; cannot page past 10000 results."}
    assert isinstance(error_from_payload(body, status=400), SearchLimitExceeded)


def test_a_body_that_is_not_json_still_gives_a_typed_error() -> None:
    error = error_from_payload(None, status=502, fallback_message="HubSpot answered 502 Bad Gateway")
    assert error.status == 502 and "502" in str(error)


def test_locked_migrating_and_gateway_answers_are_transient() -> None:
    locked = error_from_payload({"status": "error", "message": "locked"}, status=423)
    assert isinstance(locked, ServiceUnavailable) and locked.retry_after_s == 2.0  # HubSpot: wait at least 2 s
    migrating = error_from_payload({"message": "migrating"}, status=477, retry_after_s=30.0)
    assert isinstance(migrating, ServiceUnavailable) and migrating.retry_after_s == 30.0
    for status in (502, 504, 524):
        gateway = error_from_payload(None, status=status)
        assert isinstance(gateway, ServiceUnavailable) and gateway.retry_after_s is None
