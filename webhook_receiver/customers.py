"""`/v1/customers`: create (synchronous, all or nothing), update (queued) and read; admin-only.

POST   /v1/customers        201 {"success": true, "data": {"customer": {...}, "hubspot_sync": {...}}}; a rolled-back
                            create answers 422 (HubSpot rejected values) or 502 (HubSpot unreachable, timed out,
                            5xx, 429s) with code HUBSPOT_SYNC_FAILED and failed_fields in WARP's names.
                            An Idempotency-Key header makes a retry return the first successful answer.
PATCH  /v1/customers/{id}   200 with "hubspot_sync": {"queued": true, "fields": [...]}; never calls HubSpot.
GET    /v1/customers/{id}   the customer and its outbound sync state.

The routes are thin: core.customers does the work. Settings (app.config keys of the same name win over the
environment, for tests): HUBSPOT_* (the client), WARP_CREATE_TIME_BUDGET_SECONDS, WARP_CREATE_CLEANUP_SECONDS,
WARP_IDEMPOTENCY_RETENTION_HOURS. Creating the app does no network I/O: the first create ensures the HubSpot
properties (ensure_properties()) before it writes.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, g, jsonify, request

from warp_sync_pipeline.core.customers import (
    StoredAnswer,
    claim_idempotency_key,
    create_customer,
    get_customer,
    request_hash,
    update_customer,
    validate_customer,
)
from warp_sync_pipeline.core.fields import load_rules
from webhook_receiver.auth import require
from webhook_receiver.errors import ApiError
from webhook_receiver.hubspot_client import hubspot_client
from webhook_receiver.resources import receiver_resources

log = logging.getLogger(__name__)

bp = Blueprint("customers", __name__)

def _json_body() -> Any:
    raw = request.get_data(cache=True)
    try:
        # Amounts as Decimal: a float would round 0.1 + 0.2 style values.
        return json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "INVALID_JSON", "The request body must be a JSON object.") from None


@bp.post("/v1/customers")
@require("customers:create")
def create():  # noqa: ANN201 - Flask response
    resources = receiver_resources()
    settings = resources.create_settings
    body = _json_body()
    with resources.db.connect() as conn:
        rules = load_rules(conn)
    values = validate_customer(body, rules, for_update=False)
    hubspot = hubspot_client()
    # A create holds two connections at once (webhook_receiver.resources); the key is claimed once a slot is
    # free, so waiting for one never eats into the key's lock.
    with resources.create_slots:
        claim = None
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            claimed = claim_idempotency_key(
                resources.db, g.principal.name, key.strip(), request_hash(body),
                lock_for=settings.idempotency_lock, retention=settings.idempotency_retention,
            )
            if isinstance(claimed, StoredAnswer):
                response = jsonify({"success": True, "data": claimed.body})
                response.status_code = claimed.status
                response.headers["Idempotent-Replayed"] = "true"
                return response
            claim = claimed
        created = create_customer(
            resources.db, hubspot, values, actor=g.principal.name, settings=settings,
            idempotency=claim, properties_gate=resources.properties, rules=rules,
        )
    return jsonify({"success": True, "data": created.body()}), 201


@bp.patch("/v1/customers/<customer_id>")
@require("customers:update")
def update(customer_id: str):  # noqa: ANN201 - Flask response
    body = _json_body()
    try:
        updated = update_customer(receiver_resources().db, customer_id, body, actor=g.principal.name)
    except sa.exc.IntegrityError as exc:
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None) or "a constraint"
        raise ApiError(400, "VALIDATION_ERROR", f"The database refused the change ({constraint}).") from None
    return jsonify({"success": True, "data": updated.body()}), 200


@bp.get("/v1/customers/<customer_id>")
@require("customers:read")
def read(customer_id: str):  # noqa: ANN201 - Flask response
    data = get_customer(receiver_resources().db, customer_id)
    return jsonify({"success": True, "data": data}), 200
