"""HubSpot failures as typed exceptions, parsed from HubSpot's error bodies.

Two families matter to callers:
- `RequestFailed`: HubSpot definitely did not apply the request (a 4xx, a 429, a 503, a
  connection that was never made, or a request we never sent because the time budget ran out).
- `OutcomeUnknown`: a write whose answer never arrived (a timeout or a dropped connection after
  the request left): it may have been applied. The create flow reads back by idProperty then.

Messages carry HubSpot's own text, category and correlation id, never a header or the token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

VALIDATION_PREFIX = "Property values were not valid: "
# HubSpot's CONFLICT text for contacts ("Existing ID: 37765128953"); the sandbox says the same.
EXISTING_ID_PATTERN = re.compile(r"existing\s+(?:object\s+)?id\D{0,3}(\d+)", re.IGNORECASE)
# HubSpot's captured answer to a duplicate unique value (hubspot-api.md, section 12): "Cannot set
# PropertyValueCoordinates{..., propertyName=warp_ban, value=ZT-...} on <target>. <holder> already has that value."
# The holder is the id before "already has that value", never the "on <id>" one (the record the write aimed at,
# which for a create never exists). Message text may change without notice: read it only opportunistically.
COORDINATES_PATTERN = re.compile(r"PropertyValueCoordinates\{(?P<fields>[^}]*)\}")
ALREADY_HELD_PATTERN = re.compile(r"(\d+)\s+already has that value", re.IGNORECASE)
# Transient 4xx answers (hubspot-api.md, section 12): a record locked by another request, a portal migrating.
TRANSIENT_4XX = frozenset({423, 477})
LOCKED_WAIT_S = 2.0
# Words by which a 400 about a unique property says the value is taken (not merely malformed).
DUPLICATE_WORDS = ("unique", "already", "duplicate", "exists", "in use", "taken")


@dataclass(frozen=True)
class PropertyError:
    """One property HubSpot refused, with its reason (`code` such as INVALID_OPTION)."""

    name: str
    message: str
    code: str | None = None
    value: str | None = None


class HubSpotError(Exception):
    """Any failure talking to HubSpot. `status` is the HTTP status (None when none arrived)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        category: str | None = None,
        sub_category: str | None = None,
        correlation_id: str | None = None,
        context: Mapping[str, list[str]] | None = None,
        property_errors: Iterable[PropertyError] = (),
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.category = category
        self.sub_category = sub_category
        self.correlation_id = correlation_id
        self.context: dict[str, list[str]] = dict(context or {})
        self.property_errors: tuple[PropertyError, ...] = tuple(property_errors)
        self.attempts = attempts

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.category:
            parts.append(f"category={self.category}")
        if self.correlation_id:
            parts.append(f"correlationId={self.correlation_id}")
        if self.attempts > 1:
            parts.append(f"attempts={self.attempts}")
        return " | ".join(parts)

    @property
    def failed_properties(self) -> list[str]:
        return [e.name for e in self.property_errors]


class OutcomeUnknown(HubSpotError):
    """A write whose result never arrived: HubSpot may or may not have applied it."""


class RequestFailed(HubSpotError):
    """HubSpot definitely did not apply the request."""


class ServiceUnavailable(RequestFailed):
    """5xx answers, 423 (a record locked) and 477 (a migration in progress), timeouts of reads, or connections
    never made, until attempts or time ran out."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s  # the least wait HubSpot asks for (Retry-After; 2 s for a 423)


class RateLimited(RequestFailed):
    """429 until attempts or time ran out (or HubSpot's daily cap, which is never retried)."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        interval_s: float | None = None,
        daily: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s  # from Retry-After, when HubSpot sends one
        self.interval_s = interval_s  # from X-HubSpot-RateLimit-Interval-Milliseconds
        self.daily = daily


class DailyShareReserved(RateLimited):
    """Nothing sent: what is left of the account's daily quota is kept for synchronous creates. A daily
    limit for bulk callers (never retried; the flows pause until HubSpot's reset)."""


class BudgetExhausted(RequestFailed):
    """No request token (or no time) left within the caller's time budget: nothing was sent."""


class AuthFailed(RequestFailed):
    """401 (bad or expired token) or 403 (missing scope). Retrying cannot help; the drain pauses."""


class NotFound(RequestFailed):
    """404 / OBJECT_NOT_FOUND: no such company (or property)."""


class BadRequest(RequestFailed):
    """Any other 4xx HubSpot refused."""


class ValidationFailed(BadRequest):
    """400 VALIDATION_ERROR; `property_errors` names each refused property and why."""


class SearchLimitExceeded(BadRequest):
    """Search cannot page past HubSpot's 10,000-result cap: narrow the filters, or list instead."""

    def __init__(self, message: str, *, total: int | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.total = total


class Conflict(RequestFailed):
    """409 CONFLICT (e.g. a property name that already exists)."""


class UniqueValueConflict(Conflict):
    """A write would give a `hasUniqueValue` property a value another company already holds."""

    def __init__(
        self,
        message: str,
        *,
        property_name: str | None = None,
        value: str | None = None,
        existing_id: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.property_name = property_name
        self.value = value
        self.existing_id = existing_id


# --- parsing ---------------------------------------------------------------------------------------


def parse_property_errors(payload: Mapping[str, Any]) -> list[PropertyError]:
    """Both shapes HubSpot uses: the JSON array inside `message`, and the structured `errors[]`."""
    found: dict[tuple[str, str | None], PropertyError] = {}
    message = payload.get("message")
    if isinstance(message, str) and VALIDATION_PREFIX.strip() in message:
        raw = message.split(VALIDATION_PREFIX.strip(), 1)[1].strip()
        try:
            entries = json.loads(raw)
        except ValueError:
            entries = []
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, Mapping) and entry.get("name"):
                item = PropertyError(
                    name=str(entry["name"]),
                    message=str(entry.get("message") or entry.get("localizedErrorMessage") or ""),
                    code=_opt_str(entry.get("error")),
                    value=_opt_str(entry.get("propertyValue")),
                )
                found.setdefault((item.name, item.code), item)
    for detail in payload.get("errors") or []:
        if not isinstance(detail, Mapping):
            continue
        names = _context_values(detail.get("context"), "propertyName") or (
            [str(detail["in"])] if detail.get("in") else []
        )
        for name in names:
            code = _opt_str(detail.get("code"))
            key = (name, code)
            if key in found or any(k[0] == name and (code is None or k[1] is None) for k in found):
                continue
            found[key] = PropertyError(name=name, message=str(detail.get("message") or ""), code=code)
    return list(found.values())


def error_from_payload(
    payload: Mapping[str, Any] | None,
    *,
    status: int | None,
    correlation_id: str | None = None,
    unique_properties: frozenset[str] = frozenset(),
    retry_after_s: float | None = None,
    interval_s: float | None = None,
    fallback_message: str = "",
) -> HubSpotError:
    """Turn an error body (a whole response's, or one entry of a batch's `errors[]`) into a type."""
    payload = payload if isinstance(payload, Mapping) else {}
    category = _opt_str(payload.get("category")) or _opt_str(payload.get("errorType"))
    message = str(payload.get("message") or fallback_message or f"HubSpot answered {status}")
    context = {k: [str(x) for x in v] if isinstance(v, list) else [str(v)] for k, v in
               (payload.get("context") or {}).items()} if isinstance(payload.get("context"), Mapping) else {}
    common: dict[str, Any] = {
        "status": status,
        "category": category,
        "sub_category": _opt_str(payload.get("subCategory")),
        "correlation_id": _opt_str(payload.get("correlationId")) or correlation_id,
        "context": context,
    }
    property_errors = parse_property_errors(payload)
    common["property_errors"] = property_errors

    unique = (_unique_conflict_reported(payload, message, common)
              or _unique_conflict(message, category, status, context, property_errors, unique_properties, common))
    if unique is not None:
        return unique
    if status == 429 or category in {"RATE_LIMIT", "RATE_LIMITS"}:
        policy = str(payload.get("policyName") or "")
        return RateLimited(
            message, retry_after_s=retry_after_s, interval_s=interval_s, daily=policy.upper() == "DAILY", **common
        )
    if status in {401, 403} or category in {"INVALID_AUTHENTICATION", "EXPIRED_AUTHENTICATION", "MISSING_SCOPES"}:
        return AuthFailed(message, **common)
    if status == 404 or category == "OBJECT_NOT_FOUND":
        return NotFound(message, **common)
    if status == 409 or category in {"CONFLICT", "OBJECT_ALREADY_EXISTS"}:
        return Conflict(message, **common)
    if status is not None and (status >= 500 or status in TRANSIENT_4XX):
        # 423: wait at least 2 s before retrying (HubSpot's error-handling guide); 477: its Retry-After.
        wait = retry_after_s if retry_after_s is not None else (LOCKED_WAIT_S if status == 423 else None)
        return ServiceUnavailable(message, retry_after_s=wait, **common)
    if _is_search_cap(message):
        return SearchLimitExceeded(message, **common)
    if category == "VALIDATION_ERROR" or property_errors:
        return ValidationFailed(message, **common)
    return BadRequest(message, **common)


def _unique_conflict_reported(payload: Mapping[str, Any], message: str,
                              common: dict[str, Any]) -> UniqueValueConflict | None:
    """The two forms that say outright that a unique value is taken: `errorType: UNIQUE_VALUE_CONFLICT` (with
    `errorTokens`), and the "PropertyValueCoordinates{...} ... already has that value" message."""
    if str(payload.get("errorType") or "").upper() == "UNIQUE_VALUE_CONFLICT":
        tokens = payload.get("errorTokens") if isinstance(payload.get("errorTokens"), Mapping) else {}
        return UniqueValueConflict(
            message, property_name=_first(_context_values(tokens, "propertyName")),
            value=_first(_context_values(tokens, "propertyValue")),
            existing_id=_first(_context_values(tokens, "existingObjectId")), **common,
        )
    coordinates = COORDINATES_PATTERN.search(message)
    if coordinates is None or "already has that value" not in message.lower():
        return None
    fields = coordinates.group("fields")
    name = _match(re.compile(r"propertyName=([^,\s]+)"), fields)
    value = _match(re.compile(r"(?:^|,\s*)value=(.*)$"), fields)
    return UniqueValueConflict(message, property_name=name, value=value,
                               existing_id=_match(ALREADY_HELD_PATTERN, message), **common)


def _unique_conflict(
    message: str,
    category: str | None,
    status: int | None,
    context: Mapping[str, list[str]],
    property_errors: list[PropertyError],
    unique_properties: frozenset[str],
    common: dict[str, Any],
) -> UniqueValueConflict | None:
    existing = (
        _first(context.get("existingObjectId"))
        or _first(context.get("existingId"))
        or _match(EXISTING_ID_PATTERN, message)
    )
    named = [e for e in property_errors if e.name in unique_properties]
    named_in_context = [n for n in context.get("propertyName", []) if n in unique_properties]
    is_conflict = status == 409 or category in {"CONFLICT", "OBJECT_ALREADY_EXISTS"}
    if is_conflict and (existing or named or named_in_context):
        name = named[0].name if named else (named_in_context[0] if named_in_context else None)
        value = named[0].value if named else _first(context.get("propertyValue"))
        return UniqueValueConflict(message, property_name=name, value=value, existing_id=existing, **common)
    # A 400 that names a unique property and says its value is taken (not merely malformed).
    if status == 400 or category == "VALIDATION_ERROR":
        for error in named:
            text = f"{error.code or ''} {error.message}".lower()
            if any(word in text for word in DUPLICATE_WORDS):
                return UniqueValueConflict(
                    message, property_name=error.name, value=error.value,
                    existing_id=existing or _match(EXISTING_ID_PATTERN, error.message), **common,
                )
        lowered = message.lower()
        for name in unique_properties:
            if name in message and any(word in lowered for word in DUPLICATE_WORDS) and not named:
                return UniqueValueConflict(message, property_name=name, existing_id=existing, **common)
    return None


def _is_search_cap(message: str) -> bool:
    lowered = message.lower()
    return "10000" in lowered.replace(",", "") and ("search" in lowered or "result" in lowered or "page" in lowered)


def _context_values(context: Any, key: str) -> list[str]:
    if not isinstance(context, Mapping):
        return []
    value = context.get(key)
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)] if value is not None else []


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _first(values: list[str] | None) -> str | None:
    return values[0] if values else None


def _match(pattern: re.Pattern[str], text: str) -> str | None:
    found = pattern.search(text or "")
    return found.group(1) if found else None

