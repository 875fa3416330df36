"""Everything one sandbox holds: settings, the portal, budgets, counters, faults and webhook delivery."""

from __future__ import annotations

import threading
from typing import Any

from hubspot_sandbox.config import SandboxConfig
from hubspot_sandbox.exports import ExportTasks
from hubspot_sandbox.faults import Faults
from hubspot_sandbox.limits import DailyCounter, RequestCounters, RollingWindow
from hubspot_sandbox.portal import Portal, WriteSource
from hubspot_sandbox.webhooks import WebhookDispatcher

# Seeded values did not come through the API; their history says so.
SEED_SOURCE = WriteSource("IMPORT", "sandbox-seed")


class SandboxState:
    def __init__(self, config: SandboxConfig) -> None:
        self.initial_config = config
        self._config = config
        self._config_lock = threading.Lock()
        self.portal = Portal(config.portal_id)
        self.portal.unique_conflict_form = config.unique_conflict_form
        self.faults = Faults()
        self.counters = RequestCounters()
        self.burst_window = RollingWindow(10.0)
        self.search_window = RollingWindow(1.0)
        self.daily = DailyCounter()
        self.webhooks = WebhookDispatcher(lambda: self._config)
        self.exports = ExportTasks()
        self.portal.on_events = self.webhooks.enqueue

    @property
    def config(self) -> SandboxConfig:
        return self._config

    def configure(self, changes: dict[str, Any]) -> SandboxConfig:
        with self._config_lock:
            self._config = self._config.updated(changes)
            self.portal.portal_id = self._config.portal_id
            self.portal.unique_conflict_form = self._config.unique_conflict_form
            return self._config

    def reset(self) -> None:
        """Back to the state the server started in: settings, portal, faults, budgets, counters, webhooks."""
        with self._config_lock:
            self._config = self.initial_config
            self.portal.portal_id = self._config.portal_id
            self.portal.unique_conflict_form = self._config.unique_conflict_form
        self.faults.clear()
        self.webhooks.reset()
        self.portal.reset()
        self.exports.reset()
        self.counters.reset()
        self.burst_window.reset()
        self.search_window.reset()
        self.daily.reset()

    def api_source(self) -> WriteSource:
        """API writes through the private app's token: HubSpot records them as the integration's."""
        return WriteSource("INTEGRATION", str(self._config.app_id))

    def integration_source(self, app_id: str) -> WriteSource:
        """Another app of the portal writing through its own token (an older sync, a marketing tool)."""
        return WriteSource("INTEGRATION", str(app_id))

    def rep_source(self, user_id: int | None) -> WriteSource:
        user = user_id if user_id is not None else self._config.default_rep_user_id
        return WriteSource("CRM_UI", f"userId:{user}", user)

    def start(self) -> None:
        self.webhooks.start()

    def stop(self) -> None:
        self.faults.clear()
        self.webhooks.stop()
