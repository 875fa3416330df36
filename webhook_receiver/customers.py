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
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, current_app, g, jsonify, request
from flask.blueprints import BlueprintSetupState

from warp_sync_pipeline.core.customers import (
    CreateSettings,
    PropertiesGate,
    StoredAnswer,
    claim_idempotency_key,
    create_customer,
    get_customer,
    request_hash,
    update_customer,
    validate_customer,
)
from warp_sync_pipeline.core.db import make_engine
from warp_sync_pipeline.core.fields import load_rules
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.settings import overlaid_environ
from webhook_receiver.auth import require
from webhook_receiver.errors import ApiError
from webhook_receiver.hubspot_client import build_hubspot_client, close_hubspot_client

log = logging.getLogger(__name__)

bp = Blueprint("customers", __name__)

SETTING_KEYS = (
    "HUBSPOT_BASE_URL",
    "HUBSPOT_ACCESS_TOKEN",
    "HUBSPOT_REQUESTS_PER_10S",
    "HUBSPOT_SEARCH_PER_SECOND",
    "HUBSPOT_RESERVED_SHARE",
    "HUBSPOT_BUDGET_MARGIN_MS",
    "HUBSPOT_TIME_BUDGET_SECONDS",
    "HUBSPOT_REQUEST_TIMEOUT_SECONDS",
    "HUBSPOT_MAX_ATTEMPTS",
    "WARP_CREATE_TIME_BUDGET_SECONDS",
    "WARP_CREATE_CLEANUP_SECONDS",
    "WARP_IDEMPOTENCY_RETENTION_HOURS",
    "WARP_IDEMPOTENCY_LOCK_MARGIN_SECONDS",
)


@dataclass
class CustomersConfig:
    settings: CreateSettings
    # A create holds its connection while HubSpot answers, so creates get a pool of their own, and the short
    # side transactions (ledger, audit, idempotency) another: they never wait on connections creates hold.
    engine: sa.Engine
    side_engine: sa.Engine
    hubspot: HubSpotClient | None  # the app's shared client (webhook_receiver.hubspot_client)
    properties: PropertiesGate

    def close(self) -> None:
        self.engine.dispose()
        self.side_engine.dispose()


@bp.record_once
def _configure(state: BlueprintSetupState) -> None:
    app = state.app
    source = overlaid_environ(app.config, SETTING_KEYS)
    engine = make_engine(app.config["DATABASE_URL"], pool_size=10, max_overflow=20)
    side_engine = make_engine(app.config["DATABASE_URL"], pool_size=2, max_overflow=20)
    # Creates are synchronous callers: the shared client may use the budget's reserved share.
    hubspot = build_hubspot_client(app)
    if hubspot is None:
        log.warning("HUBSPOT_ACCESS_TOKEN is not set: POST /v1/customers answers 503 until it is")
    # No network I/O here: a worker must boot while PostgreSQL or HubSpot is away (the properties are ensured
    # through the database-backed budget, so doing it now made a database outage kill the whole server).
    # The first create ensures them before it writes.
    app.extensions["warp_customers"] = CustomersConfig(CreateSettings.from_env(source), engine, side_engine, hubspot,
                                                       PropertiesGate())


def close(app: Flask) -> None:
    """Release the blueprint's HubSpot client and pools (tests; a server process just exits)."""
    config: CustomersConfig | None = app.extensions.pop("warp_customers", None)
    if config is not None:
        config.close()
    close_hubspot_client(app)


def _config() -> CustomersConfig:
    return current_app.extensions["warp_customers"]


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
    config = _config()
    body = _json_body()
    with config.engine.connect() as conn:
        rules = load_rules(conn)
    values = validate_customer(body, rules, for_update=False)
    if config.hubspot is None:
        raise ApiError(503, "HUBSPOT_NOT_CONFIGURED", "HubSpot is not configured; customers cannot be created.")
    claim = None
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        settings = config.settings
        claimed = claim_idempotency_key(
            config.side_engine, g.principal.name, key.strip(), request_hash(body),
            lock_for=settings.idempotency_lock, retention=settings.idempotency_retention,
        )
        if isinstance(claimed, StoredAnswer):
            response = jsonify({"success": True, "data": claimed.body})
            response.status_code = claimed.status
            response.headers["Idempotent-Replayed"] = "true"
            return response
        claim = claimed
    created = create_customer(
        config.engine, config.hubspot, values, actor=g.principal.name, settings=config.settings,
        side_engine=config.side_engine, idempotency=claim, properties_gate=config.properties, rules=rules,
    )
    return jsonify({"success": True, "data": created.body()}), 201


@bp.patch("/v1/customers/<customer_id>")
@require("customers:update")
def update(customer_id: str):  # noqa: ANN201 - Flask response
    body = _json_body()
    try:
        updated = update_customer(_config().engine, customer_id, body, actor=g.principal.name)
    except sa.exc.IntegrityError as exc:
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None) or "a constraint"
        raise ApiError(400, "VALIDATION_ERROR", f"The database refused the change ({constraint}).") from None
    return jsonify({"success": True, "data": updated.body()}), 200


@bp.get("/v1/customers/<customer_id>")
@require("customers:read")
def read(customer_id: str):  # noqa: ANN201 - Flask response
    data = get_customer(_config().engine, customer_id)
    return jsonify({"success": True, "data": data}), 200
