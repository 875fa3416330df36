"""The sandbox's settings: changed at run time through POST /_sandbox/config, restored by reset."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hubspot_sandbox.wire import bad_request

# The forms of HubSpot's answer to a duplicate unique value (the team's hubspot-api.md, section 12):
# validation_400  400 VALIDATION_ERROR, "Cannot set PropertyValueCoordinates{...} on <target>. <holder> already has
#                 that value." (captured from HubSpot; the holder is the second id)
# validation_400_unnamed  the same 400 without the holder's id (HubSpot may reword messages at any time)
# error_tokens    400 VALIDATION_ERROR with errorType UNIQUE_VALUE_CONFLICT and errorTokens.existingObjectId
# conflict_409    409 CONFLICT, "... Existing ID: N", context.existingObjectId (the sandbox's earlier choice)
UNIQUE_CONFLICT_FORMS = ("validation_400", "validation_400_unnamed", "error_tokens", "conflict_409")
# How batch update and upsert report inputs that fail (hubspot-api.md, section 12): whole_batch, one 4xx for the
# batch and nothing written, even when every input carries an objectWriteTraceId (HubSpot documents the trace-id
# opt-in for batch create only), the form that exercises a client's fallback; multi_status, a 207 with per-input
# errors[] when every input carries a trace id (a 200 on 2026-09 paths); multi_status_200, the same errors[] in the
# success answer on every path (so a client must read errors[] in any 2xx). Batch create always honours the trace ids.
BATCH_WRITE_ERROR_FORMS = ("whole_batch", "multi_status", "multi_status_200")


@dataclass
class SandboxConfig:
    access_token: str
    client_secret: str
    portal_id: int = 62515
    app_id: int = 54321
    # HubSpot's burst budget per token and rolling 10 s (Free/Starter 100; None turns it off).
    rate_limit_per_10s: int | None = 100
    # The length of that rolling window: HubSpot's is 10 s; tests shorten it so a window passes quickly.
    rate_limit_window_seconds: float = 10.0
    # Search has its own per-second budget and is exempt from the 10-second one.
    search_per_second: int | None = 5
    # The account's daily quota (Free/Starter 250,000; Professional 625,000; Enterprise 1,000,000), shared by every
    # app of the account and reset at midnight in its time zone.
    daily_limit: int = 250_000
    time_zone: str = "America/New_York"
    # Where the account's records open in HubSpot's UI (the details' uiDomain): regional accounts use another.
    ui_domain: str = "app.hubspot.com"
    # The account's property validation rules (GET /crm/v3/property-validations/0-2), by property name: lists of
    # {"ruleType": "MAX_LENGTH" | "FORMAT" | "EMAIL_BLOCKED_DOMAINS" | ..., "ruleArguments": [...]}. Served as read;
    # the sandbox does not enforce them on writes (a gap, noted in the README's sandbox section).
    property_validations: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    webhook_target_url: str | None = None
    webhook_timeout_seconds: float = 5.0
    webhook_max_retries: int = 10
    webhook_retry_initial_seconds: float = 1.0
    webhook_retry_max_seconds: float = 60.0
    webhook_max_in_flight: int = 10
    webhook_max_events_per_request: int = 100
    # How long the dispatcher waits for more events before sending a part-filled batch.
    webhook_batch_window_ms: int = 25
    # Properties whose changes are sent as propertyChange events; None means every property.
    webhook_subscribed_properties: list[str] | None = None
    # Give every delivered event the same eventId (HubSpot warns eventIds are not unique across events).
    webhook_repeat_event_ids: bool = False
    # The user a rep edit is attributed to when the switch names none.
    default_rep_user_id: int = 7_001_234
    # How a duplicate value of a unique property is refused (see UNIQUE_CONFLICT_FORMS): by default HubSpot's
    # captured 400 whose message alone names the holder, the hardest form for a client to read.
    unique_conflict_form: str = "validation_400"
    batch_write_errors: str = "whole_batch"
    # The Exports API (api_exports.py): status reads an export answers before COMPLETE (PENDING, then PROCESSING),
    # the rows a file holds before the export is split into a zip of files (HubSpot's: a million), and the seconds its
    # download link lives after completing.
    export_status_polls: int = 2
    export_partition_rows: int = 1_000_000
    export_url_ttl_seconds: float = 300.0
    # How an export ends once its status reads are over: "complete", or "canceled" (as when HubSpot gives one up).
    export_outcome: str = "complete"

    def public(self) -> dict[str, Any]:
        """Settings as JSON, secrets left out."""
        data = dataclasses.asdict(self)
        data.pop("access_token")
        data.pop("client_secret")
        return data

    def updated(self, changes: dict[str, Any]) -> SandboxConfig:
        """A copy with `changes` applied, each checked (400 naming the setting when wrong)."""
        known = {f.name: f for f in dataclasses.fields(self)}
        values = dataclasses.asdict(self)
        for key, value in changes.items():
            if key not in known:
                raise bad_request(f"Unknown sandbox setting {key!r}; known: {', '.join(sorted(known))}.")
            values[key] = _checked(key, value)
        return SandboxConfig(**values)


_OPTIONAL_POSITIVE_INTS = {"rate_limit_per_10s", "search_per_second"}
_POSITIVE_INTS = {"portal_id", "app_id", "daily_limit", "webhook_max_in_flight", "webhook_max_events_per_request",
                  "default_rep_user_id", "export_partition_rows"}
_NON_NEGATIVE_INTS = {"webhook_max_retries", "webhook_batch_window_ms", "export_status_polls"}
_POSITIVE_FLOATS = {"webhook_timeout_seconds", "rate_limit_window_seconds", "export_url_ttl_seconds"}
_NON_NEGATIVE_FLOATS = {"webhook_retry_initial_seconds", "webhook_retry_max_seconds"}
MAX_IN_FLIGHT_CEILING = 32


def _token(key: str, value: Any) -> Any:
    if not isinstance(value, str) or not value:
        raise bad_request(f"{key} must be a non-empty string.")
    return value


def _target_url(key: str, value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not value.startswith(("http://", "https://"))):
        raise bad_request(f"{key} must be an http(s) URL or null.")
    return value


def _flag(key: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise bad_request(f"{key} must be true or false.")
    return value


def _time_zone(key: str, value: Any) -> Any:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise bad_request(f"{key} must be an IANA time zone name (e.g. Europe/Berlin).") from None
    return str(value)


def _one_of(forms: tuple[str, ...]) -> Any:
    def check(key: str, value: Any) -> Any:
        if value not in forms:
            raise bad_request(f"{key} must be one of {', '.join(forms)}.")
        return value
    return check


def _validations(key: str, value: Any) -> Any:
    ok = isinstance(value, dict) and all(
        isinstance(rules, list) and all(isinstance(r, dict) and isinstance(r.get("ruleType"), str) for r in rules)
        for rules in value.values())
    if not ok:
        raise bad_request(f"{key} must map property names to lists of {{ruleType, ruleArguments}}.")
    return value


def _ui_domain(key: str, value: Any) -> Any:
    if not isinstance(value, str) or not re.fullmatch(r"app(-[a-z0-9]+)?\.hubspot\.com", value):
        raise bad_request(f"{key} must be app.hubspot.com or a regional app-<region>.hubspot.com.")
    return value


def _property_names(key: str, value: Any) -> Any:
    if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        raise bad_request(f"{key} must be a list of property names or null.")
    return value


# The most a whole-number setting may be, where HubSpot (or sense) sets one.
_INT_CEILINGS = {
    "webhook_max_in_flight": (MAX_IN_FLIGHT_CEILING, f"webhook_max_in_flight must be at most {MAX_IN_FLIGHT_CEILING}."),
    "webhook_max_events_per_request": (100, "webhook_max_events_per_request must be at most 100 (HubSpot's batch "
                                            "size)."),
}


def _whole_number(key: str, value: Any) -> Any:
    optional = key in _OPTIONAL_POSITIVE_INTS
    if optional and value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_request(f"{key} must be a whole number" + (" or null." if optional else "."))
    minimum = 0 if key in _NON_NEGATIVE_INTS else 1
    if value < minimum:
        raise bad_request(f"{key} must be at least {minimum}.")
    ceiling, message = _INT_CEILINGS.get(key, (None, ""))
    if ceiling is not None and value > ceiling:
        raise bad_request(message)
    return value


def _seconds(key: str, value: Any) -> Any:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise bad_request(f"{key} must be a number of seconds.")
    if value < 0 or (key in _POSITIVE_FLOATS and value == 0):
        raise bad_request(f"{key} must be {'positive' if key in _POSITIVE_FLOATS else 'zero or more'}.")
    return float(value)


_CHECKS: dict[str, Any] = {
    "access_token": _token, "client_secret": _token, "webhook_target_url": _target_url,
    "webhook_repeat_event_ids": _flag, "time_zone": _time_zone, "ui_domain": _ui_domain, "property_validations": _validations,
    "batch_write_errors": _one_of(BATCH_WRITE_ERROR_FORMS), "unique_conflict_form": _one_of(UNIQUE_CONFLICT_FORMS),
    "export_outcome": _one_of(("complete", "canceled")),
    "webhook_subscribed_properties": _property_names,
    **dict.fromkeys(_OPTIONAL_POSITIVE_INTS | _POSITIVE_INTS | _NON_NEGATIVE_INTS, _whole_number),
    **dict.fromkeys(_POSITIVE_FLOATS | _NON_NEGATIVE_FLOATS, _seconds),
}


def _checked(key: str, value: Any) -> Any:
    check = _CHECKS.get(key)
    return value if check is None else check(key, value)
