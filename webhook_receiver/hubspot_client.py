"""The receiver's one HubSpot client, shared by every route that calls HubSpot while a person waits: the create
(customers.py), conflict resolution (conflicts_api.py, review.py) and the manual push (sync.py).

Built once per app, thread-safe, at SYNC priority (it may use the request budget's reserved share) with the
budget shared through PostgreSQL. Settings: the environment's HUBSPOT_* variables, where app.config keys of the
same name win (tests point them at the sandbox). Each route bounds its own calls with `with_deadline(...)`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app

from warp_sync_pipeline.core.hubspot import HubSpotClient, Priority, client_from_env
from warp_sync_pipeline.core.settings import SettingsError, get_optional, overlaid_environ
from webhook_receiver.errors import ApiError

EXTENSION = "warp_hubspot"
_lock = threading.Lock()


def hubspot_settings(app_config: Mapping[str, Any]) -> dict[str, str]:
    """The environment with app.config's HUBSPOT_* keys laid over it."""
    return overlaid_environ(app_config, [key for key in app_config if key.startswith("HUBSPOT_")])


def hubspot_configured(app: Flask) -> bool:
    return bool(get_optional("HUBSPOT_ACCESS_TOKEN", environ=hubspot_settings(app.config)))


def build_hubspot_client(app: Flask) -> HubSpotClient | None:
    """The app's client, built on first use; None when no HUBSPOT_ACCESS_TOKEN is set.

    Raises SettingsError (naming the variable) when a setting is malformed.
    """
    client = app.extensions.get(EXTENSION)
    if client is not None:
        return client
    with _lock:
        client = app.extensions.get(EXTENSION)
        if client is None:
            source = hubspot_settings(app.config)
            if not get_optional("HUBSPOT_ACCESS_TOKEN", environ=source):
                return None
            client = client_from_env(app.extensions["warp_db"], Priority.SYNC, environ=source)
            app.extensions[EXTENSION] = client
    return client


def hubspot_client(app: Flask | None = None) -> HubSpotClient:
    """The app's client for a route; ApiError 503 HUBSPOT_NOT_CONFIGURED when HubSpot is not configured."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        client = build_hubspot_client(app)
    except SettingsError as exc:
        raise ApiError(503, "HUBSPOT_NOT_CONFIGURED", f"HubSpot is not configured: {exc}.") from None
    if client is None:
        raise ApiError(503, "HUBSPOT_NOT_CONFIGURED", "HubSpot is not configured (HUBSPOT_ACCESS_TOKEN is not set).")
    return client


def close_hubspot_client(app: Flask) -> None:
    """Close the app's client and its budget pool (tests; a server process just exits)."""
    client = app.extensions.pop(EXTENSION, None)
    if client is not None:
        client.close()
