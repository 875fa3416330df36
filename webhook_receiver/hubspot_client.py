"""The receiver's one HubSpot client (webhook_receiver.resources), as the routes that call HubSpot while a person
waits get it: the create (customers.py), conflict resolution (conflicts_api.py, review.py) and the manual push
(sync.py). Thread-safe, at SYNC priority (it may use the request budget's reserved share), with the budget shared
through PostgreSQL. Each route bounds its own calls with `with_deadline(...)`.
"""

from __future__ import annotations

from flask import Flask

from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.settings import SettingsError
from webhook_receiver.errors import ApiError
from webhook_receiver.resources import receiver_resources


def hubspot_client(app: Flask | None = None) -> HubSpotClient:
    """The app's client for a route; ApiError 503 HUBSPOT_NOT_CONFIGURED when HubSpot is not configured."""
    try:
        client = receiver_resources(app).hubspot()
    except SettingsError as exc:
        raise ApiError(503, "HUBSPOT_NOT_CONFIGURED", f"HubSpot is not configured: {exc}.") from None
    if client is None:
        raise ApiError(503, "HUBSPOT_NOT_CONFIGURED", "HubSpot is not configured (HUBSPOT_ACCESS_TOKEN is not set).")
    return client
