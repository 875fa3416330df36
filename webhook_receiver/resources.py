"""What a receiver worker holds, made once by the app factory and closed once: `ReceiverResources`.

Two connection pools per worker:
- `db`: every route's transactions, a create's side transactions (ledger, audit, idempotency) and the HubSpot
  request budget's takes (an AUTOCOMMIT view of the same pool): WARP_DB_POOL_SIZE (default 10) connections plus
  as many again in overflow. A create holds two at once (its transaction, and a side transaction or budget take
  beside it), every other route one; so at most WARP_DB_POOL_SIZE creates run at once per worker (`create_slots`;
  more wait for a slot), and creates can never hold every connection while each waits for its second.
- `webhook_db`: the webhook route's own (its sessions carry a statement timeout and skip the pre-ping), so no
  other route can hold the connections HubSpot's 5-second acknowledgements need.

Building them opens nothing: pools connect on first use, and the one HubSpot client (SYNC priority, budget shared
through `db`) is built on first use too. A worker therefore boots while PostgreSQL or HubSpot is away, and
answers 503 where it needs them until they are back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import Flask, current_app

from warp_sync_pipeline.core.customers import CreateSettings, PropertiesGate
from warp_sync_pipeline.core.db import make_engine
from warp_sync_pipeline.core.hubspot import HubSpotClient, HubSpotSettings, Priority, client_from_settings
from warp_sync_pipeline.core.hubspot.versions import api_version_from_settings
from warp_sync_pipeline.core.outbound import PushSettings
from warp_sync_pipeline.core.settings import (
    VARIABLES,
    SettingsError,
    WarpSettings,
    load_settings,
    overlaid_environ,
)
from warp_sync_pipeline.core.web_links import WebLinks, web_links

if TYPE_CHECKING:
    from webhook_receiver.webhooks import WebhookConfig

log = logging.getLogger(__name__)

EXTENSION = "warp_sync"
# The webhook route's inserts must finish well inside HubSpot's 5 s; past this the batch fails and HubSpot retries.
WEBHOOK_STATEMENT_TIMEOUT_MS = 3000
# One connection per thread at most (the route opens one transaction); opened lazily.
WEBHOOK_POOL_SIZE = 5
WEBHOOK_POOL_OVERFLOW = 15
# HubSpot's account details, for links to its records: asked with this deadline, again after this long while unknown.
LINKS_DEADLINE_SECONDS = 3.0
LINKS_RETRY_SECONDS = 600.0


def receiver_settings(app_config: Mapping[str, Any]) -> WarpSettings:
    """The settings of the environment, with each variable the app's config sets laid over it (tests point
    HUBSPOT_BASE_URL at the sandbox, shorten budgets); SettingsError names a bad one."""
    return load_settings(overlaid_environ(app_config, VARIABLES))


@dataclass
class ReceiverResources:
    db: sa.Engine
    webhook_db: sa.Engine
    settings: WarpSettings
    create_settings: CreateSettings
    push_settings: PushSettings
    webhooks: WebhookConfig
    # The first create ensures HubSpot's properties (never the factory: that would be network I/O).
    properties: PropertiesGate = field(default_factory=PropertiesGate)
    create_slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(10))
    _hubspot: HubSpotClient | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _links: WebLinks | None = None
    _links_at: float = 0.0

    @classmethod
    def build(cls, app_config: Mapping[str, Any], settings: WarpSettings, *,
              webhooks: WebhookConfig) -> ReceiverResources:
        url = str(app_config["DATABASE_URL"])
        api_version_from_settings(settings)  # a version the client cannot speak stops the worker from starting
        pool_size = settings.db_pool_size
        return cls(
            db=make_engine(url, pool_size=pool_size, max_overflow=pool_size),
            webhook_db=make_engine(
                url, pool_size=WEBHOOK_POOL_SIZE, max_overflow=WEBHOOK_POOL_OVERFLOW, pool_pre_ping=False,
                connect_args={"options": f"-c statement_timeout={WEBHOOK_STATEMENT_TIMEOUT_MS}"},
            ),
            settings=settings,
            create_settings=CreateSettings.from_settings(settings),
            push_settings=PushSettings.from_settings(settings),
            webhooks=webhooks,
            create_slots=threading.BoundedSemaphore(pool_size),
        )

    @property
    def hubspot_configured(self) -> bool:
        return bool(self.settings.hubspot_access_token)

    def hubspot(self) -> HubSpotClient | None:
        """The worker's HubSpot client, built on first use; None when no HUBSPOT_ACCESS_TOKEN is set.

        Raises SettingsError (naming the variable) when a setting is malformed."""
        if self._hubspot is None and self.hubspot_configured:
            with self._lock:
                if self._hubspot is None:
                    self._hubspot = client_from_settings(HubSpotSettings.from_settings(self.settings), self.db,
                                                         Priority.SYNC)
        return self._hubspot

    def links(self) -> WebLinks:
        """Where the review pages link (core.web_links): built on first use; while HubSpot's account is not known
        (not set, not stored yet, HubSpot not answering) asked again at most every LINKS_RETRY_SECONDS, with a
        short deadline, so a page never waits long on HubSpot."""
        now = time.monotonic()
        if self._links is None or (self._links.hubspot is None and now - self._links_at > LINKS_RETRY_SECONDS):
            try:
                client = self.hubspot()
            except SettingsError:
                client = None
            self._links = web_links(self.settings, self.db,
                                    client.with_deadline(LINKS_DEADLINE_SECONDS) if client else None)
            self._links_at = now
        return self._links

    def close(self) -> None:
        """Close the client and both pools (tests and benchmarks; a server process just exits)."""
        if self._hubspot is not None:
            self._hubspot.close()
            self._hubspot = None
        self.db.dispose()
        self.webhook_db.dispose()


def receiver_resources(app: Flask | None = None) -> ReceiverResources:
    """The app's resources (the current app's by default)."""
    target = app or current_app._get_current_object()  # type: ignore[attr-defined]
    return target.extensions[EXTENSION]
