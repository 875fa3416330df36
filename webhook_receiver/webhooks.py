"""`POST /v1/webhooks/hubspot/company`: HubSpot's signed event batches, verified and stored once.

The route only verifies and stores (core.webhooks); applying events is the processor's job, so the
acknowledgement stays far inside HubSpot's 5-second timeout. Every rejection stores nothing and
answers the JSON error shape: 401 untrusted, 413 too large, 400 unreadable. A trusted batch answers
200 with {"received", "stored", "duplicates", "ignored"}.

Settings (app.config keys of the same name win over the environment, for tests):
HUBSPOT_CLIENT_SECRET, HUBSPOT_CLIENT_SECRET_PREVIOUS, WARP_WEBHOOK_ALLOW_V1, WARP_WEBHOOK_ALLOW_V2,
WARP_PUBLIC_BASE_URL; WEBHOOK_STORE_STRATEGY ("batch", or "per_event" for the benchmark's baseline).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import sqlalchemy as sa
from flask import Blueprint, jsonify, request

from warp_sync_pipeline.core.settings import SettingsError, WarpSettings
from warp_sync_pipeline.core.webhooks.events import (
    BatchRejected,
    StoreCounts,
    parse_batch,
    store_batch,
    store_batch_per_event,
)
from warp_sync_pipeline.core.webhooks.signature import SignatureRejected, SignatureSettings, verify_request
from webhook_receiver.errors import ApiError
from webhook_receiver.resources import receiver_resources

log = logging.getLogger(__name__)

bp = Blueprint("hubspot_webhooks", __name__)

ROUTE = "/v1/webhooks/hubspot/company"
# Characters left as they are when the raw URI must be rebuilt from PATH_INFO (RFC 3986 pchar).
_PATH_SAFE = "/:@!$&'()*+,;=-._~"

StoreFunction = Callable[..., StoreCounts]
STORE_STRATEGIES: dict[str, StoreFunction] = {"batch": store_batch, "per_event": store_batch_per_event}


@dataclass(frozen=True)
class WebhookConfig:
    signature: SignatureSettings
    public_base_url: str | None
    store: StoreFunction

    @classmethod
    def load(cls, app_config: Mapping[str, Any], settings: WarpSettings) -> WebhookConfig:
        strategy = str(app_config.get("WEBHOOK_STORE_STRATEGY", "batch"))
        if strategy not in STORE_STRATEGIES:
            raise SettingsError("WEBHOOK_STORE_STRATEGY", f"expected one of {', '.join(STORE_STRATEGIES)}")
        return cls(
            signature=SignatureSettings.from_settings(settings),
            public_base_url=settings.public_base_url,
            store=STORE_STRATEGIES[strategy],
        )


def raw_request_uri(environ: Mapping[str, Any]) -> str:
    """The request target as it arrived (path and query, escapes untouched).

    gunicorn puts it in RAW_URI, werkzeug and mod_wsgi/uWSGI in REQUEST_URI; without either, rebuild
    it by quoting SCRIPT_NAME + PATH_INFO, with the query only when there is one.
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        if raw.startswith(("http://", "https://")):  # absolute-form request target
            parts = urlsplit(raw)
            raw = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return raw
    # WSGI strings carry the request's bytes as latin-1.
    path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1")
    query = environ.get("QUERY_STRING", "")
    return quote(path, safe=_PATH_SAFE) + (f"?{query}" if query else "")


def public_request_uri(environ: Mapping[str, Any], public_base_url: str | None, scheme: str, host: str) -> str:
    """The URI HubSpot called and signed: the public base (WARP_PUBLIC_BASE_URL, else the scheme and
    host this request arrived with, as a trusted proxy reports them) plus the raw request URI."""
    base = public_base_url or f"{scheme}://{host}"
    return base + raw_request_uri(environ)


@bp.post(ROUTE)
def receive_company_events():  # noqa: ANN201 - Flask response
    resources = receiver_resources()
    config = resources.webhooks
    if not config.signature.configured:
        raise ApiError(503, "WEBHOOKS_NOT_CONFIGURED", "the receiver has no HubSpot client secret configured")
    body = request.get_data(cache=True)  # the raw bytes the signature covers (413 past the limit)
    uri = public_request_uri(request.environ, config.public_base_url, request.scheme, request.host)
    try:
        verify_request(
            config.signature,
            method=request.method,
            uri=uri,
            body=body,
            headers=request.headers,
            now_ms=time.time_ns() // 1_000_000,
        )
    except SignatureRejected as exc:
        log.warning("webhook rejected: %s (%s)", exc.code, exc.message)
        raise ApiError(401, exc.code, exc.message) from None
    try:
        events = parse_batch(body)
    except BatchRejected as exc:
        log.warning("webhook rejected: %s", exc.code)
        raise ApiError(400, exc.code, exc.message) from None
    engine = resources.webhook_db
    try:
        try:
            counts = config.store(engine, events)
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            # The pooled connection had gone away (a database restart); nothing was stored, try once more.
            counts = config.store(engine, events)
    except sa.exc.OperationalError as exc:
        # HubSpot retries any non-2xx, so nothing is lost; say what kind of failure without its text.
        log.error("webhook batch not stored: %s", exc.__class__.__name__)
        raise ApiError(503, "DATABASE_UNAVAILABLE", "the batch could not be stored; retry later") from None
    return jsonify({"success": True, "data": counts.as_dict()}), 200
