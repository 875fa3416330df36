"""Error bodies in HubSpot's shape, and Bearer-token auth."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.hubspot_sandbox.conftest import COMPANIES
from tests.plugins.sandbox import SandboxHandle


def assert_hubspot_error(response: httpx.Response, status: int, category: str) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json;charset=utf-8"
    body = response.json()
    assert body["status"] == "error"
    assert body["category"] == category
    assert isinstance(body["message"], str) and body["message"]
    uuid.UUID(body["correlationId"])
    assert response.headers["X-HubSpot-Correlation-Id"] == body["correlationId"]
    return body


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic cGF0LXRlc3QtdG9rZW4=", "Bearer"])
def test_missing_or_wrong_token_is_401_invalid_authentication(sandbox: SandboxHandle,
                                                             authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.get(sandbox.base_url + COMPANIES, headers=headers, trust_env=False)
    body = assert_hubspot_error(response, 401, "INVALID_AUTHENTICATION")
    assert body["message"].startswith("Authentication credentials not found.")
    assert response.headers["X-HubSpot-Auth-Failure"] == "401 Unauthorized"
    assert "X-HubSpot-RateLimit-Remaining" not in response.headers


def test_token_never_appears_in_an_error(sandbox: SandboxHandle) -> None:
    response = httpx.get(sandbox.base_url + COMPANIES, headers={"Authorization": "Bearer pat-secret-guess"},
                         trust_env=False)
    assert "pat-secret-guess" not in response.text and sandbox.access_token not in response.text


def test_every_api_answer_carries_a_correlation_id(api: httpx.Client) -> None:
    response = api.get(COMPANIES)
    uuid.UUID(response.headers["X-HubSpot-Correlation-Id"])


def test_unknown_company_is_404_object_not_found(api: httpx.Client) -> None:
    body = assert_hubspot_error(api.get(f"{COMPANIES}/999"), 404, "OBJECT_NOT_FOUND")
    assert body["context"] == {"id": ["999"]}


def test_unknown_endpoint_and_wrong_method(api: httpx.Client) -> None:
    assert_hubspot_error(api.get("/crm/v3/nothing-here"), 404, "OBJECT_NOT_FOUND")
    assert_hubspot_error(api.put(f"{COMPANIES}/1", json={}), 405, "METHOD_NOT_ALLOWED")


def test_body_that_is_not_an_object_is_a_validation_error(api: httpx.Client) -> None:
    assert_hubspot_error(api.post(COMPANIES, json=[1, 2]), 400, "VALIDATION_ERROR")
    assert_hubspot_error(api.post(COMPANIES, json={"properties": ["name"]}), 400, "VALIDATION_ERROR")
    assert_hubspot_error(api.post(COMPANIES, content=b""), 400, "VALIDATION_ERROR")


def test_switches_need_no_token(sandbox: SandboxHandle) -> None:
    response = httpx.get(sandbox.base_url + "/_sandbox/counters", trust_env=False)
    assert response.status_code == 200
