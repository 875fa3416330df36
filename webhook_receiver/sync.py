"""Operator routes (`/v1/sync/...`): push one customer to HubSpot now; ask for a reconciliation and follow it.

POST /v1/sync/customers/{id}  the queue drain's work for one customer, now (core.outbound.push_customer): 200 with
                              each field's outcome; 404 NOT_FOUND; 409 CUSTOMER_BUSY, CUSTOMER_NOT_LINKED,
                              COMPANY_NOT_FOUND; 502 (422 for values HubSpot rejected) HUBSPOT_SYNC_FAILED with
                              "queued": true, the fields left queued for the drain.
Settings (app.config keys of the same name win over the environment, for tests): WARP_PUSH_TIME_BUDGET_SECONDS,
WARP_PUSH_LEASE_WAIT_SECONDS, WARP_PUSH_RETRY_DELAY_SECONDS, WARP_PAUSE_PROBE_*.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from warp_sync_pipeline.core.fields import FieldRuleError
from warp_sync_pipeline.core.outbound import PushFailed, push_customer
from warp_sync_pipeline.core.reconcile_requests import record_request, request_status
from webhook_receiver.auth import require
from webhook_receiver.errors import ApiError
from webhook_receiver.hubspot_client import hubspot_client
from webhook_receiver.resources import receiver_resources

log = logging.getLogger(__name__)

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
        receiver_resources().db,
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
    state = request_status(receiver_resources().db, request_id)
    if state is None:
        raise ApiError(404, "NOT_FOUND", f"No reconciliation request {request_id}.")
    return jsonify({"success": True, "data": state})


@bp.post("/customers/<customer_id>")
@require("sync:push")
def push(customer_id: str):  # noqa: ANN201
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        result = push_customer(receiver_resources(app).db, hubspot_client(app), customer_id,
                               actor=g.principal.name, settings=receiver_resources().push_settings)
    except PushFailed:
        log.warning("push of customer %s by %s failed; its fields stay queued", customer_id, g.principal.name)
        raise
    except FieldRuleError as exc:
        raise ApiError(503, exc.code, f"The field rules cannot be followed: {exc}") from None
    log.info("customer %s pushed by %s", result.customer_id, g.principal.name)
    return jsonify({"success": True, "data": result.body()})
