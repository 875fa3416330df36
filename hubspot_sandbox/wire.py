"""HubSpot's wire conventions: timestamps, error bodies, the validation-error message format."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Response

JSON_CONTENT_TYPE = "application/json;charset=utf-8"
VALIDATION_PREFIX = "Property values were not valid: "


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_ms(epoch_ms: int) -> str:
    """UTC ISO-8601 with milliseconds and `Z`, as HubSpot writes every timestamp."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def record_id(value: Any) -> int | None:
    """A record id as HubSpot writes them (ASCII digits), else None: "²" is a digit to str.isdigit, not an id."""
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() else None


def parse_time_ms(value: Any) -> int:
    """Epoch milliseconds from epoch-ms (int or digit string) or ISO-8601 text; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time")
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def new_correlation_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class PropertyProblem:
    """One refused property value, rendered in HubSpot's two formats (message JSON and errors[])."""

    name: str
    code: str
    message: str
    value: str | None = None

    def message_entry(self, portal_id: int) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "isValid": False,
            "message": self.message,
            "error": self.code,
            "name": self.name,
            "localizedErrorMessage": self.message,
        }
        if self.value is not None:
            entry["propertyValue"] = self.value
        entry["portalId"] = portal_id
        return entry

    def detail(self) -> dict[str, Any]:
        return {"message": self.message, "code": self.code, "context": {"propertyName": [self.name]}}


@dataclass(eq=False)
class ApiFailure(Exception):
    """An error answer in HubSpot's `Error` shape; raised anywhere in a request, rendered once."""

    status: int
    category: str
    message: str
    context: dict[str, list[str]] | None = None
    errors: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    # The refused values behind a VALIDATION_ERROR, kept so batch failures can be merged.
    problems: list[PropertyProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self, correlation_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {"status": "error", "message": self.message, "correlationId": correlation_id}
        body.update(self.extra)
        if self.context:
            body["context"] = self.context
        if self.errors:
            body["errors"] = self.errors
        body["category"] = self.category
        return body

    def standard_error(self, extra_context: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """The same failure as one `StandardError` entry of a 207 batch response."""
        context = dict(self.context or {})
        context.update(extra_context or {})
        entry: dict[str, Any] = {"status": "error", "category": self.category, "message": self.message,
                                 "context": context}
        if self.errors:
            entry["errors"] = self.errors
        return entry


def validation_failure(problems: list[PropertyProblem], portal_id: int) -> ApiFailure:
    """400 VALIDATION_ERROR with HubSpot's JSON-array-in-a-string message plus structured errors[]."""
    entries = [p.message_entry(portal_id) for p in problems]
    message = VALIDATION_PREFIX + json.dumps(entries, separators=(",", ":"))
    return ApiFailure(400, "VALIDATION_ERROR", message, errors=[p.detail() for p in problems],
                      problems=list(problems))


def bad_request(message: str, **context: list[str]) -> ApiFailure:
    return ApiFailure(400, "VALIDATION_ERROR", message, context=context or None)


def no_content() -> Response:
    """A 204 as HubSpot sends it: no body and no Content-Type (Flask would add text/html)."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


def not_found(message: str, **context: list[str]) -> ApiFailure:
    return ApiFailure(404, "OBJECT_NOT_FOUND", message, context=context or None)
