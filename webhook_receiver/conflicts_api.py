"""The review queue as JSON: `GET /v1/conflicts`, `GET /v1/conflicts/{id}`, `POST /v1/conflicts/{id}/resolve`.

Bearer credentials only (the Authorization header); no cookies, no CSRF. Reading needs `conflicts:read`
(admin, resolver), resolving `conflicts:resolve` (resolver); the audit log records the credential's name.

Resolutions call HubSpot through the receiver's shared client (webhook_receiver.hubspot_client).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, current_app, g, jsonify, request

from warp_sync_pipeline.core.review import (
    LIST_LIMIT_MAX,
    ConflictChanged,
    ResolutionFailed,
    ReviewError,
    get_conflict,
    list_open_conflicts,
    mapped_fields,
    parse_version,
    resolve_conflict,
)
from webhook_receiver.auth import require
from webhook_receiver.errors import ApiError

# Re-exported: review.py's pages and the review tests take the shared client from here.
from webhook_receiver.hubspot_client import hubspot_client as hubspot_client
from webhook_receiver.resources import receiver_resources

log = logging.getLogger(__name__)

bp = Blueprint("conflicts_api", __name__, url_prefix="/v1/conflicts")

DEFAULT_RESOLUTION_TIME_BUDGET_S = 10.0
DEFAULT_RESOLUTION_LEASE_WAIT_S = 5.0

# HTTP status of each review error code (core/review.py).
STATUS_BY_CODE: Mapping[str, int] = {
    "INVALID_RESOLUTION": 400,
    "CONFLICT_NOT_FOUND": 404,
    "CONFLICT_CHANGED": 409,
    "CUSTOMER_BUSY": 409,
    "CUSTOMER_NOT_LINKED": 409,
    "COMPANY_NOT_FOUND": 409,
    "FIELD_NOT_MAPPED": 409,
    "IMMUTABLE_FIELD": 409,
    "INVALID_VALUE": 422,
    "HUBSPOT_SYNC_FAILED": 502,
    "WARP_WRITE_FAILED": 503,
    "HUBSPOT_NOT_CONFIGURED": 503,
    "INVALID_FIELD_MAPPING": 503,
}
RESOLVE_KEYS = {"choice", "value", "expected_version"}


# --- settings -------------------------------------------------------------------------------------------------


def resolution_settings(app: Flask) -> dict[str, float]:
    """resolve_conflict's time budget (the HubSpot read and write) and its wait for the customer's lease."""
    return {
        "time_budget_s": float(app.config.get("RESOLUTION_TIME_BUDGET_SECONDS", DEFAULT_RESOLUTION_TIME_BUDGET_S)),
        "lease_wait_s": float(app.config.get("RESOLUTION_LEASE_WAIT_SECONDS", DEFAULT_RESOLUTION_LEASE_WAIT_S)),
    }


# --- errors -------------------------------------------------------------------------------------------------


def review_api_error(exc: ReviewError) -> ApiError:
    """The JSON error for a review error: its code, message, details, and for CONFLICT_CHANGED the row now."""
    extra: dict[str, Any] = {k: v for k, v in exc.details.items() if v is not None or k == "hubspot_applied"}
    if isinstance(exc, ConflictChanged):
        extra["current"] = exc.current.as_dict() if exc.current else None
    if isinstance(exc, ResolutionFailed):
        extra["conflict_open"] = True
    return ApiError(STATUS_BY_CODE.get(exc.code, 409), exc.code, exc.message, **extra)


def _validation_error(errors: list[dict[str, str]]) -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", "The request has invalid fields.", fields=errors)


# --- routes ---------------------------------------------------------------------------------------------------


@bp.get("")
@require("conflicts:read")
def list_conflicts():  # noqa: ANN201
    engine: sa.Engine = receiver_resources().db
    errors: list[dict[str, str]] = []
    unknown = sorted(set(request.args) - {"field", "customer", "limit", "after"})
    errors += [{"field": key, "reason": "unknown parameter"} for key in unknown]
    field = request.args.get("field") or None
    if field is not None and field not in mapped_fields(engine):
        errors.append({"field": "field", "reason": "not a mapped WARP field"})
    limit = _positive_int(request.args.get("limit"), "limit", errors, default=100, maximum=LIST_LIMIT_MAX)
    after = _positive_int(request.args.get("after"), "after", errors, default=None)
    if errors:
        raise _validation_error(errors)
    page = list_open_conflicts(
        engine, field=field, customer=request.args.get("customer") or None, limit=limit, after=after
    )
    return jsonify({"success": True, "data": {
        "conflicts": [conflict.as_dict() for conflict in page.conflicts],
        "total": page.total,
        "next_after": page.next_after,
    }})


@bp.get("/<int:conflict_id>")
@require("conflicts:read")
def show_conflict(conflict_id: int):  # noqa: ANN201
    conflict = get_conflict(receiver_resources().db, conflict_id)
    if conflict is None:
        raise ApiError(404, "CONFLICT_NOT_FOUND", f"No conflict {conflict_id}.")
    return jsonify({"success": True, "data": conflict.as_dict()})


@bp.post("/<int:conflict_id>/resolve")
@require("conflicts:resolve")
def resolve(conflict_id: int):  # noqa: ANN201
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "VALIDATION_ERROR", "The body must be a JSON object.")
    errors = [{"field": key, "reason": "unknown field"} for key in sorted(set(body) - RESOLVE_KEYS)]
    choice = body.get("choice")
    if choice not in ("warp", "hubspot", "value"):
        errors.append({"field": "choice", "reason": "must be one of warp, hubspot, value"})
    if choice == "value" and "value" not in body:
        errors.append({"field": "value", "reason": "required with choice 'value' (null clears the field)"})
    if choice in ("warp", "hubspot") and "value" in body:
        errors.append({"field": "value", "reason": "only with choice 'value'"})
    version = body.get("expected_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        errors.append({"field": "expected_version", "reason": "required: the conflict version you saw (>= 1)"})
    if errors:
        raise _validation_error(errors)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        outcome = resolve_conflict(
            receiver_resources(app).db, hubspot_client(app), conflict_id, choice, body.get("value"),
            expected_version=parse_version(version), actor=g.principal.name, **resolution_settings(app),
        )
    except ReviewError as exc:
        log.info("conflict %s not resolved by %s: %s", conflict_id, g.principal.name, exc.code)
        raise review_api_error(exc) from None
    log.info("conflict %s resolved by %s (%s)", conflict_id, g.principal.name, outcome.choice.value)
    current = get_conflict(receiver_resources(app).db, conflict_id)
    return jsonify({"success": True, "data": {
        "resolution": outcome.as_dict(),
        "conflict": current.as_dict() if current else None,
    }})


def _positive_int(
    raw: str | None, name: str, errors: list[dict[str, str]], *, default: int | None, maximum: int | None = None
) -> int | None:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1 or (maximum is not None and int(raw) > maximum):
        bound = f" up to {maximum}" if maximum else ""
        errors.append({"field": name, "reason": f"must be a whole number from 1{bound}"})
        return default
    return int(raw)
