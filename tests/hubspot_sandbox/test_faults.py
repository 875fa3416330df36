"""Fault switches (outage, latency, timeouts, lost answers) and request counters."""

from __future__ import annotations

import time

import httpx
import pytest

from hubspot_sandbox.control import SandboxControlError
from tests.hubspot_sandbox.conftest import COMPANIES, create_company
from tests.plugins.sandbox import SandboxHandle


def test_outage_for_n_calls(sandbox: SandboxHandle, api: httpx.Client) -> None:
    sandbox.control.set_faults(outage={"calls": 2})
    responses = [api.get(COMPANIES) for _ in range(3)]
    assert [r.status_code for r in responses] == [503, 503, 200]
    body = responses[0].json()
    assert body["status"] == "error" and body["category"] == "SERVICE_UNAVAILABLE"
    assert responses[0].headers["X-HubSpot-Correlation-Id"] == body["correlationId"]


def test_outage_for_n_seconds(sandbox: SandboxHandle, api: httpx.Client) -> None:
    sandbox.control.set_faults(outage={"seconds": 0.3})
    assert api.get(COMPANIES).status_code == 503
    assert api.get(COMPANIES).status_code == 503
    time.sleep(0.35)
    assert api.get(COMPANIES).status_code == 200


def test_outage_of_one_endpoint(sandbox: SandboxHandle, api: httpx.Client) -> None:
    sandbox.control.set_faults(outage={"seconds": 30, "endpoint": "POST /crm/v3/objects/companies/search"})
    assert api.post(f"{COMPANIES}/search", json={}).status_code == 503
    assert api.get(COMPANIES).status_code == 200


def test_added_latency(sandbox: SandboxHandle, api: httpx.Client) -> None:
    sandbox.control.set_faults(latency_ms=150)
    started = time.monotonic()
    api.get(COMPANIES)
    assert time.monotonic() - started >= 0.15


def test_timeout_holds_the_call_past_the_clients_timeout(sandbox: SandboxHandle, api: httpx.Client) -> None:
    sandbox.control.set_faults(timeout={"calls": 1, "hold_seconds": 20})
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        api.get(COMPANIES, timeout=0.3)
    assert time.monotonic() - started < 5
    assert api.get(COMPANIES).status_code == 200  # the fault was used up


def test_timeout_answers_504_to_a_patient_client(sandbox: SandboxHandle, api: httpx.Client) -> None:
    sandbox.control.set_faults(timeout={"calls": 1, "hold_seconds": 0.2})
    response = api.get(COMPANIES)
    assert response.status_code == 504 and response.json()["category"] == "GATEWAY_TIMEOUT"


def test_after_success_drop_loses_the_answer_but_keeps_the_company(sandbox: SandboxHandle,
                                                                   warp_api: httpx.Client) -> None:
    sandbox.control.set_faults(after_success={"calls": 1, "mode": "drop"})
    with pytest.raises(httpx.RemoteProtocolError):
        warp_api.post(COMPANIES, json={"properties": {"name": "Acme", "warp_ban": "ZT-000000001"}})
    [company] = sandbox.control.all_companies()
    assert company["properties"]["warp_ban"] == "ZT-000000001"
    # The caller's read-back by idProperty finds it.
    found = warp_api.get(f"{COMPANIES}/ZT-000000001?idProperty=warp_ban")
    assert found.status_code == 200 and found.json()["id"] == company["id"]


def test_after_success_timeout_mode(sandbox: SandboxHandle, api: httpx.Client) -> None:
    sandbox.control.set_faults(after_success={"calls": 1, "mode": "timeout", "hold_seconds": 20})
    with pytest.raises(httpx.ReadTimeout):
        api.post(COMPANIES, json={"properties": {"name": "Acme"}}, timeout=0.3)
    assert [c["properties"]["name"] for c in sandbox.control.all_companies()] == ["Acme"]
    sandbox.control.clear_faults()  # lets the held request go


def test_after_success_skips_failed_writes_and_reads(sandbox: SandboxHandle, warp_api: httpx.Client) -> None:
    sandbox.control.set_faults(after_success={"calls": 1, "mode": "drop"})
    assert warp_api.get(COMPANIES).status_code == 200
    assert warp_api.post(COMPANIES, json={"properties": {"warp_status": "NOPE"}}).status_code == 400
    with pytest.raises(httpx.RemoteProtocolError):
        warp_api.post(COMPANIES, json={"properties": {"name": "x"}})
    create_company(warp_api, name="y")


def test_faults_can_be_read_and_cleared(sandbox: SandboxHandle, api: httpx.Client) -> None:
    described = sandbox.control.set_faults(outage={"calls": 5}, latency_ms=10)
    assert described["outage"]["calls"] == 5 and described["latency_ms"] == 10
    sandbox.control.clear_faults()
    assert sandbox.control.faults()["outage"] is None
    assert api.get(COMPANIES).status_code == 200


@pytest.mark.parametrize("faults", [
    {"earthquake": {"calls": 1}},
    {"outage": {}},
    {"outage": {"calls": -1}},
    {"after_success": {"calls": 1, "mode": "explode"}},
    {"validation": {"calls": 1}},
    {"latency_ms": "slow"},
])
def test_bad_fault_specs_are_refused(sandbox: SandboxHandle, faults: dict) -> None:
    with pytest.raises(SandboxControlError) as raised:
        sandbox.control.set_faults(**faults)
    assert raised.value.status == 400


def test_bad_settings_are_refused(sandbox: SandboxHandle) -> None:
    for settings in ({"rate_limit_per_10s": 0}, {"webhook_target_url": "ftp://x"}, {"colour": "blue"},
                     {"webhook_max_in_flight": 100}, {"rate_limit_window_seconds": 0}):
        with pytest.raises(SandboxControlError):
            sandbox.control.configure(**settings)
    assert "access_token" not in sandbox.control.config()


def test_counters_by_endpoint_and_reset(sandbox: SandboxHandle, api: httpx.Client) -> None:
    company = create_company(api, name="Acme")
    api.patch(f"{COMPANIES}/{company['id']}", json={"properties": {"city": "Oslo"}})
    api.post(f"{COMPANIES}/batch/update", json={"inputs": [{"id": company["id"], "properties": {"city": "Bergen"}}]})
    api.post(f"{COMPANIES}/batch/update", json={"inputs": []})
    api.get("/crm/v3/properties/companies/name")
    sandbox.control.all_companies()  # switches are not counted
    assert sandbox.control.counters() == {"total": 5, "by_endpoint": {
        "GET /crm/v3/properties/companies/{propertyName}": 1,
        "PATCH /crm/v3/objects/companies/{companyId}": 1,
        "POST /crm/v3/objects/companies": 1,
        "POST /crm/v3/objects/companies/batch/update": 2,
    }, "by_version": {"v3": 5}}
    sandbox.control.reset_counters()
    assert sandbox.control.counters() == {"total": 0, "by_endpoint": {}, "by_version": {}}


def test_seed_rejects_unknown_properties(sandbox: SandboxHandle) -> None:
    with pytest.raises(SandboxControlError) as raised:
        sandbox.control.seed([{"colour": "red"}])
    assert raised.value.status == 400
