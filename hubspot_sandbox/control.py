"""`SandboxControl`: a small httpx client for the sandbox's /_sandbox switches.

Used by tests, the demo and the benchmarks. None of these calls spends HubSpot request budget.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx


class SandboxControlError(RuntimeError):
    """A switch refused the call; `body` is the sandbox's JSON error."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"sandbox control call failed ({status}): {message}")
        self.status = status
        self.body = body


class SandboxControl:
    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        # trust_env=False: a proxy from the environment must never sit between us and loopback.
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SandboxControl:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
              timeout: float | None = None) -> Any:
        extra = {"timeout": timeout} if timeout is not None else {}
        response = self._http.request(method, f"/_sandbox{path}", json=json, params=params, **extra)
        body = response.json() if response.content else None
        if response.status_code >= 400:
            raise SandboxControlError(response.status_code, body)
        return body

    # --- state --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Companies, properties (back to standard), faults, counters, settings (back to the start)."""
        self._call("POST", "/reset")

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """E.g. set_faults(outage={"calls": 3}, latency_ms=200); see hubspot_sandbox.faults."""
        return self._call("POST", "/faults", json=faults)

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/faults")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """E.g. configure(rate_limit_per_10s=None, webhook_target_url="http://127.0.0.1:9/hook")."""
        return self._call("POST", "/config", json=settings)

    def config(self) -> dict[str, Any]:
        return self._call("GET", "/config")

    # --- data ---------------------------------------------------------------------------------
    def seed(self, companies: list[dict[str, Any]]) -> list[str]:
        """Store companies directly (no validation, uniqueness or webhooks); returns their ids.

        Each item is either a properties dict or {"properties": {...}, "createdAt"?, "updatedAt"?,
        "archived"?}, times as ISO-8601 or epoch milliseconds.
        """
        entries = [c if "properties" in c else {"properties": c} for c in companies]
        return self._call("POST", "/companies/seed", json={"companies": entries})["ids"]

    def all_companies(self, *, include_history: bool = False) -> list[dict[str, Any]]:
        """Every company, archived and merged ones too (with `mergedInto`)."""
        params = {"history": "true"} if include_history else None
        return self._call("GET", "/companies", params=params)["results"]

    # --- a sales rep in HubSpot (fires webhooks with changeSource CRM_UI) ------------------------
    def rep_edit(self, company_id: str | int, properties: dict[str, Any], *, user_id: int | None = None,
                 timestamp: str | int | None = None) -> dict[str, Any]:
        return self._call("POST", "/rep/edit", json=_drop_none({
            "companyId": str(company_id), "properties": properties, "userId": user_id, "timestamp": timestamp}))

    # --- other writers of the portal ---------------------------------------------------------------------
    def integration_edit(self, company_id: str | int, properties: dict[str, Any], *, app_id: str,
                         timestamp: str | int | None = None) -> dict[str, Any]:
        """Another app of the portal updates a company (its history shows that app's sourceId)."""
        return self._call("POST", "/integration/edit", json=_drop_none({
            "companyId": str(company_id), "properties": properties, "appId": app_id, "timestamp": timestamp}))

    def contact_company(self, email: str, *, name: str | None = None) -> dict[str, Any]:
        """A contact added with that email: HubSpot makes a company for its domain (record source CRM_SETTING)
        unless the domain is free mail or a company has it already."""
        return self._call("POST", "/contacts/company", json=_drop_none({"email": email, "name": name}))

    def rep_create(self, properties: dict[str, Any], *, user_id: int | None = None) -> dict[str, Any]:
        return self._call("POST", "/rep/create", json=_drop_none({"properties": properties, "userId": user_id}))

    def rep_merge(self, primary_id: str | int, merged_id: str | int, *,
                  user_id: int | None = None) -> dict[str, Any]:
        return self._call("POST", "/rep/merge", json=_drop_none({
            "primaryObjectId": str(primary_id), "objectIdToMerge": str(merged_id), "userId": user_id}))

    def rep_delete(self, company_id: str | int, *, user_id: int | None = None) -> None:
        self._call("POST", "/rep/delete", json=_drop_none({"companyId": str(company_id), "userId": user_id}))

    # --- measurement --------------------------------------------------------------------------
    def counters(self) -> dict[str, Any]:
        """{"total": n, "by_endpoint": {"POST /crm/v3/objects/companies/batch/update": n, ...}}"""
        return self._call("GET", "/counters")

    def reset_counters(self) -> None:
        self._call("POST", "/counters/reset")

    def spend_daily_quota(self, calls: int = 0, *, new_day: bool = False) -> dict[str, Any]:
        """Other apps of the account spend `calls` of its daily quota; `new_day` resets it first."""
        return self._call("POST", "/daily-usage", json={"spend": calls, "reset": new_day})

    def deliveries(self) -> list[dict[str, Any]]:
        """The webhook attempt log, oldest first (batch_id, attempt_number, event_ids, status, error...)."""
        return self._call("GET", "/webhooks/deliveries")["results"]

    def delivery_stats(self) -> dict[str, Any]:
        """The attempt log plus `pending` and `max_in_flight` (most requests seen in flight at once)."""
        return self._call("GET", "/webhooks/deliveries")

    def flush_webhooks(self, timeout: float = 10.0) -> int:
        """Wait until no webhook delivery is pending (or `timeout` passes); returns how many still are."""
        return self._call("POST", "/webhooks/flush", params={"timeout": timeout}, timeout=timeout + 10)["pending"]


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
