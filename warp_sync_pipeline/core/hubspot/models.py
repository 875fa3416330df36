"""What the client hands back: companies, pages, and per-record outcomes of batches."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from warp_sync_pipeline.core.hubspot.errors import HubSpotError

PropertyValues = Mapping[str, str | None]
# Properties HubSpot keeps on every record: its id, and when it last changed (the record's `updatedAt`, as a property
# a search can filter on and an export can carry; every API write moves it, ours included).
OBJECT_ID_PROPERTY = "hs_object_id"
LAST_MODIFIED_PROPERTY = "hs_lastmodifieddate"


@dataclass(frozen=True)
class DailyQuota:
    """The account's daily request quota (shared by every app of the account) and when it resets."""

    limit: int | None  # None when only the reset time could be learned
    used: int | None
    resets_at: datetime


def parse_time(value: Any) -> datetime | None:
    """HubSpot's ISO-8601 UTC (`...123Z`) or epoch milliseconds, as an aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(frozen=True)
class PropertyVersion:
    """One entry of a property's history (`propertiesWithHistory`)."""

    value: str | None
    timestamp: datetime
    source_type: str | None = None
    source_id: str | None = None
    source_label: str | None = None
    updated_by_user_id: int | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> PropertyVersion:
        stamp = parse_time(data.get("timestamp"))
        if stamp is None:
            raise ValueError("history entry without a timestamp")
        user = data.get("updatedByUserId")
        return cls(
            value=data.get("value"),
            timestamp=stamp,
            source_type=data.get("sourceType"),
            source_id=None if data.get("sourceId") is None else str(data.get("sourceId")),
            source_label=data.get("sourceLabel"),
            updated_by_user_id=None if user is None else int(user),
        )


@dataclass(frozen=True)
class Company:
    """A HubSpot company. Every property value is a string or None, as HubSpot sends them."""

    id: str
    properties: dict[str, str | None]
    created_at: datetime | None
    updated_at: datetime | None
    archived: bool = False
    history: dict[str, list[PropertyVersion]] = field(default_factory=dict)
    archived_at: datetime | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Company:
        raw_history = data.get("propertiesWithHistory") or {}
        return cls(
            id=str(data["id"]),
            properties={k: (None if v is None else str(v)) for k, v in (data.get("properties") or {}).items()},
            created_at=parse_time(data.get("createdAt")),
            updated_at=parse_time(data.get("updatedAt")),
            archived=bool(data.get("archived", False)),
            history={name: [PropertyVersion.from_api(v) for v in versions] for name, versions in raw_history.items()},
            archived_at=parse_time(data.get("archivedAt")),
        )

    def get(self, name: str) -> str | None:
        return self.properties.get(name)

    def last_change(self, name: str) -> PropertyVersion | None:
        """The newest history entry of a property (HubSpot does not promise an order)."""
        versions = self.history.get(name)
        return max(versions, key=lambda v: v.timestamp) if versions else None


@dataclass(frozen=True)
class CompanyPage:
    """One page of `GET /crm/v3/objects/companies`; `next_after` is None on the last page."""

    results: list[Company]
    next_after: str | None


@dataclass(frozen=True)
class SearchPage:
    total: int
    results: list[Company]
    next_after: str | None


@dataclass(frozen=True)
class PageProgress:
    """Told to an `iter_companies` progress callback after each page."""

    pages: int
    companies: int
    next_after: str | None


@dataclass(frozen=True)
class CompanyUpdate:
    """One input of update / upsert: `id` is the company id, or the idProperty's value."""

    id: str
    properties: PropertyValues


@dataclass(frozen=True)
class RecordOutcome:
    """The result of one input of a batch call, in the caller's input order.

    Success: `company` is set (and `created` for an upsert: HubSpot's `new`).
    Failure: `error` is the typed error for this record (ValidationFailed with `property_errors`,
    UniqueValueConflict, NotFound, ...; OutcomeUnknown when the record's fate is not known).
    """

    index: int
    key: str | None
    company: Company | None = None
    error: HubSpotError | None = None
    created: bool | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.company is not None


@dataclass(frozen=True)
class Filter:
    """A search filter: operator EQ, NEQ, LT, LTE, GT, GTE, BETWEEN, IN, NOT_IN, HAS_PROPERTY,
    NOT_HAS_PROPERTY, CONTAINS_TOKEN or NOT_CONTAINS_TOKEN."""

    property_name: str
    operator: str
    value: str | None = None
    high_value: str | None = None
    values: tuple[str, ...] | None = None

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {"propertyName": self.property_name, "operator": self.operator}
        if self.value is not None:
            body["value"] = self.value
        if self.high_value is not None:
            body["highValue"] = self.high_value
        if self.values is not None:
            body["values"] = list(self.values)
        return body


@dataclass(frozen=True)
class Sort:
    property_name: str
    direction: str = "ASCENDING"  # or DESCENDING

    def to_api(self) -> dict[str, str]:
        return {"propertyName": self.property_name, "direction": self.direction}
