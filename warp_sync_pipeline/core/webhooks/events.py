"""Inbound webhook batches: parse, validate each event by its subscription type, store once.

A batch is trusted (its signature passed) before it gets here. The whole batch is stored with one
INSERT ... ON CONFLICT (dedupe_key) DO NOTHING, so a redelivery, or the same event twice in one batch,
lands once. Events we do not handle, or that fail their type's checks, are stored as `ignored` with
the reason: rejecting them would make HubSpot retry the whole batch for a day.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

MAX_EVENTS_PER_BATCH = 100

HANDLED_SUBSCRIPTION_TYPES = frozenset(
    {"company.creation", "company.propertyChange", "company.deletion", "company.merge"}
)

STATUS_PENDING = "pending"
STATUS_IGNORED = "ignored"

# Stable reason codes for events stored as ignored (the text after the colon is for people).
REASON_INVALID_EVENT = "INVALID_EVENT"
REASON_UNHANDLED_TYPE = "UNHANDLED_SUBSCRIPTION_TYPE"
REASON_UNSTORABLE_TEXT = "UNSTORABLE_TEXT"

BIGINT_MAX = 2**63 - 1
# occurredAt must be a plausible epoch-ms instant (1970 .. year 3000), which also keeps it in range
# of PostgreSQL's timestamptz.
OCCURRED_AT_MAX_MS = 32_503_680_000_000

# PostgreSQL text and jsonb cannot hold NUL or an unpaired surrogate; JSON can spell both as escapes.
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_UNSTORABLE_CHAR = re.compile("[\x00\ud800-\udfff]")


class BatchRejected(Exception):
    """The body is not a batch we can read; `code` is stable (the receiver answers 400)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class StoreCounts:
    """received: events in the batch; stored: new rows; duplicates: events already stored (or
    repeated within the batch); ignored: new rows stored as ignored (included in stored)."""

    received: int
    stored: int
    duplicates: int
    ignored: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# -- parsing ---------------------------------------------------------------------------------------
class EventBatch(list):
    """The parsed events of one request, and the JSON text they came from.

    When `source_json` is set, PostgreSQL reads the payloads (and hashes the dedupe keys) from that
    text, so the events are not serialised a second time in Python.
    """

    source_json: str | None = None


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:20]}")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_batch(body: bytes) -> EventBatch:
    """The body as a list of at most 100 events, or `BatchRejected` (INVALID_JSON, NOT_AN_ARRAY,
    TOO_MANY_EVENTS). Elements are not checked here: an odd element is stored as ignored."""
    try:
        text = body.decode("utf-8")
        parsed = json.loads(text, parse_float=_finite_float, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise BatchRejected("INVALID_JSON", "the request body is not UTF-8") from None
    except RecursionError:
        raise BatchRejected("INVALID_JSON", "the request body nests too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise BatchRejected("INVALID_JSON", f"the request body is not valid JSON ({exc})") from None
    if not isinstance(parsed, list):
        raise BatchRejected("NOT_AN_ARRAY", f"the request body must be a JSON array of events, got {_json_kind(parsed)}")
    if len(parsed) > MAX_EVENTS_PER_BATCH:
        raise BatchRejected(
            "TOO_MANY_EVENTS", f"a batch holds at most {MAX_EVENTS_PER_BATCH} events, got {len(parsed)}"
        )
    if _UNSTORABLE_ESCAPE.search(text) and any(_has_unstorable(e) for e in parsed):
        # Rare: PostgreSQL cannot parse this text, so these events are stored from Python, scrubbed.
        return EventBatch(_UnstorableEvent(e) if _has_unstorable(e) else e for e in parsed)
    batch = EventBatch(parsed)
    batch.source_json = text
    return batch


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class _UnstorableEvent:
    """An element holding NUL or an unpaired surrogate, which PostgreSQL cannot store."""

    __slots__ = ("original",)

    def __init__(self, original: Any) -> None:
        self.original = original


def _has_unstorable(value: Any) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE_CHAR.search(value) is not None
    if isinstance(value, list):
        return any(_has_unstorable(v) for v in value)
    if isinstance(value, dict):
        return any(_has_unstorable(k) or _has_unstorable(v) for k, v in value.items())
    return False


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _UNSTORABLE_CHAR.sub("\ufffd", value)
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    return value


def _payload(element: Any) -> Any:
    return _scrub(element.original) if isinstance(element, _UnstorableEvent) else element


# -- the dedupe key ----------------------------------------------------------------------------------
# SHA-256 of the event's own fields without attemptNumber, over jsonb's canonical text (keys sorted
# and de-duplicated, one spelling per value): eventId alone is not unique and creation, deletion and
# merge events carry no property, so the whole event is the identity; only the attempt number
# changes between redeliveries. PostgreSQL computes it while inserting (C, beside the data).
DEDUPE_KEY_SQL = (
    "sha256(convert_to((CASE WHEN jsonb_typeof({e}) = 'object' THEN {e} - 'attemptNumber' ELSE {e} END)::text,"
    " 'UTF8'))"
)


def dedupe_key(conn: sa.Connection, event: Any) -> str:
    """The hex dedupe key PostgreSQL stores for `event` (for tests and tooling)."""
    expression = DEDUPE_KEY_SQL.format(e="CAST(:event AS jsonb)")
    return conn.execute(sa.text(f"SELECT encode({expression}, 'hex')"), {"event": _json(_payload(event))}).scalar_one()


_json = json.JSONEncoder(separators=(",", ":")).encode


# -- per-event validation ----------------------------------------------------------------------------
def _as_int(value: Any, *, minimum: int = 0, maximum: int = BIGINT_MAX) -> int | None:
    """An integer in range, from a JSON number or a string of digits (ids arrive either way)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)
    else:
        return None
    return number if minimum <= number <= maximum else None


def _as_id(value: Any) -> str | None:
    number = _as_int(value, minimum=1)
    return None if number is None else str(number)


# (payload key, column, minimum, maximum) of the optional numeric fields every event may carry.
_OPTIONAL_INTEGERS = (
    ("eventId", "event_id", 0, BIGINT_MAX),
    ("subscriptionId", "subscription_id", 0, BIGINT_MAX),
    ("portalId", "portal_id", 0, BIGINT_MAX),
    ("appId", "app_id", 0, BIGINT_MAX),
    ("attemptNumber", "attempt_number", 0, 2**31 - 1),
)
_OPTIONAL_TEXTS = (("changeSource", "change_source"), ("sourceId", "source_id"), ("changeFlag", "change_flag"))


def _take_int(event: dict[str, Any], name: str, minimum: int, maximum: int, required: bool,
              problems: list[str]) -> int | None:
    raw = event.get(name)
    if raw is None:
        if required:
            problems.append(f"{name} is missing")
        return None
    if type(raw) is int and minimum <= raw <= maximum:  # the common case, checked cheaply
        return raw
    value = _as_int(raw, minimum=minimum, maximum=maximum)
    if value is None:
        problems.append(f"{name} must be a whole number from {minimum} to {maximum}")
    return value


def _take_id(event: dict[str, Any], name: str, required: bool, problems: list[str]) -> str | None:
    raw = event.get(name)
    if raw is None:
        if required:
            problems.append(f"{name} is missing")
        return None
    value = _as_id(raw)
    if value is None:
        problems.append(f"{name} must be a positive whole number")
    return value


def _take_text(event: dict[str, Any], name: str, required: bool, problems: list[str]) -> str | None:
    raw = event.get(name)
    if raw is None:
        if required:
            problems.append(f"{name} is missing")
        return None
    if type(raw) is not str or (required and not raw.strip()):
        problems.append(f"{name} must be a {'non-empty ' if required else ''}string")
        return None
    return raw


def prepare_event(element: Any) -> dict[str, Any]:
    """The status, reason and typed columns of one event (JSON-ready; occurred_at as epoch ms)."""
    unstorable = isinstance(element, _UnstorableEvent)
    event = _payload(element)
    row: dict[str, Any] = {}
    if not isinstance(event, dict):
        row["status"] = STATUS_IGNORED
        row["reason"] = f"{REASON_INVALID_EVENT}: an event must be a JSON object, got {_json_kind(event)}"
        return row

    problems: list[str] = []
    subscription_type = _take_text(event, "subscriptionType", True, problems)
    row["subscription_type"] = subscription_type
    row["object_id"] = _take_id(event, "objectId", True, problems)
    row["occurred_at_ms"] = _take_int(event, "occurredAt", 1, OCCURRED_AT_MAX_MS, True, problems)
    for name, column, minimum, maximum in _OPTIONAL_INTEGERS:
        row[column] = _take_int(event, name, minimum, maximum, False, problems)
    for name, column in _OPTIONAL_TEXTS:
        row[column] = _take_text(event, name, False, problems)

    if subscription_type == "company.propertyChange":
        row["property_name"] = _take_text(event, "propertyName", True, problems)
        if "propertyValue" not in event:
            problems.append("propertyValue is missing")
        else:
            # A cleared value may arrive as "" or null; both mean empty (DESIGN.md normalisation).
            row["property_value"] = _take_text(event, "propertyValue", False, problems)
    elif subscription_type == "company.merge":
        row["primary_object_id"] = _take_id(event, "primaryObjectId", True, problems)
        row["new_object_id"] = _take_id(event, "newObjectId", False, problems)
        merged = event.get("mergedObjectIds")
        merged_ids = [_as_id(v) for v in merged] if isinstance(merged, list) else None
        if not merged_ids or any(v is None for v in merged_ids):
            problems.append("mergedObjectIds must be a non-empty array of positive whole numbers")
        else:
            row["merged_object_ids"] = merged_ids

    if unstorable:
        row["status"] = STATUS_IGNORED
        row["reason"] = f"{REASON_UNSTORABLE_TEXT}: the event holds NUL or unpaired surrogate characters"
    elif subscription_type is not None and subscription_type not in HANDLED_SUBSCRIPTION_TYPES:
        row["status"] = STATUS_IGNORED
        row["reason"] = f"{REASON_UNHANDLED_TYPE}: warp-sync does not apply {subscription_type} events"
    elif problems:
        row["status"] = STATUS_IGNORED
        row["reason"] = f"{REASON_INVALID_EVENT}: " + "; ".join(problems)
    else:
        row["status"] = STATUS_PENDING
    return row


# -- storing -----------------------------------------------------------------------------------------
_TYPED_COLUMNS = (
    "subscription_type, object_id, occurred_at, event_id, subscription_id, portal_id, app_id, attempt_number, "
    "property_name, property_value, change_source, source_id, change_flag, primary_object_id, "
    "merged_object_ids, new_object_id"
)
_TYPED_RECORD = (
    "status text, reason text, subscription_type text, object_id text, occurred_at_ms bigint, event_id bigint, "
    "subscription_id bigint, portal_id bigint, app_id bigint, attempt_number integer, property_name text, "
    "property_value text, change_source text, source_id text, change_flag text, primary_object_id text, "
    "merged_object_ids text[], new_object_id text"
)
_TYPED_VALUES = (
    "r.subscription_type, r.object_id, timestamptz 'epoch' + r.occurred_at_ms * interval '1 millisecond', "
    "r.event_id, r.subscription_id, r.portal_id, r.app_id, r.attempt_number, r.property_name, r.property_value, "
    "r.change_source, r.source_id, r.change_flag, r.primary_object_id, r.merged_object_ids, r.new_object_id"
)

# The payloads come from the request's own JSON text (b), the verdicts and typed columns from Python
# (r), matched by position. Sorting by the key gives every batch one lock order, so two overlapping
# deliveries in flight cannot deadlock.
_INSERT_BATCH = sa.text(f"""
    INSERT INTO hubspot_webhook_events (dedupe_key, status, reason, {_TYPED_COLUMNS}, payload)
    SELECT {DEDUPE_KEY_SQL.format(e="b.e")}, r.status, r.reason, {_TYPED_VALUES}, b.e
    FROM jsonb_array_elements(CAST(:payloads AS jsonb)) WITH ORDINALITY AS b(e, n)
    JOIN jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(n bigint, {_TYPED_RECORD}) USING (n)
    ORDER BY 1
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING status
""")

# The benchmark's baseline: the same row, one statement per event.
_INSERT_ONE = sa.text(f"""
    INSERT INTO hubspot_webhook_events (dedupe_key, status, reason, {_TYPED_COLUMNS}, payload)
    SELECT {DEDUPE_KEY_SQL.format(e="b.e")}, r.status, r.reason, {_TYPED_VALUES}, b.e
    FROM (SELECT CAST(:payload AS jsonb) AS e) AS b,
         jsonb_to_record(CAST(:row AS jsonb)) AS r({_TYPED_RECORD})
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING status
""")


def _counts(received: int, statuses: list[str]) -> StoreCounts:
    return StoreCounts(
        received=received,
        stored=len(statuses),
        duplicates=received - len(statuses),
        ignored=sum(1 for s in statuses if s == STATUS_IGNORED),
    )


def _set_timeout(conn: sa.Connection, statement_timeout_ms: int | None) -> None:
    if statement_timeout_ms:
        conn.execute(sa.text("SELECT set_config('statement_timeout', :ms, true)"),
                     {"ms": str(int(statement_timeout_ms))})


def _in_transaction(bind: sa.Engine | sa.Connection, work: Any) -> Any:
    if isinstance(bind, sa.Connection):
        return work(bind)
    with bind.begin() as conn:
        return work(conn)


def store_batch(
    bind: sa.Engine | sa.Connection, events: Sequence[Any], *, statement_timeout_ms: int | None = None
) -> StoreCounts:
    """Store a batch with ONE INSERT statement; duplicates are skipped, odd events stored ignored.

    `events` is what `parse_batch` returned (or any list of decoded events). With an Engine the batch
    commits on its own; with a Connection it joins the caller's transaction. `statement_timeout_ms`
    bounds the insert (one extra round trip; the receiver sets it on its connections instead).
    """
    if not events:
        return StoreCounts(0, 0, 0, 0)
    rows = []
    for position, element in enumerate(events, 1):
        row = prepare_event(element)
        row["n"] = position
        rows.append(row)
    source_json = getattr(events, "source_json", None)
    params = {"rows": _json(rows), "payloads": source_json or _payloads_json(events)}

    def work(conn: sa.Connection) -> list[str]:
        _set_timeout(conn, statement_timeout_ms)
        return list(conn.execute(_INSERT_BATCH, params).scalars())

    try:
        statuses = _in_transaction(bind, work)
    except sa.exc.DataError:
        if not source_json or isinstance(bind, sa.Connection):
            raise
        # JSON that Python read but PostgreSQL would not: store the events as Python re-spells them.
        params["payloads"] = _payloads_json(events)
        statuses = _in_transaction(bind, work)
    return _counts(len(events), statuses)


def _payloads_json(events: Sequence[Any]) -> str:
    # HubSpot's events hold integers and strings, which this spelling and the request's agree on.
    return _json([_payload(e) for e in events])


def store_batch_per_event(
    bind: sa.Engine | sa.Connection, events: Sequence[Any], *, statement_timeout_ms: int | None = None
) -> StoreCounts:
    """The naive way, one INSERT per event in one transaction: the benchmark's baseline only."""
    if not events:
        return StoreCounts(0, 0, 0, 0)

    def work(conn: sa.Connection) -> list[str]:
        _set_timeout(conn, statement_timeout_ms)
        statuses: list[str] = []
        for element in events:
            params = {"row": _json(prepare_event(element)), "payload": _json(_payload(element))}
            status = conn.execute(_INSERT_ONE, params).scalar()
            if status is not None:
                statuses.append(status)
        return statuses

    return _counts(len(events), _in_transaction(bind, work))
