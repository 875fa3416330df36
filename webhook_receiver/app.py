"""The receiver's Flask application factory (served by gunicorn: `webhook_receiver:create_app()`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from warp_sync_pipeline.core.db import DATABASE_URL_HINT
from warp_sync_pipeline.core.settings import load_dotenv, require
from webhook_receiver import conflicts_api, customers, health, metrics, openapi, review, sync, webhooks
from webhook_receiver.errors import register_error_handlers
from webhook_receiver.resources import EXTENSION, ReceiverResources, receiver_settings

log = logging.getLogger(__name__)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """The receiver; `close_app()` releases what it holds (a server process just exits). Reads ./.env first, as
    Dagster's commands and the CLI do."""
    loaded = load_dotenv()
    if loaded:
        log.info("loaded from ./.env: %s", ", ".join(loaded))
    # One read of the settings for the worker: the environment, with any variable test_config sets laid over it.
    settings = receiver_settings(test_config or {})
    app = Flask(__name__)
    app.config.from_mapping(
        # HubSpot sends at most 100 events a request: the default (1 MiB) is generous for that.
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        JSON_SORT_KEYS=False,
        TRUSTED_PROXY_HOPS=settings.trusted_proxy_hops,
        # The bootstrap admin credential (every role); named credentials live in admin_credentials.
        WARP_API_TOKEN=settings.api_token or "",
        # The review pages' session (webhook_receiver/review.py): without a key they answer 503.
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="warp_review_session",
        SESSION_COOKIE_PATH="/review",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
    )
    if test_config:
        app.config.update(test_config)
    if "DATABASE_URL" not in app.config:
        app.config["DATABASE_URL"] = require(settings.database_url, "WARP_DATABASE_URL", DATABASE_URL_HINT)
    # One extension object: two pools, the HubSpot client (built on first use), the routes' settings. No I/O.
    resources = ReceiverResources.build(app.config, settings,
                                        webhooks=webhooks.WebhookConfig.load(app.config, settings))
    app.extensions[EXTENSION] = resources
    if not resources.hubspot_configured:
        log.warning("HUBSPOT_ACCESS_TOKEN is not set: routes that call HubSpot answer 503 until it is")
    if not resources.webhooks.signature.configured:
        log.warning("HUBSPOT_CLIENT_SECRET is not set: %s answers 503 until it is", webhooks.ROUTE)

    hops = int(app.config["TRUSTED_PROXY_HOPS"])
    if hops:
        # Behind a proxy the public scheme and host come from X-Forwarded-*; signatures cover them.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)  # type: ignore[method-assign]

    register_error_handlers(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(customers.bp)
    app.register_blueprint(sync.bp)
    app.register_blueprint(review.bp)
    app.register_blueprint(conflicts_api.bp)
    app.register_blueprint(openapi.bp)
    metrics.install(app)
    logging.getLogger("webhook_receiver").setLevel(logging.INFO)
    return app


def close_app(app: Flask) -> None:
    """Close the app's HubSpot client and both connection pools (tests and benchmarks)."""
    resources = app.extensions.pop(EXTENSION, None)
    if resources is not None:
        resources.close()
