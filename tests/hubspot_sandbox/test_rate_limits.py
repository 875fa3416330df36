"""The per-token rolling 10-second budget, its headers and 429 body; search's own per-second limit."""

from __future__ import annotations

import time

import httpx

from hubspot_sandbox.limits import RollingWindow
from tests.hubspot_sandbox.conftest import COMPANIES
from tests.plugins.sandbox import SandboxHandle

RATE_HEADERS = ("X-HubSpot-RateLimit-Daily", "X-HubSpot-RateLimit-Daily-Remaining",
                "X-HubSpot-RateLimit-Interval-Milliseconds", "X-HubSpot-RateLimit-Max",
                "X-HubSpot-RateLimit-Remaining", "X-HubSpot-RateLimit-Secondly",
                "X-HubSpot-RateLimit-Secondly-Remaining")


def test_budget_headers_count_down_then_429_in_hubspots_shape(sandbox: SandboxHandle, api: httpx.Client) -> None:
    sandbox.control.configure(rate_limit_per_10s=5)
    remaining = []
    for _ in range(5):
        response = api.get(COMPANIES)
        assert response.status_code == 200
        assert all(name in response.headers for name in RATE_HEADERS)
        assert response.headers["X-HubSpot-RateLimit-Max"] == "5"
        assert response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        remaining.append(int(response.headers["X-HubSpot-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    refused = api.get(COMPANIES)
    assert refused.status_code == 429
    assert refused.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    body = refused.json()
    assert body["status"] == "error" and body["category"] == "RATE_LIMITS"
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert refused.headers["X-HubSpot-Correlation-Id"] == body["correlationId"]


def test_refused_requests_do_not_use_budget_and_counters_see_them(sandbox: SandboxHandle, api: httpx.Client) -> None:
    sandbox.control.configure(rate_limit_per_10s=2)
    statuses = [api.get(COMPANIES).status_code for _ in range(6)]
    assert statuses == [200, 200, 429, 429, 429, 429]
    assert sandbox.control.counters()["by_endpoint"] == {"GET /crm/v3/objects/companies": 6}


def test_search_has_its_own_limit_without_burst_headers(sandbox: SandboxHandle, api: httpx.Client) -> None:
    sandbox.control.configure(rate_limit_per_10s=1, search_per_second=2)
    statuses = []
    for _ in range(3):
        response = api.post(f"{COMPANIES}/search", json={})
        statuses.append(response.status_code)
        assert "X-HubSpot-RateLimit-Max" not in response.headers
        assert "X-HubSpot-RateLimit-Remaining" not in response.headers
    assert statuses == [200, 200, 429]
    assert response.json()["message"] == "You have reached your secondly limit."
    assert response.json()["category"] == "RATE_LIMITS"
    # Searching spent none of the 10-second budget.
    assert api.get(COMPANIES).status_code == 200


def test_the_limit_can_be_turned_off(sandbox: SandboxHandle, api: httpx.Client) -> None:
    sandbox.control.configure(rate_limit_per_10s=None)
    responses = [api.get(COMPANIES) for _ in range(120)]
    assert {r.status_code for r in responses} == {200}
    assert "X-HubSpot-RateLimit-Max" not in responses[0].headers


def test_budget_is_per_token(sandbox: SandboxHandle, api: httpx.Client) -> None:
    sandbox.control.configure(rate_limit_per_10s=1)
    assert api.get(COMPANIES).status_code == 200
    assert api.get(COMPANIES).status_code == 429
    sandbox.control.configure(access_token="pat-other-token")
    other = httpx.get(sandbox.base_url + COMPANIES, headers={"Authorization": "Bearer pat-other-token"},
                      trust_env=False)
    assert other.status_code == 200


def test_forced_429_fault(sandbox: SandboxHandle, api: httpx.Client) -> None:
    sandbox.control.set_faults(rate_limit={"calls": 2, "endpoint": "POST /crm/v3/objects/companies/batch/read"})
    assert api.get(COMPANIES).status_code == 200  # other endpoints unaffected
    statuses = [api.post(f"{COMPANIES}/batch/read", json={"inputs": []}).status_code for _ in range(3)]
    assert statuses == [429, 429, 200]


def test_a_shortened_window_is_reported_and_frees_the_budget_when_it_passes(
    sandbox: SandboxHandle, api: httpx.Client
) -> None:
    sandbox.control.configure(rate_limit_per_10s=2, rate_limit_window_seconds=0.5)
    first = api.get(COMPANIES)
    assert first.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "500"
    assert [first.status_code, api.get(COMPANIES).status_code, api.get(COMPANIES).status_code] == [200, 200, 429]
    time.sleep(0.55)
    assert api.get(COMPANIES).status_code == 200


def test_rolling_window_frees_budget_as_requests_age() -> None:
    window = RollingWindow(0.3)
    assert [window.admit("token", 2).allowed for _ in range(3)] == [True, True, False]
    time.sleep(0.35)
    assert window.admit("token", 2).allowed and window.admit("token", 2).remaining == 0
    assert window.admit("another", 2).allowed
