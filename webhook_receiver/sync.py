"""Operator routes: ask for a reconciliation and follow it (`/v1/sync/...`)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from warp_sync_pipeline.core.reconcile_requests import record_request, request_status
from webhook_receiver.auth import require
from webhook_receiver.errors import ApiError

bp = Blueprint("sync", __name__, url_prefix="/v1/sync")

RECONCILE_OPTIONS = {"dry_run", "allow_mass_write"}


def _json_object_or_empty() -> dict[str, Any]:
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "VALIDATION_ERROR", "The body must be a JSON object.")
    return body


@bp.post("/reconcile")
@require("sync:reconcile")
def request_reconciliation():  # noqa: ANN201
    body = _json_object_or_empty()
    errors = [{"field": key, "reason": "unknown field"} for key in sorted(set(body) - RECONCILE_OPTIONS)]
    errors += [{"field": key, "reason": "must be true or false"}
               for key in sorted(RECONCILE_OPTIONS & set(body)) if not isinstance(body[key], bool)]
    if errors:
        raise ApiError(400, "VALIDATION_ERROR", "The request has invalid fields.", fields=errors)
    created = record_request(
        current_app.extensions["warp_db"],
        requested_by=g.principal.name,
        dry_run=body.get("dry_run", False),
        allow_mass_write=body.get("allow_mass_write", False),
    )
    response = jsonify({"success": True, "data": {"request_id": created.id, "status": "pending",
                                                  "dry_run": created.dry_run}})
    response.status_code = 202
    response.headers["Location"] = f"/v1/sync/reconcile/{created.id}"
    return response


@bp.get("/reconcile/<int:request_id>")
@require("sync:reconcile")
def reconciliation_status(request_id: int):  # noqa: ANN201
    state = request_status(current_app.extensions["warp_db"], request_id)
    if state is None:
        raise ApiError(404, "NOT_FOUND", f"No reconciliation request {request_id}.")
    return jsonify({"success": True, "data": state})
