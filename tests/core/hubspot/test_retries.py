"""5xx, timeouts, lost answers and 429s: retried within the time budget, then surfaced typed."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from tests.core.hubspot.conftest import FAST_RETRY, company_values
from warp_sync_pipeline.core.hubspot import (
    AuthFailed,
    CompanyUpdate,
    HubSpotClient,
    OutcomeUnknown,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    ValidationFailed,
)

COMPANIES = "POST /crm/v3/objects/companies"
LIST = "GET /crm/v3/objects/companies"
SLACK_S = 0.35


def _count(sandbox, endpoint: str) -> int:  # noqa: ANN001
    return sandbox.control.counters()["by_endpoint"].get(endpoint, 0)


def test_a_short_outage_is_retried_and_the_call_succeeds(warp_hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    sandbox.control.set_faults(outage={"calls": 2})
    sandbox.control.reset_counters()
    company = warp_hubspot.create_company(company_values(1))  # a 503 says nothing was written
    assert company.id
    assert _count(sandbox, COMPANIES) == 3
    assert len(sandbox.control.all_companies()) == 1


def test_a_long_outage_surfaces_within_the_time_budget(sandbox) -> None:  # noqa: ANN001
    patient = RetryPolicy(max_attempts=100, backoff_initial_s=0.05, backoff_max_s=0.3, jitter_s=0.05)
    client = HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=1.5, retry=patient)
    sandbox.control.set_faults(outage={"seconds": 30})
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as caught:
        client.list_companies(limit=1)
    elapsed = time.monotonic() - started
    client.close()
    assert elapsed <= 1.5 + SLACK_S
    assert caught.value.status == 503 and caught.value.attempts > 2


def test_attempts_are_bounded(warp_hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    sandbox.control.set_faults(outage={"calls": 50})
    sandbox.control.reset_counters()
    with pytest.raises(ServiceUnavailable) as caught:
        warp_hubspot.list_companies(limit=1)
    assert caught.value.attempts == FAST_RETRY.max_attempts
    assert _count(sandbox, LIST) == FAST_RETRY.max_attempts


def test_a_read_timeout_is_retried(warp_hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    sandbox.control.set_faults(timeout={"calls": 1, "hold_seconds": 5})
    client = HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=5, request_timeout_s=0.3,
                           retry=FAST_RETRY)
    started = time.monotonic()
    page = client.list_companies(limit=1)
    client.close()
    assert page.results == []
    assert time.monotonic() - started < 2


def test_timeouts_until_the_deadline_surface_within_it(sandbox) -> None:  # noqa: ANN001
    sandbox.control.set_faults(timeout={"calls": 100, "hold_seconds": 10})
    client = HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=1.2, request_timeout_s=0.4,
                           retry=RetryPolicy(max_attempts=50, backoff_initial_s=0.05, backoff_max_s=0.1))
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        client.list_companies(limit=1)
    client.close()
    assert time.monotonic() - started <= 1.2 + SLACK_S


def test_a_create_whose_answer_is_lost_is_outcome_unknown_and_not_resent(
    warp_hubspot: HubSpotClient, sandbox  # noqa: ANN001
) -> None:
    sandbox.control.set_faults(after_success={"calls": 1, "mode": "drop", "endpoint": COMPANIES})
    sandbox.control.reset_counters()
    with pytest.raises(OutcomeUnknown):
        warp_hubspot.create_company(company_values(7))
    assert _count(sandbox, COMPANIES) == 1  # never sent twice
    # It was written: the create flow reads back by idProperty.
    found = warp_hubspot.get_company("ZT-000000007", id_property="warp_ban", properties=["warp_ban"])
    assert found.properties["warp_ban"] == "ZT-000000007"


def test_a_create_that_times_out_after_writing_is_outcome_unknown(sandbox) -> None:  # noqa: ANN001
    client = HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=5, request_timeout_s=0.3,
                           retry=FAST_RETRY)
    client.ensure_properties()
    sandbox.control.set_faults(after_success={"calls": 1, "mode": "timeout", "hold_seconds": 3,
                                              "endpoint": COMPANIES})
    started = time.monotonic()
    with pytest.raises(OutcomeUnknown) as caught:
        client.create_company(company_values(8))
    assert time.monotonic() - started < 1.5
    assert not isinstance(caught.value, ServiceUnavailable)
    assert client.get_company("ZT-000000008", id_property="warp_ban").id
    client.close()


def test_an_update_whose_answer_is_lost_is_resent(warp_hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    company = warp_hubspot.create_company(company_values(3))
    sandbox.control.set_faults(after_success={"calls": 1, "mode": "drop"})
    updated = warp_hubspot.update_company(company.id, {"warp_status": "CLOSED"})
    assert updated.properties["warp_status"] == "CLOSED"
    outcomes = warp_hubspot.batch_update_companies([CompanyUpdate(company.id, {"name": "again"})])
    assert outcomes[0].ok


def test_an_update_whose_answer_stays_lost_is_outcome_unknown(warp_hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    company = warp_hubspot.create_company(company_values(4))
    sandbox.control.set_faults(after_success={"calls": 5, "mode": "drop"})
    with pytest.raises(OutcomeUnknown) as caught:
        warp_hubspot.update_company(company.id, {"warp_status": "CLOSED"})
    assert caught.value.attempts == FAST_RETRY.max_attempts


def test_a_lost_answer_then_an_outage_is_still_outcome_unknown(warp_hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    company = warp_hubspot.create_company(company_values(5))
    client = HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=5,
                           retry=RetryPolicy(max_attempts=2, backoff_initial_s=0.4, backoff_max_s=0.4, jitter_s=0))
    sandbox.control.set_faults(after_success={"calls": 1, "mode": "drop"})

    def outage_once_the_first_attempt_is_written() -> None:
        give_up = time.monotonic() + 3
        while time.monotonic() < give_up:
            if sandbox.control.faults()["after_success"]["calls"] == 0:
                sandbox.control.set_faults(outage={"calls": 10})
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=outage_once_the_first_attempt_is_written)
    watcher.start()
    try:
        # Attempt 1 is applied but unanswered; attempt 2 meets a 503. The 503 says nothing about
        # attempt 1, so the caller must hear "unknown", not "failed".
        with pytest.raises(OutcomeUnknown) as caught:
            client.update_company(company.id, {"warp_status": "SUSPENDED"})
    finally:
        watcher.join()
        client.close()
    assert isinstance(caught.value.__cause__, ServiceUnavailable)
    stored = next(c for c in sandbox.control.all_companies() if c["id"] == company.id)
    assert stored["properties"]["warp_status"] == "SUSPENDED"


def test_other_4xx_are_never_retried(warp_hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    sandbox.control.reset_counters()
    with pytest.raises(ValidationFailed):
        warp_hubspot.create_company({"name": "x", "warp_status": "nope"})
    assert _count(sandbox, COMPANIES) == 1
    bad_token = HubSpotClient(sandbox.base_url, "pat-wrong", retry=FAST_RETRY)
    with pytest.raises(AuthFailed) as caught:
        bad_token.list_companies(limit=1)
    bad_token.close()
    assert caught.value.status == 401 and caught.value.category == "INVALID_AUTHENTICATION"
    assert _count(sandbox, LIST) == 1


def test_auth_failures_are_raised_from_batches(sandbox) -> None:  # noqa: ANN001
    bad_token = HubSpotClient(sandbox.base_url, "pat-wrong", retry=FAST_RETRY)
    with pytest.raises(AuthFailed):
        bad_token.batch_update_companies([CompanyUpdate("1", {"name": "x"})])
    bad_token.close()


def test_forced_429s_are_waited_out_and_retried(warp_hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    sandbox.control.set_faults(rate_limit={"calls": 2})
    sandbox.control.reset_counters()
    page = warp_hubspot.list_companies(limit=1)
    assert page.results == []
    assert _count(sandbox, LIST) == 3


def test_429s_past_the_time_budget_surface_as_rate_limited(sandbox) -> None:  # noqa: ANN001
    client = HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=1.0,
                           retry=RetryPolicy(max_attempts=20, rate_limit_wait_s=0.2))
    sandbox.control.set_faults(rate_limit={"calls": 100})
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        client.list_companies(limit=1)
    client.close()
    assert time.monotonic() - started <= 1.0 + SLACK_S
    assert caught.value.status == 429 and caught.value.interval_s == 10.0


def test_a_chunk_that_fails_after_retries_becomes_each_records_error(
    warp_hubspot: HubSpotClient, sandbox  # noqa: ANN001
) -> None:
    sandbox.control.set_faults(outage={"calls": 100, "endpoint": "POST /crm/v3/objects/companies/batch/create"})
    outcomes = warp_hubspot.batch_create_companies([company_values(n) for n in range(1, 4)])
    assert all(isinstance(o.error, ServiceUnavailable) for o in outcomes)


def test_the_token_never_reaches_the_logs(sandbox, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    secret = sandbox.access_token
    client = HubSpotClient(sandbox.base_url, secret, time_budget_s=3, retry=FAST_RETRY)
    sandbox.control.set_faults(outage={"calls": 1})
    other = HubSpotClient(sandbox.base_url, "pat-secret-other")
    with caplog.at_level(logging.DEBUG):
        client.list_companies(limit=1)
        with pytest.raises(AuthFailed) as caught:
            other.list_companies(limit=1)
    client.close()
    other.close()
    assert caplog.records, "the client logs its requests and retries"
    text = caplog.text + repr(client) + str(caught.value) + repr(caught.value.__cause__)
    assert secret not in text and "pat-secret-other" not in text


@pytest.mark.parametrize("status", [423, 477, 502, 524])
def test_a_create_answered_locked_migrating_or_a_gateway_error_is_retried_and_made_once(
    warp_hubspot: HubSpotClient, sandbox, status: int,  # noqa: ANN001
) -> None:
    # 423 and 477 say the write was not applied, so even a create is retried (after 2 s, or Retry-After); a 502 or
    # 524 on a create may come after the write, so it is an unknown outcome, never resent blindly.
    sandbox.control.set_faults(outage={"calls": 1, "status": status, "endpoint": COMPANIES})
    sandbox.control.reset_counters()
    started = time.monotonic()
    if status in (423, 477):
        company = warp_hubspot.create_company({"name": "Locked Ltd"})
        assert company.id and _count(sandbox, COMPANIES) == 2
        assert time.monotonic() - started >= (2.0 if status == 423 else 1.0)
    else:
        with pytest.raises(OutcomeUnknown):
            warp_hubspot.create_company({"name": "Gateway Ltd"})
        assert _count(sandbox, COMPANIES) == 1
